//! Compiles proto/ with protox (pure Rust, no system protoc): the seed's event services
//! become a descriptor set embedded for the dynamic gRPC client, and server stubs for
//! the demo target.

use prost::Message as _;
use std::path::PathBuf;

/// The global allocator, from the features: `cfg(soakd_alloc = "...")` for src/main.rs.
fn pick_allocator() {
    println!(
        "cargo::rustc-check-cfg=cfg(soakd_alloc, values(\"jemalloc\", \"mimalloc\", \"heap_count\", \"dhat\"))"
    );
    let on = |f: &str| std::env::var_os(format!("CARGO_FEATURE_{f}")).is_some();
    let alloc = if on("DHAT_HEAP") {
        "dhat"
    } else if on("HEAP_COUNT") {
        "heap_count"
    } else if on("MIMALLOC") {
        "mimalloc"
    } else {
        "jemalloc"
    };
    println!("cargo::rustc-cfg=soakd_alloc=\"{alloc}\"");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    pick_allocator();
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
