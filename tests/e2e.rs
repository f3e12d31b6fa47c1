//! End to end with real Prometheus and Alertmanager (Debian packages): Prometheus scrapes
//! a running soakd (the demo set-up plus a PostgreSQL scenario) every second and loads
//! rules/; every recording rule and dashboard query returns data (or is allow-listed with
//! a reason in grafana/allow-empty.txt); 5 % injected errors fire HighErrorRate, which
//! reaches Alertmanager and a loopback webhook, and its resolution follows.

mod common;

use axum::routing::post;
use axum::Router;
use common::*;
use soakd::demo::{self, DemoState, Knobs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many series an instant query returns; None when it failed.
async fn query(prom: &str, expr: &str) -> Option<usize> {
    prom_query(prom, expr).await.map(|r| r.len())
}

/// Alerts the webhook received: (alertname, status) pairs.
type Hooks = Arc<parking_lot::Mutex<Vec<(String, String)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_and_alertmanager_end_to_end() {
    let alertmanager = need(
        "/usr/bin/prometheus-alertmanager",
        "prometheus-alertmanager",
    );
    let dir = tempfile::tempdir().unwrap();

    // The system under test: demo target (HTTP + gRPC), a database, soakd.
    let pg = soakd::pg::cluster::Cluster::start(true).unwrap();
    let st = DemoState::new(Knobs::default()).unwrap();
    let http = serve(demo::router(st.clone())).await;
    let gl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = gl.local_addr().unwrap();
    tokio::spawn(demo::grpc::serve(
        gl,
        st.clone(),
        futures::future::pending(),
    ));
    let text = std::fs::read_to_string(root().join("fixtures/demo.yaml")).unwrap();
    let api_slo = "    slo: {p95: 2s, error_rate: 1%}\n";
    assert!(text.contains(api_slo));
    let text = text
        .replace(
            "stats: {interval: 5s, top_statements: 20}",
            "stats: {interval: 1s, top_statements: 20}",
        )
        // The API scenario's guard steps its rate down in the fault phase (the guard
        // annotation's data).
        .replacen(
            api_slo,
            "    slo: {p95: 2s, error_rate: 1%, window: 10s}\n    guard: {for: 2s, step_down: 50%, floor: 2/s}\n",
            1,
        )
        + r#"  # soakd's own database load, so pool and buffer series exist.
  pgload:
    target: db
    max_in_flight: 50
    buffer: {flush_interval: 500ms}
    slo: {p95: 1s, error_rate: 5%}
    schedule: {hold: {rate: 40/s}}
    ops:
      ev: {weight: 3, event: {user: "{{user.id}}", stat_code: "{{stat.code}}", value: "{{rand_int 1 60}}"}}
      read: {weight: 1, sql: {query: "SELECT * FROM user_goal_progress WHERE user_id = $1", params: ["{{user.id}}"]}}
# A short search, run again every 10 s: the capacity series and annotations have data
# in any 1-minute window, however the search's start falls against Prometheus's first
# scrape (a single search at start could finish before it).
search:
  name: e2e
  every: 10s
  each: 3s
  warmup: 1s
  lag_limit: 2s
  scenarios:
    pgload: {levels: [10/s, 20/s], then: 40/s}
"# + &format!("results: {{dir: \"{}\"}}\n", dir.path().join("results").display());
    let env = std::collections::HashMap::from([
        ("SOAKD_DEMO_HTTP_URL".to_string(), format!("http://{http}")),
        ("SOAKD_DEMO_GRPC_URL".to_string(), format!("http://{grpc}")),
        ("DATABASE_URL".to_string(), pg.url("postgres")),
    ]);
    let cfg = soakd::config::parse(&text, "e2e.yaml", &root().join("fixtures"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let d = daemon(cfg);
    let soakd_addr = d.addr();

    // A webhook receiver for Alertmanager.
    let hooks: Hooks = Arc::default();
    let h2 = hooks.clone();
    let hook = serve(Router::new().route(
        "/alerts",
        post(move |body: axum::body::Bytes| {
            let h = h2.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    for a in v["alerts"].as_array().into_iter().flatten() {
                        h.lock().push((
                            a["labels"]["alertname"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            a["status"].as_str().unwrap_or_default().to_string(),
                        ));
                    }
                }
                "ok"
            }
        }),
    ))
    .await;

    // Alertmanager: the shipped routing, delivering fast to the loopback webhook.
    let am_port = free_port();
    let am_cfg = std::fs::read_to_string(root().join("prometheus/alertmanager.yml"))
        .unwrap()
        .replace(
            "http://alert-receiver:8088/alerts",
            &format!("http://{hook}/alerts"),
        )
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 1s");
    std::fs::write(dir.path().join("alertmanager.yml"), am_cfg).unwrap();
    let _am = spawn(
        &alertmanager,
        &[
            format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            format!("--storage.path={}", dir.path().join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".to_string(),
        ],
        dir.path(),
        "alertmanager",
    );

    // Prometheus: every second, soakd's rules with `for` shortened for the test.
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for f in ["thresholds.yml", "recording.yml", "alerts.yml"] {
        let mut t = std::fs::read_to_string(root().join("rules").join(f)).unwrap();
        if f == "alerts.yml" {
            for m in ["1m", "2m", "5m", "10m", "15m"] {
                t = t.replace(&format!("for: {m}"), "for: 5s");
            }
        }
        std::fs::write(rules.join(f), t).unwrap();
    }
    let prom_cfg = format!(
        r#"global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{r}/thresholds.yml", "{r}/recording.yml", "{r}/alerts.yml"]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]}}]
scrape_configs:
  - {{job_name: soakd, static_configs: [{{targets: ["{soakd_addr}"]}}]}}
  - {{job_name: demo-target, static_configs: [{{targets: ["{http}"]}}]}}
"#,
        r = rules.display()
    );
    let (_prom, prom) = start_prometheus(dir.path(), &prom_cfg, &[]);
    let up = eventually(Duration::from_secs(30), || async {
        (query(&prom, "up{job=\"soakd\"} == 1").await? == 1).then_some(())
    })
    .await;
    assert!(up.is_some(), "Prometheus never scraped soakd");
    // A deploy told by the API (the deploy annotation's data).
    let r = client()
        .post(format!("http://{soakd_addr}/api/v1/deploys"))
        .json(&serde_json::json!({"target": "challenge-api", "version": "e2e-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Enough data for 1 m rate windows to have several points.
    tokio::time::sleep(Duration::from_secs(25)).await;

    // Every recording rule and dashboard query returns data, or is allow-listed.
    let allow: Vec<String> = std::fs::read_to_string(root().join("grafana/allow-empty.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(" # ").next().unwrap().trim().to_string())
        .collect();
    let mut exprs: Vec<(String, String)> = Vec::new();
    let rec: serde_json::Value = soakd::config::yaml::parse(
        &std::fs::read_to_string(root().join("rules/recording.yml")).unwrap(),
    )
    .unwrap();
    for g in rec["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["record"].as_str().unwrap().to_string();
            exprs.push((format!("rule {name}"), name));
        }
    }
    // The guard's annotation has data once the fault phase below makes it act.
    let mut later: Vec<(String, String)> = Vec::new();
    for entry in std::fs::read_dir(root().join("grafana/dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for a in d["annotations"]["list"].as_array().unwrap() {
            let e = a["expr"].as_str().unwrap().replace("$job", ".*");
            let what = format!("{} / annotation {}", d["uid"], a["name"]);
            if e.contains("soakd_guard_actions_total") {
                later.push((what, e));
            } else {
                exprs.push((what, e));
            }
        }
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let e = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "1m")
                    .replace("$job", ".*")
                    .replace("$scenario", ".*")
                    .replace("$datname", ".*");
                exprs.push((format!("{} / {}", d["uid"], p["title"]), e));
            }
        }
    }
    let mut empty = Vec::new();
    for (what, e) in &exprs {
        let allowed = allow
            .iter()
            .any(|a| e.contains(a.as_str()) || what.contains(a.as_str()));
        match query(&prom, e).await {
            Some(0) if !allowed => empty.push(format!("{what}: {e}")),
            None => empty.push(format!("{what}: query failed: {e}")),
            _ => {}
        }
    }
    assert!(
        empty.is_empty(),
        "{} queries returned nothing:\n{}",
        empty.len(),
        empty.join("\n")
    );

    // The fault: 5 % errors. HighErrorRate fires and reaches the webhook.
    let knobs = |body: &'static str| {
        let url = format!("http://{http}/admin/knobs");
        async move { client().put(url).body(body).send().await.unwrap().status() }
    };
    assert_eq!(knobs(r#"{"error_ratio": 0.05}"#).await, 200);
    let t = Instant::now();
    let fired = eventually(Duration::from_secs(120), || async {
        hooks
            .lock()
            .iter()
            .any(|(n, s)| n == "HighErrorRate" && s == "firing")
            .then_some(())
    })
    .await;
    assert!(
        fired.is_some(),
        "HighErrorRate never reached the webhook: {:?}",
        hooks.lock()
    );
    eprintln!(
        "HighErrorRate firing at the webhook after {:?}",
        t.elapsed()
    );
    // The errors broke the API scenario's SLO: its guard stepped the rate down, and the
    // dashboards' guard annotation shows it.
    for (what, e) in &later {
        let got = eventually(Duration::from_secs(30), || async {
            query(&prom, e).await.filter(|n| *n > 0)
        })
        .await;
        assert!(got.is_some(), "{what}: no data: {e}");
    }
    // The fault removed: the resolution arrives too.
    assert_eq!(knobs(r#"{"error_ratio": 0}"#).await, 200);
    let t = Instant::now();
    let resolved = eventually(Duration::from_secs(180), || async {
        hooks
            .lock()
            .iter()
            .any(|(n, s)| n == "HighErrorRate" && s == "resolved")
            .then_some(())
    })
    .await;
    assert!(
        resolved.is_some(),
        "no resolved notification: {:?}",
        hooks.lock()
    );
    eprintln!(
        "HighErrorRate resolved at the webhook after {:?}",
        t.elapsed()
    );
    d.shutdown(Duration::from_secs(5)).await;
    drop(pg);
}
