//! One verdict across shards (`verdicts.prometheus`): two soakd processes as shards 0/2
//! and 1/2 behind a real Prometheus, against a target whose capacity is a known total —
//! 10 requests at a time, 50 ms each: 200/s, however many shards offer it. Shard 0 runs
//! the one search and judges each level from the sums over both shards; shard 1 follows
//! the level shard 0 applies, and goes back to its schedule when shard 0 goes away.

mod common;

use common::*;
use soakd::capacity::store::Store;
use soakd::capacity::{RunStatus, Verdict};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Serves `/` in 50 ms, at most 10 at a time (the rest wait): 200/s in total.
fn limited_router(served: Arc<AtomicU64>) -> axum::Router {
    let permits = Arc::new(tokio::sync::Semaphore::new(10));
    axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let (permits, served) = (permits.clone(), served.clone());
            async move {
                let _p = permits.acquire().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                served.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    )
}

fn shard_config(target: &str, prom: &str, leader_port: u16, results: &std::path::Path) -> String {
    format!(
        r#"
targets:
  api: {{type: http, base_url: "http://{target}"}}
scenarios:
  api:
    target: api
    max_in_flight: 1000
    timeout: 5s
    slo: {{p95: 150ms, window: 10s}}
    schedule: {{hold: {{rate: 20/s}}}}
    ops: {{get: {{http: {{path: /}}}}}}
search:
  name: shards
  each: 8s
  warmup: 3s
  lag_limit: 2s
  scenarios:
    api: {{levels: [60/s, 120/s, 300/s], then: 40/s}}
results: {{dir: "{results}"}}
verdicts:
  prometheus: "http://{prom}"
  selector: 'job="soakd"'
  leader: "http://127.0.0.1:{leader_port}"
  scrape_interval: 1s
  interval: 1s
soak: {{window: 10m, warmup: 10s, resolution: 1s}}
"#,
        results = results.display()
    )
}

