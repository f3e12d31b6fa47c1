//! Compiles proto/ with protox (pure Rust, no system protoc): the seed's event services
//! become a descriptor set embedded for the dynamic gRPC client, and server stubs for
//! the demo target.

use prost::Message as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "iam/account/v1/account.proto",
            "social/statistic/v1/statistic.proto",
        ],
        ["proto"],
    )?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("events_descriptor.bin"), fds.encode_to_vec())?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
