//! Rolling SLO evaluation end to end: the demo target turns slow and recovers, and
//! `soakd_slo_ok` follows within the window; an injected error ratio shows as its burn
//! rate.

mod common;

use common::*;
use soakd::demo::{DemoState, Knobs};
use std::time::{Duration, Instant};

/// The demo target in this process, and a daemon running `scenario` against it.
async fn setup(knobs: Knobs, slo: &str) -> (soakd::app::Daemon, std::net::SocketAddr) {
    let st = DemoState::new(knobs).unwrap();
    let target = serve(soakd::demo::router(st)).await;
    let text = format!(
        r#"
fixtures: {{user: {{file: "{}/fixtures/users.json"}}}}
targets:
  api: {{type: http, base_url: "http://{target}", headers: {{Authorization: "Bearer {{{{user.token}}}}"}}}}
scenarios:
  api:
    target: api
    max_in_flight: 500
    timeout: 5s
    slo: {slo}
    schedule: {{hold: {{rate: 50/s}}}}
    ops: {{list: {{http: {{path: /v1/challenges}}}}}}
"#,
        env!("CARGO_MANIFEST_DIR"),
    );
    (daemon(config(&text, target)), target)
}

/// The value of the series `name{labels}` (labels as written in the exposition).
async fn series(addr: std::net::SocketAddr, name_labels: &str) -> Option<f64> {
    let text = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name_labels)?.trim().parse().ok())
}

async fn set_latency(target: std::net::SocketAddr, ms: u64) {
    let r = client()
        .put(format!("http://{target}/admin/knobs"))
        .json(&serde_json::json!({"latency_min_ms": ms, "latency_max_ms": ms}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// Waits until `soakd_slo_ok{scenario="api"}` is `want`; returns how long it took.
async fn until_ok_is(addr: std::net::SocketAddr, want: f64, within: Duration) -> Duration {
    let t0 = Instant::now();
    let got = eventually(within, || async move {
        (series(addr, "soakd_slo_ok{scenario=\"api\"}").await == Some(want)).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "soakd_slo_ok did not become {want} within {within:?}: {}",
        status(addr).await["slo"]
    );
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_turns_slow_breaks_the_slo_within_the_window_and_recovers() {
    let (d, target) = setup(
        Knobs::default(),
        "{p95: 200ms, error_rate: 5%, window: 10s}",
    )
    .await;
    let addr = d.addr();
    until_ok_is(addr, 1.0, Duration::from_secs(15)).await;

    // 500 ms per request: the p95 over the 10 s window passes 200 ms once more than 5 %
    // of the window's requests are slow — within a second or two, and certainly within
    // the window plus a tick.
    set_latency(target, 500).await;
    let took = until_ok_is(addr, 0.0, Duration::from_secs(12)).await;
    assert!(took <= Duration::from_secs(12), "{took:?}");
    let s = status(addr).await;
    let p95 = s["slo"]["api"]["objectives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "p95")
        .cloned()
        .unwrap();
    assert_eq!(p95["ok"], false, "{s}");
    assert!(p95["value"].as_f64().unwrap() > 0.2, "{p95}");
    assert_eq!(s["slo"]["api"]["ok"], false, "{s}");

    // Fast again: the slow requests leave the window (10 s plus one slot of 10/6 s; more
    // time allowed for a machine busy with other tests).
    set_latency(target, 0).await;
    let took = until_ok_is(addr, 1.0, Duration::from_secs(30)).await;
    assert!(
        took >= Duration::from_secs(5),
        "recovered before the window moved: {took:?}"
    );
    let breached = series(addr, "soakd_slo_breached_seconds_total{scenario=\"api\"}")
        .await
        .unwrap();
    assert!(breached >= 5.0, "{breached}");
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burn_rate_is_the_error_ratio_over_the_budget() {
    // 10 % of requests fail against a 2 % objective: burning the budget 5 times as fast
    // as it allows, in both windows (the run is younger than either).
    let (d, _target) = setup(
        Knobs {
            error_ratio: 0.1,
            ..Default::default()
        },
        "{error_rate: 2%, window: 10s}",
    )
    .await;
    let addr = d.addr();
    until_ok_is(addr, 0.0, Duration::from_secs(15)).await;
    // Wait for a few hundred requests, so the ratio is a ratio.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for w in ["5m", "1h"] {
        let b = series(
            addr,
            &format!("soakd_slo_burn_rate{{scenario=\"api\",window=\"{w}\"}}"),
        )
        .await
        .unwrap();
        // 400+ requests at p = 0.1: the ratio's standard deviation is under 1.5 %,
        // so 10 % ± 3.5 % is a burn rate of 5 ± 1.75.
        assert!((3.25..=6.75).contains(&b), "burn rate {w}: {b}");
    }
    let s = status(addr).await;
    let er = &s["slo"]["api"]["objectives"][0];
    assert_eq!(er["name"], "error_rate", "{s}");
    assert!(
        (0.065..=0.135).contains(&er["value"].as_f64().unwrap()),
        "{er}"
    );
    d.shutdown(Duration::from_secs(5)).await;
}
