//! The gRPC benchmark's baseline: a minimal closed loop of N concurrent tonic clients
//! (generated code, one shared HTTP/2 connection) calling the stat-update OnMessage for
//! a fixed time, then printing calls and calls/s as JSON.
//!
//!   cargo run --release --example grpc_loop -- http://127.0.0.1:6565 500 20
use soakd::demo::grpc::pb::statistic::statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient;
use soakd::demo::grpc::pb::statistic::{StatItemUpdated, StatItemUpdatedPayload};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let endpoint = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:6565".into());
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let channel = tonic::transport::Endpoint::from_shared(endpoint)?
        .connect()
        .await?;
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let mut client = StatisticStatItemUpdatedServiceClient::new(channel.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let user = format!("user-{:06}", (w as u64 * 7919 + i) % 10_000 + 1);
                let req = StatItemUpdated {
                    id: format!("{w}-{i}"),
                    namespace: "test".into(),
                    user_id: user.clone(),
                    payload: Some(StatItemUpdatedPayload {
                        user_id: user,
                        stat_code: "wins_ranked".into(),
                        latest_value: (i % 60) as f64,
                        inc: 1.0,
                        namespace: "test".into(),
                    }),
                    ..Default::default()
                };
                match client.on_message(req).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "{{\"calls\": {n}, \"failed\": {}, \"seconds\": {secs:.3}, \"calls_per_second\": {:.1}}}",
        failed.load(Ordering::Relaxed),
        n as f64 / secs
    );
    Ok(())
}
