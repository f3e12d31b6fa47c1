//! Records what the deploy judge reads — every op's blocks, each scenario's and soakd's
//! own — from a real soakd run, one JSON line per period, for the deploy verdicts'
//! accuracy benchmark (scripts/bench/deploys.sh):
//!   cargo run --release --example deploy_record -- CONFIG OUT.jsonl MINUTES [BLOCK_SECS]
use soakd::deploy::blocks::Cutter;
use std::io::Write;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, out, minutes, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: deploy_record CONFIG OUT.jsonl MINUTES [BLOCK_SECS]");
    };
    let minutes: f64 = minutes.parse()?;
    let block: f64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(60.0);
    let cfg =
        soakd::config::load(std::path::Path::new(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let opts = soakd::app::Options {
            listen: Some("127.0.0.1:0".parse()?),
            shard: None,
            config_path: None,
            metrics: None,
        };
        let daemon = soakd::app::Daemon::start(cfg, None, opts)?;
        let engine = daemon.engine.clone();
        let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
        let start = soakd::units::now_unix();
        let mut cutter = Cutter::new(&engine, start);
        let mut next = start + block;
        let end = start + minutes * 60.0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = soakd::units::now_unix();
            if now >= next {
                let cut = cutter.cut(&engine, now);
                let line = serde_json::json!({
                    "ops": cut.ops,
                    "scenarios": cut.scenarios,
                    "generator": cut.generator,
                });
                writeln!(file, "{line}")?;
                file.flush()?;
                next += block;
                if now >= end {
                    break;
                }
            } else {
                cutter.pull(&engine);
            }
        }
        daemon.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}
