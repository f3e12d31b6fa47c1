//! Real traffic: load that follows a signal. A `follow:` stage against a real Prometheus
//! (the Debian package) scraping a recorded signal once a second: the rate tracks the
//! signal × factor within its bounds, moves by at most `max_step` per read, and through
//! a Prometheus outage holds (`on_error: hold`) or steps to its fallback — never stops,
//! never spikes.

mod common;

use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn rate_of(s: &serde_json::Value) -> f64 {
    s["target_rate"].as_f64().unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_stage_tracks_the_signal_and_holds_through_a_prometheus_outage() {
    // The signal: production's request rate as an exporter shows it, set by the test.
    let signal = Arc::new(AtomicU64::new(40f64.to_bits()));
    let s = signal.clone();
    let exporter = serve(axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = f64::from_bits(s.load(Ordering::Relaxed));
            async move { format!("# TYPE prod_rate gauge\nprod_rate {v}\n") }
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (prom_proc, prom) = start_prometheus(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - {{job_name: prod, static_configs: [{{targets: [\"{exporter}\"]}}]}}\n"
        ),
        &[],
    );
    let up = eventually(Duration::from_secs(30), || async {
        (prom_query(&prom, "prod_rate").await?.len() == 1).then_some(())
    })
    .await;
    assert!(up.is_some(), "Prometheus never scraped the signal");

    let seen = Arc::new(Seen::default());
    let yaml = format!(
        r#"
targets:
  api: {{type: http, base_url: "${{TARGET}}"}}
scenarios:
  follows:
    target: api
    schedule:
      follow: {{prometheus: "http://{prom}", query: "sum(prod_rate)", factor: 0.5, min: 2/s, max: 100/s, every: 1s, max_step: 10/s}}
    ops: {{get: {{http: {{path: /}}}}}}
  falls_back:
    target: api
    schedule:
      follow: {{prometheus: "http://{prom}", query: "sum(prod_rate)", factor: 0.5, max: 100/s, every: 1s, on_error: fallback, fallback: 4/s}}
    ops: {{get: {{http: {{path: /}}}}}}
"#
    );
    let (d, _) = daemon_on(slow_router(Duration::ZERO, seen.clone()), &yaml).await;
    let addr = d.addr();
    // 40 × 0.5 = 20/s.
    let at = |want: f64, name: &'static str| async move {
        eventually(Duration::from_secs(20), || async move {
            let r = rate_of(&scenario_status(addr, name).await);
            ((r - want).abs() < 1e-9).then_some(())
        })
        .await
    };
    assert!(
        at(20.0, "follows").await.is_some(),
        "{}",
        scenario_status(addr, "follows").await
    );
    assert!(at(20.0, "falls_back").await.is_some());
    // The signal triples: 120 × 0.5 = 60/s, reached 10/s per read.
    signal.store(120f64.to_bits(), Ordering::Relaxed);
    let mut rates: Vec<f64> = Vec::new();
    let end = std::time::Instant::now() + Duration::from_secs(30);
    let mut reached = None;
    while std::time::Instant::now() < end {
        let r = rate_of(&scenario_status(addr, "follows").await);
        if rates.last() != Some(&r) {
            rates.push(r);
        }
        if (r - 60.0).abs() < 1e-9 {
            reached = Some(());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reached.is_some(), "never reached 60/s: {rates:?}");
    assert!(
        rates
            .windows(2)
            .all(|w| w[1] - w[0] <= 10.0 + 1e-9 && w[1] >= w[0]),
        "moved by more than max_step per read: {rates:?}"
    );
    assert!(
        rates.len() >= 4,
        "20 → 60 at 10/s a read takes four reads: {rates:?}"
    );
    assert!(
        at(60.0, "falls_back").await.is_some(),
        "no max_step: one read"
    );
    let text = metrics_text(addr).await;
    assert!(
        text.contains("soakd_follow_signal{scenario=\"follows\"} 120"),
        "{text}"
    );

    // Prometheus goes away: `follows` holds 60/s, `falls_back` goes to its 4/s.
    drop(prom_proc);
    assert!(
        at(4.0, "falls_back").await.is_some(),
        "{}",
        scenario_status(addr, "falls_back").await
    );
    let done = seen.done.load(Ordering::Relaxed);
    for _ in 0..20 {
        let s = scenario_status(addr, "follows").await;
        assert_eq!(rate_of(&s), 60.0, "held through the outage: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = scenario_status(addr, "follows").await;
    let stage = s["stage"].as_str().unwrap_or_default();
    assert!(
        stage.contains("follow `sum(prod_rate)` × 0.5")
            && stage.contains("reads failing: cannot reach Prometheus"),
        "{stage}"
    );
    // The load went on.
    assert!(seen.done.load(Ordering::Relaxed) > done + 50);
    let text = metrics_text(addr).await;
    let errors: f64 = text
        .lines()
        .find(|l| l.starts_with("soakd_follow_errors_total{scenario=\"follows\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "{text}");
    let events = try_json(&format!("http://{addr}/api/v1/history?resolution=1s"))
        .await
        .expect("the history API");
    let follow_events: Vec<&serde_json::Value> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "follow")
        .collect();
    assert!(
        follow_events.iter().any(|e| e["scenario"] == "follows"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("holding 60/s"))),
        "{events}"
    );
    d.shutdown(Duration::from_secs(5)).await;
}
