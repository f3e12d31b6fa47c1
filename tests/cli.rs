//! The `soakd` binary: exit codes, check-config, reload by file (HTTP and SIGHUP),
//! draining on SIGTERM, `/metrics` lint with promtool, and `soakd demo`.

mod common;

use axum::routing::get;
use axum::Router;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_soakd");

fn soakd(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    p
}

/// Starts `soakd run` and waits until its admin server answers.
async fn spawn_run(config: &Path, port: u16) -> Child {
    let child = soakd_run(config, port, &[], "info");
    let up = eventually(Duration::from_secs(10), || async {
        client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(up.is_some(), "soakd did not come up");
    child
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// SIGTERMs a child that still runs when the test ends early (a failed assertion), and
/// waits for it: a `soakd demo` left running keeps loading the machine and its throwaway
/// PostgreSQL, which only a SIGTERM makes it stop.
struct TermOnDrop(u32);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        let running = || {
            std::fs::read_to_string(format!("/proc/{}/stat", self.0)).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| !r.trim_start().starts_with('Z'))
            })
        };
        if !running() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(20);
        while running() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("soakd did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn version_and_usage_exit_codes() {
    let o = soakd(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(env!("CARGO_PKG_VERSION")));
    assert_eq!(soakd(&["run"]).status.code(), Some(2));
    assert_eq!(soakd(&["bogus-command"]).status.code(), Some(2));
    assert_eq!(
        soakd(&["check-config", "--config", "/nonexistent.yaml"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn check_config_prints_the_plan_or_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.yaml",
        r#"
targets: {api: {type: http, base_url: "http://127.0.0.1:1"}}
scenarios:
  api:
    target: api
    schedule:
      stages:
        - ramp: {from: 10/s, to: 100/s, over: 1m}
        - levels: {rates: [50/s, 100/s, 200/s], each: 5m}
      repeat: true
    slo: {p95: 200ms, error_rate: 1%, window: 10m}
    ops: {get: {http: {path: /}}}
"#,
    );
    let o = soakd(&["check-config", "--config", good.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("scenario api -> target api (http http://127.0.0.1:1)"),
        "{out}"
    );
    assert!(out.contains("0s .. 1m"), "{out}");
    assert!(out.contains("levels [50/s, 100/s, 200/s] each 5m"), "{out}");
    assert!(out.contains("repeats every 16m"), "{out}");
    assert!(
        out.contains("slo: p95 < 200ms, error rate < 1%, rolling over 10m (soakd_slo_ok)"),
        "{out}"
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        r#"targets: {api: {type: http, base_url: "http://127.0.0.1:1", retries: 3}}
scenarios:
  api:
    target: api
    max_in_flight: 0
    schedule:
      levels: {rates: [50/s, 100/s, "500"], each: 5m}
    ops: {get: {http: {path: /}}}
"#,
    );
    let o = soakd(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("3 errors"), "{err}");
    assert!(err.contains("unknown field `retries`"), "{err}");
    assert!(
        err.contains("scenarios.api.max_in_flight: must be between 1 and 1000000 (line 5"),
        "{err}"
    );
    assert!(
        err.contains("scenarios.api.schedule.levels.rates[2]: expected a rate like \"500/s\", got \"500\" (line 7"),
        "{err}"
    );
}

#[test]
fn every_shipped_config_passes_check_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            // Configs read secrets from the environment; check-config never connects.
            let o = Command::new(BIN)
                .args(["check-config", "--config", p.to_str().unwrap()])
                .env(
                    "DATABASE_URL",
                    "postgres://soakd:secret@127.0.0.1:5432/soakd",
                )
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 3, "expected the shipped configs in fixtures/");
}

fn config_text(target: std::net::SocketAddr, rate: &str) -> String {
    format!(
        r#"
targets: {{t: {{type: http, base_url: "http://{target}"}}}}
scenarios:
  s:
    target: t
    schedule: {{hold: {{rate: {rate}}}}}
    ops: {{get: {{http: {{path: /}}}}}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_http_and_sighup_and_invalid_reload_keeps_config() {
    let count = Arc::new(AtomicU64::new(0));
    let target = serve(counting_router(count.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "soakd.yaml", &config_text(target, "20/s"));
    let port = free_port();
    let mut child = spawn_run(&cfg, port).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let rate_is = |want: f64| async move {
        eventually(Duration::from_secs(5), || async {
            (scenario_status(addr, "s").await["target_rate"] == want).then_some(())
        })
        .await
        .is_some()
    };
    assert!(rate_is(20.0).await);

    // 1. POST /-/reload applies a rate change.
    write(dir.path(), "soakd.yaml", &config_text(target, "50/s"));
    let r = client()
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["changes"]["changed"][0], "s", "{j}");
    assert!(rate_is(50.0).await);

    // 2. SIGHUP does the same.
    write(dir.path(), "soakd.yaml", &config_text(target, "30/s"));
    signal(&child, "-HUP");
    assert!(rate_is(30.0).await);

    // 3. An invalid file is rejected: the old config keeps running.
    write(dir.path(), "soakd.yaml", &config_text(target, "lots"));
    let r = client()
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    assert!(
        j["errors"][0].as_str().unwrap().contains("expected a rate"),
        "{j}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let st = scenario_status(addr, "s").await;
    assert_eq!(st["target_rate"], 30.0);
    let m = metrics_text(addr).await;
    assert_eq!(sample(&m, "soakd_config_last_reload_successful"), Some(0.0));
    // Load still flows.
    let before = count.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(count.load(Ordering::Relaxed) > before);

    // 4. Fixed again: success is exported again.
    write(dir.path(), "soakd.yaml", &config_text(target, "30/s"));
    signal(&child, "-HUP");
    let ok = eventually(Duration::from_secs(5), || async {
        (sample(
            &metrics_text(addr).await,
            "soakd_config_last_reload_successful",
        ) == Some(1.0))
        .then_some(())
    })
    .await;
    assert!(ok.is_some());

    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_operations_and_exits_zero() {
    // Every request takes 1 s; the target counts requests started and finished. A
    // request abandoned by the client is dropped by axum and never counts as finished.
    let started = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicU64::new(0));
    let (s, f) = (started.clone(), finished.clone());
    let target = serve(Router::new().route(
        "/",
        get(move || {
            let (s, f) = (s.clone(), f.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                f.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "soakd.yaml", &config_text(target, "40/s"));
    let port = free_port();
    let mut child = spawn_run(&cfg, port).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let in_flight = scenario_status(addr, "s").await["in_flight"]
        .as_u64()
        .unwrap();
    assert!(
        in_flight >= 10,
        "expected requests in flight at SIGTERM, saw {in_flight}"
    );
    let t = Instant::now();
    signal(&child, "-TERM");
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(15)))
            .await
            .unwrap();
    assert!(status.success(), "{status:?}");
    // It waited for the slow requests rather than cutting them off.
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        finished.load(Ordering::SeqCst),
        "every request soakd started was allowed to finish"
    );
}

fn promtool() -> PathBuf {
    let p = PathBuf::from("/usr/bin/promtool");
    assert!(
        p.exists(),
        "promtool is missing: run scripts/test.sh (it installs the Debian package prometheus)"
    );
    p
}

/// Data dirs of throwaway clusters, and postgres servers running from any of them.
fn clusters() -> (Vec<String>, usize) {
    let mut dirs: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("soakd-pg."))
        .collect();
    dirs.sort();
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let servers = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains("soakd-pg.") && l.contains("postgres"))
        .count();
    (dirs, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_lint_clean_metrics_and_stops_on_sigterm() {
    let before = clusters();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stop = TermOnDrop(child.id());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let m = eventually(Duration::from_secs(30), || async {
        let m = try_text(&format!("http://{addr}/metrics")).await?;
        (sample(
            &m,
            "soakd_requests_total{op=\"list_challenges\",scenario=\"api\"}",
        )? > 0.0
            && sample(
                &m,
                "soakd_requests_total{op=\"stat_update\",scenario=\"events\"}",
            )? > 0.0
            && sample(&m, "pg_up")? == 1.0)
            .then_some(m)
    })
    .await
    .expect("demo produced no HTTP, gRPC and PostgreSQL series");
    // A database was started for it.
    assert!(
        clusters().0.len() > before.0.len(),
        "no throwaway cluster was started"
    );
    for series in [
        "soakd_requests_total",
        "soakd_request_duration_seconds_bucket",
        "soakd_request_duration_quantile_seconds",
        "soakd_schedule_lag_seconds_bucket",
        "soakd_target_rate",
        "soakd_in_flight",
        "soakd_max_in_flight",
        "soakd_dropped_iterations_total",
        "soakd_build_info",
        "soakd_config_last_reload_successful",
        "soakd_config_last_reload_success_timestamp_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "pg_stat_database_xact_commit",
        "pg_stat_activity_count",
        "pg_settings_max_connections",
    ] {
        assert!(m.lines().any(|l| l.starts_with(series)), "missing {series}");
    }
    // Asked for OpenMetrics (as Prometheus does), the latency buckets carry trace ids:
    // the demo traces its requests.
    let om = client()
        .get(format!("http://{addr}/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        om.lines()
            .any(|l| l.starts_with("soakd_request_duration_seconds_bucket{")
                && l.contains(" # {trace_id=\"")),
        "no exemplar on the demo's latency buckets"
    );
    // promtool's linter reads the exposition from stdin.
    let mut lint = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = lint.wait_with_output().unwrap();
    // postgres_exporter's own names end in _count for three gauges, which promtool's
    // linter flags in its output too; soakd keeps them for compatibility. Anything
    // else is a real problem.
    const INHERITED: [&str; 3] = [
        "pg_locks_count ",
        "pg_stat_activity_count ",
        "pg_stat_user_tables_autovacuum_count ",
    ];
    let problems = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let real: Vec<&str> = problems
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !(INHERITED.iter().any(|n| l.starts_with(n)) && l.contains("\"_count\" suffix"))
        })
        .collect();
    assert!(
        real.is_empty(),
        "promtool check metrics: {}",
        real.join("\n")
    );
    // Every dashboard panel has something to draw: the read path on soakd's own pool;
    // the target's buffered writer flushes (on the target's own /metrics: the target
    // is a process of its own).
    let m = eventually(Duration::from_secs(30), || async {
        let m = try_text(&format!("http://{addr}/metrics")).await?;
        (sample(
            &m,
            "soakd_requests_total{op=\"progress_by_user\",scenario=\"db-reads\"}",
        )? > 0.0
            && sample(&m, "soakd_db_pool_acquire_seconds_count{target=\"db\"}")? > 0.0)
            .then_some(m)
    })
    .await
    .expect("the read path shows on soakd's /metrics");
    let target_url = sample_label(&m, "soakd_observed", "target", "challenge-api");
    assert!(target_url, "the soak observes the demo target");
    // Memory has names: every bounded structure the demo uses reports bytes, and the
    // binary's allocator (mimalloc) says what it has committed.
    for area in [
        "history",
        "latency_windows",
        "fixtures",
        "connections",
        "soak",
    ] {
        let b = sample(&m, &format!("soakd_memory_bytes{{area=\"{area}\"}}"));
        assert!(b.is_some_and(|b| b > 0.0), "area {area}: {b:?}");
    }
    // The soak observes the target as the process it is (not soakd), its /metrics, and
    // the database's tables.
    let soak = eventually(Duration::from_secs(30), || async {
        let s = try_json(&format!("http://{addr}/api/v1/soak")).await?;
        let t = s["targets"].as_array()?;
        let api = t.iter().find(|t| t["target"] == "challenge-api")?;
        let db = t.iter().find(|t| t["target"] == "db")?;
        let has = |t: &serde_json::Value, r: &str| {
            t["series"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x["resource"] == r))
        };
        (has(api, "rss_bytes")
            && has(api, "open_fds")
            && has(db, "user_goal_progress.dead_tuple_ratio"))
        .then_some(s)
    })
    .await
    .expect("the soak observes the target's process and the database");
    let api = soak["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "challenge-api")
        .unwrap();
    assert!(api["errors"].as_object().unwrap().is_empty(), "{api:#}");
    let target_rss = api["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["resource"] == "rss_bytes")
        .unwrap()["latest"]
        .as_f64()
        .unwrap();
    let own_rss = sample(&m, "process_resident_memory_bytes").unwrap();
    assert!(
        (target_rss - own_rss).abs() > 1.0,
        "the observed process is soakd itself ({target_rss} = {own_rss})"
    );
    let rss = sample(&m, "process_resident_memory_bytes").unwrap();
    let committed = sample(&m, "soakd_allocator_committed_bytes").unwrap();
    let bounded: f64 = m
        .lines()
        .filter(|l| l.starts_with("soakd_memory_bytes{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        committed > 1e6 && bounded < committed && committed < 4.0 * rss,
        "committed {committed}, bounded {bounded}, rss {rss}"
    );
    let h = eventually(Duration::from_secs(20), || async {
        let h = try_json(&format!("http://{addr}/api/v1/history?resolution=1s")).await?;
        let groups: std::collections::BTreeSet<String> = h["series"]
            .as_array()?
            .iter()
            .map(|s| {
                format!(
                    "{}:{}",
                    s["group"].as_str().unwrap_or(""),
                    s["name"].as_str().unwrap_or("")
                )
            })
            .collect();
        [
            "scenario:api",
            "scenario:events",
            "scenario:db-reads",
            "postgres:db",
            "process:soakd",
        ]
        .iter()
        .all(|g| groups.contains(*g))
        .then_some(())?;
        // Rates need two rows: a second one shows the sampler keeps going.
        (h["t"].as_array()?.len() >= 2).then_some(h)
    })
    .await
    .expect("the history has every panel's series");
    let achieved = h["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "db-reads" && s["field"] == "achieved_rate")
        .expect("db-reads has an achieved rate");
    assert!(
        achieved["values"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_f64().is_some()),
        "{h}"
    );
    let page = try_text(&format!("http://{addr}/")).await.unwrap();
    assert!(page.contains("/assets/uPlot.iife.min.js"), "{page}");
    signal(&child, "-TERM");
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child, Duration::from_secs(20));
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        (status, err)
    })
    .await
    .unwrap();
    assert!(status.success());
    // The address block opens with the dashboard.
    let block = stderr
        .split("soakd demo is running.")
        .nth(1)
        .expect("the demo printed its addresses");
    let first = block.lines().find(|l| !l.trim().is_empty()).unwrap();
    assert_eq!(
        first.trim(),
        format!("dashboard     http://{addr}/"),
        "{block}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_rate_and_sum_to_it() {
    let count = Arc::new(AtomicU64::new(0));
    let target = serve(counting_router(count.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "soakd.yaml", &config_text(target, "300/s"));
    let cfg_s = cfg.to_str().unwrap().to_string();
    let mut shards = Vec::new();
    let mut ports = Vec::new();
    for i in 0..2 {
        let port = free_port();
        let child = Command::new(BIN)
            .args([
                "run",
                "--config",
                &cfg_s,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--shard",
                &format!("{i}/2"),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        shards.push(child);
        ports.push(port);
    }
    // Each shard asks for half the rate.
    for p in &ports {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{p}").parse().unwrap();
        let half = eventually(Duration::from_secs(10), || async {
            let s = client()
                .get(format!("http://{addr}/api/v1/status"))
                .send()
                .await
                .ok()?
                .json::<serde_json::Value>()
                .await
                .ok()?;
            (s["scenarios"][0]["target_rate"] == 150.0).then_some(())
        })
        .await;
        assert!(half.is_some(), "shard on {p} does not run half the rate");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (c0, t0) = (count.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rate = (count.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64();
    for s in &shards {
        signal(s, "-TERM");
    }
    for mut s in shards {
        assert!(wait_exit(&mut s, Duration::from_secs(15)).success());
    }
    // Together they deliver the configured 300/s (10 % on a loaded 2-core machine).
    assert!(
        (270.0..=330.0).contains(&rate),
        "two shards delivered {rate:.1}/s of 300/s"
    );
}

/// Whether some sample of `name` carries `label="value"`.
fn sample_label(text: &str, name: &str, label: &str, value: &str) -> bool {
    let needle = format!("{label}=\"{value}\"");
    text.lines()
        .any(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
}