/// The scenario `api` in `/api/v1/status` of the soakd on `port`.
async fn api_status(port: u16) -> Option<serde_json::Value> {
    let s = try_json(&format!("http://127.0.0.1:{port}/api/v1/status")).await?;
    s["scenarios"]
        .as_array()?
        .iter()
        .find(|x| x["name"] == "api")
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_run_one_search_judged_from_their_sum() {
    let dir = tempfile::tempdir().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let target = serve(limited_router(served.clone())).await;
    let (p0, p1) = (free_port(), free_port());
    let prom_cfg = format!(
        r#"global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - {{job_name: soakd, static_configs: [{{targets: ["127.0.0.1:{p0}", "127.0.0.1:{p1}"]}}]}}
"#
    );
    let (_prom, prom) = start_prometheus(dir.path(), &prom_cfg, &[]);
    let mut configs = Vec::new();
    for i in 0..2 {
        let results = dir.path().join(format!("results-{i}"));
        let path = dir.path().join(format!("shard-{i}.yaml"));
        std::fs::write(
            &path,
            shard_config(&target.to_string(), &prom, p0, &results),
        )
        .unwrap();
        configs.push((path, results));
    }
    let mut leader = Proc(soakd_run(&configs[0].0, p0, &["--shard", "0/2"], "warn"));
    let _follower = Proc(soakd_run(&configs[1].0, p1, &["--shard", "1/2"], "warn"));

    // While the search runs, both shards' overrides: each runs half of every level.
    let mut seen: [BTreeSet<u64>; 2] = Default::default();
    let mut follower_states = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let mut done = None;
    while done.is_none() && std::time::Instant::now() < deadline {
        for (i, port) in [p0, p1].into_iter().enumerate() {
            if let Some(r) = api_status(port)
                .await
                .and_then(|s| s["rate_override"].as_f64())
            {
                seen[i].insert(r.round() as u64);
            }
        }
        if let Some(s) = try_json(&format!("http://127.0.0.1:{p1}/api/v1/search")).await {
            follower_states.insert(s["state"].as_str().unwrap_or("?").to_string());
        }
        if let Some(s) = try_json(&format!("http://127.0.0.1:{p0}/api/v1/search")).await {
            if s["state"] == "complete" {
                done = s["run_id"].as_str().map(String::from);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = done.expect("the leader's search did not complete within 150 s");
    // One search, one stored run: the leader's; the follower stored nothing.
    let run = Store::Jsonl(configs[0].1.clone())
        .load_run(&id)
        .await
        .unwrap();
    assert_eq!(run.record.status, RunStatus::Complete);
    let follower_runs = std::fs::read_dir(&configs[1].1)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(follower_runs, 0, "the follower stored a run");
    let levels: Vec<(f64, Verdict)> = run
        .levels
        .iter()
        .map(|l| (l.scenarios[0].offered_rate, l.verdict))
        .collect();
    // 120/s in total is 60 % of the target's 200/s; 300/s is over it. Were each shard
    // judging (or offering) alone, 300/s would be half or twice what the target saw.
    assert_eq!(
        levels,
        vec![
            (60.0, Verdict::Pass),
            (120.0, Verdict::Pass),
            (300.0, Verdict::Fail)
        ],
        "{:#?}",
        run.levels
    );
    for l in &run.levels {
        let s = &l.scenarios[0];
        eprintln!(
            "level {}/s over {:?} shards: {:?}, achieved {:.1}/s, {} completed in {:.1}s, p95 {:?}: {}",
            s.offered_rate, s.shards, l.verdict, s.achieved_rate, s.completed, s.window_s, s.latency.p95, s.reason
        );
        assert_eq!(s.shards, Some(2), "{s:?}");
        if l.verdict == Verdict::Pass {
            // The sums are of both shards: the whole level, not half of it.
            let ratio = s.achieved_rate / s.offered_rate;
            assert!(
                (0.85..=1.15).contains(&ratio),
                "achieved {ratio:.2} of the level: {s:?}"
            );
            let expected = s.offered_rate * s.window_s;
            let got = s.completed as f64;
            assert!(
                (0.8 * expected..=1.2 * expected).contains(&got),
                "completed {got} of {expected:.0} in the window: {s:?}"
            );
        } else {
            assert!(s.reason.contains("p95"), "{s:?}");
        }
    }

    // Levels 60, 120 and 300/s are 30, 60 and 150/s on each shard (0 while a broken
    // level drains), then 40/s is 20 each.
    for (i, s) in seen.iter().enumerate() {
        for r in [30, 60, 150] {
            assert!(s.contains(&r), "shard {i} never ran {r}/s: {s:?}");
        }
        assert!(
            !s.contains(&120) && !s.contains(&300),
            "shard {i} ran a whole level: {s:?}"
        );
    }
    assert!(
        follower_states.contains("measuring"),
        "the follower never showed the leader's search: {follower_states:?}"
    );

    // The rolling SLO on both shards is judged from Prometheus, over both.
    for port in [p0, p1] {
        let slo = eventually(Duration::from_secs(20), || async move {
            let s = try_json(&format!("http://127.0.0.1:{port}/api/v1/status")).await?;
            let api = s["slo"]["api"].clone();
            (api["source"] == "prometheus" && api["shards"] == 2).then_some(api)
        })
        .await;
        assert!(
            slo.is_some(),
            "shard on {port}: SLO not judged over both shards"
        );
    }

    // The report says what the verdicts were judged from.
    let report = try_text(&format!("http://127.0.0.1:{p0}/api/v1/runs/{id}/report"))
        .await
        .unwrap();
    assert!(
        report.contains("judged from Prometheus's sums over 2 shards"),
        "{report}"
    );

    // After the search both hold `then` (40/s: 20 each) ...
    for port in [p0, p1] {
        let held = eventually(Duration::from_secs(10), || async move {
            (api_status(port).await?["rate_override"].as_f64()? == 20.0).then_some(())
        })
        .await;
        assert!(
            held.is_some(),
            "shard on {port} is not at its share of `then`"
        );
    }
    // The soak is judged once, by the leader, from the fleet's sums: its op's rate is
    // the whole 40/s, not its own 20/s; the follower judges nothing.
    let rate = eventually(Duration::from_secs(20), || async move {
        let s = try_json(&format!("http://127.0.0.1:{p0}/api/v1/soak")).await?;
        let op = s["ops"]
            .as_array()?
            .iter()
            .find(|o| o["scenario"] == "api" && o["op"] == "get")?
            .clone();
        let latest = op["series"]
            .as_array()?
            .iter()
            .find(|x| x["resource"] == "rate_per_second")?["latest"]
            .as_f64()?;
        (30.0..=50.0).contains(&latest).then_some(latest)
    })
    .await;
    assert!(
        rate.is_some(),
        "the leader's soak does not read the fleet's 40/s: {:?}",
        try_json(&format!("http://127.0.0.1:{p0}/api/v1/soak")).await
    );
    let follower = client()
        .get(format!("http://127.0.0.1:{p1}/api/v1/soak"))
        .send()
        .await
        .unwrap();
    assert_eq!(follower.status(), 404, "a follower does not judge the soak");
    // ... and when the leader goes away the follower pauses the search, not the soak:
    // back on its schedule (20/s in total, 10/s for this shard), still sending.
    let _ = leader.0.kill();
    let _ = leader.0.wait();
    let back = eventually(Duration::from_secs(20), || async move {
        let s = api_status(p1).await?;
        s["rate_override"].is_null().then_some(s)
    })
    .await;
    let back = back.expect("the follower kept the leader's level after the leader went away");
    let search = try_json(&format!("http://127.0.0.1:{p1}/api/v1/search"))
        .await
        .unwrap();
    assert_eq!(search["state"], "leader unreachable", "{search}");
    assert!(search["leader_error"].is_string(), "{search}");
    let before = back["requests_total"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = api_status(p1).await.unwrap()["requests_total"]
        .as_u64()
        .unwrap();
    assert!(
        after >= before + 15,
        "the soak stopped with the leader: {before} -> {after}"
    );
    assert!(served.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn a_follower_without_a_leader_url_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let text = shard_config("127.0.0.1:1", "127.0.0.1:2", 3, dir.path())
        .replace("  leader: \"http://127.0.0.1:3\"\n", "");
    let mut cfg = config_vars(&text, &[]);
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let opts = soakd::app::Options {
        shard: Some("1/2".parse().unwrap()),
        ..Default::default()
    };
    let e = soakd::app::Daemon::start(cfg, None, opts)
        .err()
        .expect("a follower without verdicts.leader started");
    assert!(e.to_string().contains("set verdicts.leader"), "{e}");
}
