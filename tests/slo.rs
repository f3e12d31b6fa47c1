//! Rolling SLO evaluation end to end: the demo target turns slow and recovers, and
//! `soakd_slo_ok` follows within the window; an injected error ratio shows as its burn
//! rate. Guardrails on it: step-downs to the floor and back, a pause and a resume, and a
//! revert through the control API.

mod common;

use common::*;
use soakd::demo::{DemoState, Knobs};
use std::time::{Duration, Instant};

/// The demo target in this process, and a daemon running `scenario` against it.
async fn setup(knobs: Knobs, slo: &str) -> (soakd::app::Daemon, std::net::SocketAddr) {
    setup_guarded(knobs, slo, "").await
}

/// As [`setup`], with more of the scenario (e.g. its `guard:`) after its `slo`.
async fn setup_guarded(
    knobs: Knobs,
    slo: &str,
    more: &str,
) -> (soakd::app::Daemon, std::net::SocketAddr) {
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
{more}
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
    // Wait for 1,000 requests (20 s at 50/s), so that the sampled ratio is close to the
    // injected one: at p = 0.1 its standard deviation is then under 1 %.
    let requests = "soakd_requests_total{op=\"list\",scenario=\"api\"}";
    let enough = eventually(Duration::from_secs(60), || async move {
        (series(addr, requests).await? >= 1000.0).then_some(())
    })
    .await;
    assert!(enough.is_some(), "1,000 requests not done within 60 s");
    // One scrape, so the gauges and the counters they are computed from agree.
    let text = metrics_text(addr).await;
    let value = |name_labels: &str| {
        sample(&text, name_labels).unwrap_or_else(|| panic!("no {name_labels} in the scrape"))
    };
    let done = value(requests);
    let failed =
        value("soakd_request_errors_total{kind=\"status_5xx\",op=\"list\",scenario=\"api\"}");
    // What soakd counted, over the budget: the burn rate must be that ratio (its windows
    // start at the evaluator's first tick and end at its last, a second or so of requests
    // either side of this scrape's counts).
    let counted = failed / done / 0.02;
    // The injected 10 % is 5 times the budget; four standard deviations either side at
    // 1,000 requests is 5 ± 2.
    assert!((3.0..=7.0).contains(&counted), "{failed} of {done} failed");
    for w in ["5m", "1h"] {
        let b = value(&format!(
            "soakd_slo_burn_rate{{scenario=\"api\",window=\"{w}\"}}"
        ));
        assert!(
            (b - counted).abs() <= 0.5,
            "burn rate {w}: {b}, counted {failed} of {done} failed: {counted}"
        );
    }
    // The objective's own value is the ratio over the 10 s window (about 500 requests:
    // a standard deviation of 1.3 %, so 10 % ± 6 % is 4.5 of them).
    let s = status(addr).await;
    let er = &s["slo"]["api"]["objectives"][0];
    assert_eq!(er["name"], "error_rate", "{s}");
    assert!(
        (0.04..=0.16).contains(&er["value"].as_f64().unwrap()),
        "{er}"
    );
    d.shutdown(Duration::from_secs(5)).await;
}

/// `soakd_guard_actions_total{scenario="api",action}` (0 when absent).
async fn actions(addr: std::net::SocketAddr, action: &str) -> f64 {
    series(
        addr,
        &format!("soakd_guard_actions_total{{scenario=\"api\",action=\"{action}\"}}"),
    )
    .await
    .unwrap_or(0.0)
}

/// Polls every 100 ms until `soakd_guard_actions_total{action}` reaches `n`; returns the
/// instants it went up on the way.
async fn count_until(
    addr: std::net::SocketAddr,
    action: &str,
    n: f64,
    within: Duration,
) -> Vec<Instant> {
    let t0 = Instant::now();
    let mut seen = actions(addr, action).await;
    let mut at = Vec::new();
    while seen < n {
        assert!(
            t0.elapsed() < within,
            "{action} reached {seen}, not {n}, within {within:?}: {}",
            status(addr).await["slo"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = actions(addr, action).await;
        if now > seen {
            at.push(Instant::now());
            seen = now;
        }
    }
    at
}

async fn target_rate(addr: std::net::SocketAddr) -> f64 {
    scenario_status(addr, "api").await["target_rate"]
        .as_f64()
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_steps_down_to_its_floor_recovers_in_steps_and_reverts() {
    let (d, target) = setup_guarded(
        Knobs::default(),
        "{p95: 200ms, window: 10s}",
        "    guard: {for: 3s, step_down: 50%, floor: 10/s, recover_after: 4s}",
    )
    .await;
    let addr = d.addr();
    until_ok_is(addr, 1.0, Duration::from_secs(15)).await;
    assert_eq!(target_rate(addr).await, 50.0);
    assert_eq!(actions(addr, "step_down").await, 0.0);

    set_latency(target, 500).await;
    until_ok_is(addr, 0.0, Duration::from_secs(15)).await;
    let broken = Instant::now();
    // The first step within `for` (3 s) plus one tick (1 s), with room for the polling.
    let first = count_until(addr, "step_down", 1.0, Duration::from_secs(10)).await;
    let took = first[0].duration_since(broken);
    assert!(
        took <= Duration::from_millis(4_600),
        "first step after {took:?}"
    );
    // 50 → 25 → 12.5 → 10 (the floor): three steps, `for` apart, then no more.
    let steps = count_until(addr, "step_down", 3.0, Duration::from_secs(15)).await;
    for w in steps.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(gap >= Duration::from_millis(2_500), "steps {gap:?} apart");
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        actions(addr, "step_down").await,
        3.0,
        "no step below the floor"
    );
    assert_eq!(target_rate(addr).await, 10.0);
    let st = status(addr).await;
    let g = &st["slo"]["api"]["guard"];
    assert_eq!(
        (g["steps"].as_u64(), g["factor"].as_f64()),
        (Some(3), Some(0.125)),
        "{g}"
    );
    assert_eq!(g["last_action"], "step_down");
    let factor = series(addr, "soakd_guard_rate_factor{scenario=\"api\"}").await;
    assert_eq!(factor, Some(0.125));

    // Fast again: once the window holds, one step back every 4 s, to the full rate.
    set_latency(target, 0).await;
    until_ok_is(addr, 1.0, Duration::from_secs(20)).await;
    let ups = count_until(addr, "recover", 3.0, Duration::from_secs(25)).await;
    for w in ups.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(
            gap >= Duration::from_millis(3_500),
            "recovered {gap:?} apart"
        );
    }
    assert_eq!(target_rate(addr).await, 50.0);

    // Slow again, one step, then reverted through the control API: full rate at once.
    set_latency(target, 500).await;
    count_until(addr, "step_down", 4.0, Duration::from_secs(20)).await;
    assert_eq!(target_rate(addr).await, 25.0);
    let r = client()
        .post(format!("http://{addr}/api/v1/scenarios/api/guard/revert"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reverted"], true, "{body}");
    assert_eq!(actions(addr, "revert").await, 1.0);
    eventually(Duration::from_secs(3), || async move {
        (target_rate(addr).await == 50.0).then_some(())
    })
    .await
    .expect("the full rate right after the revert");
    let events = client()
        .get(format!("http://{addr}/api/v1/history"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let guard_events: Vec<&str> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "guard")
        .filter_map(|e| e["message"].as_str().or(e["text"].as_str()))
        .collect();
    assert!(guard_events.len() >= 8, "{guard_events:?}");
    assert!(
        guard_events.iter().any(|m| m.contains("reverted")),
        "{guard_events:?}"
    );
    // A scenario without a guard has nothing to revert.
    let r = client()
        .post(format!("http://{addr}/api/v1/scenarios/nope/guard/revert"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pausing_guard_pauses_and_resumes() {
    let (d, target) = setup_guarded(
        Knobs::default(),
        "{p95: 200ms, window: 10s}",
        "    guard: {for: 2s, pause: true, recover_after: 3s}",
    )
    .await;
    let addr = d.addr();
    until_ok_is(addr, 1.0, Duration::from_secs(15)).await;
    set_latency(target, 500).await;
    until_ok_is(addr, 0.0, Duration::from_secs(15)).await;
    count_until(addr, "pause", 1.0, Duration::from_secs(6)).await;
    let s = scenario_status(addr, "api").await;
    assert_eq!(s["state"], "paused by guard", "{s}");
    assert_eq!(s["target_rate"].as_f64(), Some(0.0));
    assert_eq!(
        series(addr, "soakd_guard_rate_factor{scenario=\"api\"}").await,
        Some(0.0)
    );
    // Nothing runs while paused; once the slow operations leave the window it holds,
    // and 3 s later the scenario runs again.
    set_latency(target, 0).await;
    count_until(addr, "resume", 1.0, Duration::from_secs(25)).await;
    let s = scenario_status(addr, "api").await;
    assert_eq!(
        (s["state"].as_str(), s["target_rate"].as_f64()),
        (Some("running"), Some(50.0)),
        "{s}"
    );
    d.shutdown(Duration::from_secs(2)).await;
}
