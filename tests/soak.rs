//! The soak judge against real processes: a process that allocates and touches 1 MiB a
//! second and leaks a file descriptor a second is found `growing`; one that saws 40 MiB
//! up and down every 15 s is not; one that rises to a bound is `bounded`. A process
//! that restarts splits its series and is an event of its own.

mod common;

use common::*;
use std::time::Duration;

/// A Python process that behaves as `mode` says (python3 is on every machine the suite
/// runs on: scripts/test.sh needs it).
fn python(mode: &str) -> Proc {
    python_with(mode, "")
}

/// As [`python`]; `bounded` starts rising only once the file `trigger` exists.
fn python_with(mode: &str, trigger: &str) -> Proc {
    let code = r#"
import os, sys, time
mode = sys.argv[1]
held, fds = [], []
t0 = time.time()
while True:
    t = time.time() - t0
    if mode == "leak":
        held.append(b"x" * (1 << 20))
        fds.append(os.open("/dev/null", os.O_RDONLY))
        time.sleep(1)
    elif mode == "saw":
        # 40 MiB up over 15 s, then all of it freed.
        if len(held) >= 40:
            held.clear()
        held.append(b"x" * (1 << 20))
        time.sleep(15 / 40)
    elif mode == "bounded":
        # 1 MiB a second for 20 s (once the trigger file exists, if one is named).
        if len(held) < 20 and (not sys.argv[2] or os.path.exists(sys.argv[2])):
            held.append(b"x" * (1 << 20))
        time.sleep(1)
"#;
    Proc(
        std::process::Command::new("python3")
            .args(["-c", code, mode, trigger])
            .spawn()
            .expect("python3"),
    )
}

fn verdict(snap: &serde_json::Value, target: &str, resource: &str) -> Option<String> {
    snap["targets"]
        .as_array()?
        .iter()
        .find(|t| t["target"] == target)?["series"]
        .as_array()?
        .iter()
        .find(|s| s["resource"] == resource)?["judgement"]["verdict"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_is_growing_a_sawtooth_is_not_and_a_bound_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let trigger = dir.path().join("rise");
    let (leak, saw) = (python("leak"), python("saw"));
    let bounded = python_with("bounded", &trigger.display().to_string());
    let yaml = format!(
        r#"
targets:
  leaky: {{type: http, base_url: "http://127.0.0.1:1", observe: {{pid: {}}}}}
  saw: {{type: http, base_url: "http://127.0.0.1:1", observe: {{pid: {}}}}}
  bounded: {{type: http, base_url: "http://127.0.0.1:1", observe: {{pid: {}}}}}
scenarios: {{}}
soak: {{window: 10m, warmup: 10s, resolution: 1s}}
"#,
        leak.0.id(),
        saw.0.id(),
        bounded.0.id()
    );
    let d = daemon(config(&yaml, "127.0.0.1:1".parse().unwrap()));
    let url = format!("http://{}/api/v1/soak", d.addr());
    // The bounded process rises once the judge has seen it and its warmup is nearly
    // over, so the rise lands inside the judged points however slowly the daemon started.
    eventually(Duration::from_secs(30), || async {
        let s = try_json(&url).await?;
        let t = s["targets"]
            .as_array()?
            .iter()
            .find(|t| t["target"] == "bounded")?;
        (!t["series"].as_array()?.is_empty()).then_some(())
    })
    .await
    .expect("the bounded process is observed");
    tokio::time::sleep(Duration::from_secs(12)).await;
    std::fs::write(&trigger, "").unwrap();
    // 10 s of warmup, 60 points, then the first verdict: well inside 4 minutes.
    let snap = eventually(Duration::from_secs(200), || async {
        let s = try_json(&url).await?;
        let all = [
            ("leaky", "rss_bytes"),
            ("saw", "rss_bytes"),
            ("bounded", "rss_bytes"),
        ];
        all.iter()
            .all(|(t, r)| verdict(&s, t, r).is_some_and(|v| v != "insufficient"))
            .then_some(s)
    })
    .await
    .expect("a verdict on every target within 200 s");
    let v = |t: &str, r: &str| verdict(&snap, t, r).unwrap_or_default();
    // The answer's shape is the committed schema's, and the schema refuses a verdict it
    // does not know.
    assert_eq!(
        schema_violations("soak.schema.json", &snap),
        Vec::<String>::new(),
        "{snap:#}"
    );
    let mut bad = snap.clone();
    bad["targets"][0]["series"][0]["judgement"] = serde_json::json!({"verdict": "leaking", "absolute": null, "relative": null, "plateau": null, "period": null, "resolvable_period": null, "points": 1, "reason": "x"});
    assert!(!schema_violations("soak.schema.json", &bad).is_empty());
    assert_eq!(v("leaky", "rss_bytes"), "growing", "{snap:#}");
    assert_eq!(v("leaky", "open_fds"), "growing", "{snap:#}");
    assert_ne!(v("saw", "rss_bytes"), "growing", "{snap:#}");
    assert_eq!(v("bounded", "rss_bytes"), "bounded", "{snap:#}");
    // The evidence: a trend per day with its interval, and a sentence.
    let leaky = &snap["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "leaky")
        .unwrap()["series"];
    let rss = leaky
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["resource"] == "rss_bytes")
        .unwrap();
    assert!(
        rss["judgement"]["relative"]["lower"].as_f64().unwrap() > 0.0,
        "{rss:#}"
    );
    assert!(
        rss["judgement"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("growing"),
        "{rss:#}"
    );
    // The charts' points, asked for, keep to the schema and to the number asked.
    let charted = try_json(&format!("{url}?points=50")).await.unwrap();
    assert_eq!(
        schema_violations("soak.schema.json", &charted),
        Vec::<String>::new()
    );
    let pts = charted["targets"][0]["series"][0]["points"]
        .as_array()
        .unwrap();
    assert!(!pts.is_empty() && pts.len() <= 50, "{}", pts.len());
    // The soak report: the leak is a finding with its chart, as HTML, as JSON, and
    // through the CLI.
    let base = format!("http://{}", d.addr());
    let json = try_json(&format!("{base}/api/v1/soak/report?since=1h"))
        .await
        .unwrap();
    assert_eq!(json["since_seconds"], 600.0, "cut to the window");
    let findings = json["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["subject"] == "leaky"
            && f["resource"] == "rss_bytes"
            && f["kind"] == "growing"),
        "{json:#}"
    );
    assert!(
        !findings
            .iter()
            .any(|f| f["subject"] == "saw" && f["kind"] == "growing"),
        "{json:#}"
    );
    let page = try_text(&format!("{base}/soak/report?since=30m"))
        .await
        .unwrap();
    assert!(
        page.contains("<h1>Soak report: the last 10m</h1>"),
        "cut to the window: {page}"
    );
    assert!(
        page.contains("leaky: rss_bytes — growing"),
        "the leak's chart"
    );
    assert!(page.contains("<polygon"), "its interval band");
    let bad = client()
        .get(format!("{base}/soak/report?since=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let out = dir.path().join("soak.html");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_soakd"))
        .args(["report", "--soak", "--url", &base, "--since", "1h", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.contains("leaky: rss_bytes — growing"));
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_soakd"))
        .args(["report", "--soak", "--json", "--url", &base])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert!(v["findings"].as_array().is_some_and(|f| !f.is_empty()));
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(
            &m,
            r#"soakd_soak_growing{target="leaky",resource="rss_bytes"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"soakd_soak_growing{target="saw",resource="rss_bytes"}"#
        ),
        Some(0.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"soakd_soak_trend_per_day{target="leaky",resource="rss_bytes",bound="lower"}"#
        )
        .unwrap()
            > 0.0
    );
    assert!(sample(&m, r#"soakd_observed{target="leaky",resource="open_fds"}"#).unwrap() > 10.0);
    assert_eq!(
        sample(&m, r#"soakd_observe_up{target="saw",source="process"}"#),
        Some(1.0)
    );
    d.shutdown(Duration::from_secs(5)).await;
}

/// A target that goes away is an error series and a reason, never a stop; one that
/// comes back under another pid is a restart: an event, a counter, and its series
/// judged from the restart on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_is_seen_and_a_missing_process_is_an_error_not_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("t.pid");
    let first = python("bounded");
    std::fs::write(&pid_file, first.0.id().to_string()).unwrap();
    let yaml = format!(
        r#"
targets:
  t: {{type: http, base_url: "http://127.0.0.1:1", observe: {{pid_file: "{}"}}}}
scenarios: {{}}
soak: {{window: 10m, warmup: 10s, resolution: 1s}}
"#,
        pid_file.display()
    );
    let d = daemon(config(&yaml, "127.0.0.1:1".parse().unwrap()));
    let m_url = d.addr();
    eventually(Duration::from_secs(10), || async {
        let m = metrics_text(m_url).await;
        (sample(&m, r#"soakd_observe_up{target="t",source="process"}"#) == Some(1.0)).then_some(())
    })
    .await
    .expect("the process is read");
    drop(first);
    let url = format!("http://{}/api/v1/soak", d.addr());
    let err = eventually(Duration::from_secs(10), || async {
        let s = try_json(&url).await?;
        let e = s["targets"][0]["errors"]["process"].as_str()?.to_string();
        Some(e)
    })
    .await
    .expect("the error is said");
    assert!(err.contains("process"), "{err}");
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(&m, r#"soakd_observe_up{target="t",source="process"}"#),
        Some(0.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"soakd_observe_errors_total{target="t",source="process"}"#
        )
        .unwrap()
            >= 1.0
    );
    let second = python("bounded");
    std::fs::write(&pid_file, second.0.id().to_string()).unwrap();
    let snap = eventually(Duration::from_secs(10), || async {
        let s = try_json(&url).await?;
        (!s["targets"][0]["restarts"].as_array()?.is_empty()).then_some(s)
    })
    .await
    .expect("the restart is seen");
    assert_eq!(snap["targets"][0]["restarts"].as_array().unwrap().len(), 1);
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(&m, r#"soakd_target_restarts_total{target="t"}"#),
        Some(1.0),
        "{m}"
    );
    let h = try_json(&format!("http://{}/api/v1/history?resolution=1s", d.addr()))
        .await
        .unwrap();
    let restart = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "restart");
    let msg = restart.expect("a restart event")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.starts_with("target t restarted: pid"), "{msg}");
    drop(second);
    d.shutdown(Duration::from_secs(5)).await;
}

/// soakd's own series are judged like observed ones: a latency step made by a reload
/// (the op moves to a slower endpoint) is a change point of the op's p50, with the
/// reload named as its probable cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_step_is_found_with_the_reload_that_caused_it() {
    use axum::routing::get;
    let router = axum::Router::new()
        .route("/fast", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(40)).await;
                "ok"
            }),
        );
    let addr = serve(router).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("soakd.yaml");
    let text = |path: &str| {
        format!(
            r#"
listen: 127.0.0.1:0
targets: {{t: {{type: http, base_url: "http://{addr}"}}}}
scenarios:
  s:
    target: t
    schedule: {{hold: {{rate: 50/s}}}}
    ops: {{get: {{http: {{path: {path}}}}}}}
soak: {{window: 10m, warmup: 10s, resolution: 1s}}
"#
        )
    };
    std::fs::write(&file, text("/fast")).unwrap();
    let cfg = soakd::config::load(&file).unwrap();
    let loader_file = file.clone();
    let d = soakd::app::Daemon::start(
        cfg,
        Some(Box::new(move || soakd::config::load(&loader_file))),
        soakd::app::Options::default(),
    )
    .unwrap();
    let url = format!("http://{}/api/v1/soak", d.addr());
    // The old level needs its reference minute after warmup before a step can be seen.
    tokio::time::sleep(Duration::from_secs(75)).await;
    std::fs::write(&file, text("/slow")).unwrap();
    d.engine.reload().unwrap();
    let cp = eventually(Duration::from_secs(120), || async {
        let s = try_json(&url).await?;
        let op = s["ops"]
            .as_array()?
            .iter()
            .find(|o| o["op"] == "get")?
            .clone();
        let p50 = op["series"]
            .as_array()?
            .iter()
            .find(|x| x["resource"] == "p50_seconds")?
            .clone();
        p50["change_points"].as_array()?.first().cloned()
    })
    .await
    .expect("the step is found within two minutes");
    let answer = try_json(&url).await.unwrap();
    assert_eq!(
        schema_violations("soak.schema.json", &answer),
        Vec::<String>::new(),
        "{answer:#}"
    );
    assert!(cp["after"].as_f64().unwrap() > 0.04, "{cp:#}");
    assert!(cp["before"].as_f64().unwrap() < 0.02, "{cp:#}");
    assert!(
        cp["cause"]
            .as_str()
            .unwrap_or("")
            .starts_with("config reloaded: changed s"),
        "{cp:#}"
    );
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(
            &m,
            r#"soakd_soak_op_change_points_total{scenario="s",op="get",series="p50_seconds"}"#
        ),
        Some(1.0),
        "{m}"
    );
    d.shutdown(Duration::from_secs(5)).await;
}

fn target_of<'a>(snap: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    snap["targets"]
        .as_array()?
        .iter()
        .find(|t| t["target"] == name)
}

fn series_of<'a>(t: &'a serde_json::Value, resource: &str) -> Option<&'a serde_json::Value> {
    t["series"]
        .as_array()?
        .iter()
        .find(|s| s["resource"] == resource)
}

/// The exposition and PromQL sources against real ones: soakd's own /metrics (the
/// standard process series and a named counter) and a real Prometheus scraping it; a
/// URL that refuses and a query Prometheus rejects are errors with their reasons, and the
/// other sources go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exposition_and_promql_sources_read_real_ones() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_prom, prom) = start_prometheus(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: soakd\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
        &[],
    );
    let refused = free_port();
    let yaml = format!(
        r#"
listen: 127.0.0.1:{port}
targets:
  self:
    type: http
    base_url: "http://127.0.0.1:{port}"
    observe:
      metrics_url: "http://127.0.0.1:{port}/metrics"
      series: {{requests: 'soakd_requests_total{{scenario="s"}}'}}
      promql: {{url: "http://{prom}", queries: {{scraped_requests: 'sum(soakd_requests_total{{scenario="s"}})'}}}}
  gone:
    type: http
    base_url: "http://127.0.0.1:{refused}"
    observe:
      metrics_url: "http://127.0.0.1:{refused}/metrics"
      promql: {{url: "http://{prom}", queries: {{bad: 'sum(('}}}}
scenarios:
  s:
    target: self
    schedule: {{hold: {{rate: 20/s}}}}
    ops: {{health: {{http: {{path: /healthz}}}}}}
soak: {{window: 10m, warmup: 10s, resolution: 1s}}
"#
    );
    let cfg = soakd::config::parse(
        &yaml,
        "t.yaml",
        std::path::Path::new("."),
        &std::collections::HashMap::new(),
    )
    .unwrap();
    let d = soakd::app::Daemon::start(cfg, None, soakd::app::Options::default()).unwrap();
    let url = format!("http://{}/api/v1/soak", d.addr());
    let snap = eventually(Duration::from_secs(60), || async {
        let s = try_json(&url).await?;
        let t = target_of(&s, "self")?;
        let scraped = series_of(t, "scraped_requests")?["latest"].as_f64()?;
        (scraped > 0.0 && t["errors"].as_object()?.is_empty()).then_some(s.clone())
    })
    .await
    .expect("Prometheus answers the query and the exposition is read");
    let me = target_of(&snap, "self").unwrap();
    for r in [
        "rss_bytes",
        "open_fds",
        "cpu_seconds",
        "threads",
        "start_time_seconds",
    ] {
        assert!(
            series_of(me, r)
                .and_then(|s| s["latest"].as_f64())
                .is_some_and(|v| v > 0.0),
            "{r}: {me:#}"
        );
    }
    // A named counter is judged as its rate.
    assert_eq!(
        series_of(me, "requests").unwrap()["shape"],
        "counter",
        "{me:#}"
    );
    let gone = target_of(&snap, "gone").unwrap();
    let errors = gone["errors"].as_object().unwrap();
    assert!(
        errors["metrics_url"]
            .as_str()
            .unwrap()
            .contains(&refused.to_string()),
        "{gone:#}"
    );
    assert!(
        errors["promql"]
            .as_str()
            .unwrap()
            .starts_with("bad: Prometheus refused"),
        "{gone:#}"
    );
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(&m, r#"soakd_observe_up{target="self",source="promql"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"soakd_observe_up{target="gone",source="metrics_url"}"#
        ),
        Some(0.0)
    );
    // The load went on throughout.
    assert!(sample(&m, r#"soakd_requests_total{op="health",scenario="s"}"#).unwrap() > 20.0);
    d.shutdown(Duration::from_secs(5)).await;
}

/// The cgroup source on a cgroup the test makes under its own (cgroup v1's memory
/// controller here: this host's v2 mount has no memory controller), with a process in
/// it that holds 30 MiB; the cgroup is removed afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cgroup_source_reads_a_cgroup_the_test_makes() {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(rel) = own.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    }) else {
        panic!("this host mounts no cgroup v1 memory controller (the suite's machine does): {own}");
    };
    let base = std::path::Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
    let group = base.join(format!("soakd-test-{}", std::process::id()));
    std::fs::create_dir(&group).unwrap_or_else(|e| panic!("{}: {e}", group.display()));
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _remove = Remove(group.clone());
    let holder = python("bounded");
    std::fs::write(group.join("cgroup.procs"), holder.0.id().to_string()).unwrap();
    let yaml = format!(
        "targets:\n  c: {{type: http, base_url: \"http://127.0.0.1:1\", observe: {{cgroup: \"{}\"}}}}\nscenarios: {{}}\nsoak: {{window: 10m, warmup: 10s, resolution: 1s}}\n",
        group.display()
    );
    let d = daemon(config(&yaml, "127.0.0.1:1".parse().unwrap()));
    let url = format!("http://{}/api/v1/soak", d.addr());
    // The holder charges its 20 MiB to the cgroup as it allocates them.
    let snap = eventually(Duration::from_secs(60), || async {
        let s = try_json(&url).await?;
        let t = target_of(&s, "c")?;
        let mem = series_of(t, "cgroup_memory_bytes")?["latest"].as_f64()?;
        (mem > 15.0 * 1024.0 * 1024.0).then_some(s.clone())
    })
    .await
    .expect("the cgroup's memory is read and holds the process's 20 MiB");
    let c = target_of(&snap, "c").unwrap();
    assert!(c["errors"].as_object().unwrap().is_empty(), "{c:#}");
    assert!(
        series_of(c, "cgroup_anon_bytes").unwrap()["latest"]
            .as_f64()
            .unwrap()
            > 10e6,
        "{c:#}"
    );
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(&m, r#"soakd_observe_up{target="c",source="cgroup"}"#),
        Some(1.0)
    );
    d.shutdown(Duration::from_secs(5)).await;
    // The holder leaves the cgroup with it, so the cgroup can be removed.
    drop(holder);
}

/// A table that bloats is found on the throwaway PostgreSQL: updates while a
/// transaction is held open (nothing can be pruned or vacuumed) grow `bloaty`'s bytes
/// per live tuple and its dead-tuple ratio, and the open transaction's age; an
/// insert-only table grows with its rows and is not bloat. Both tables are found from
/// the ops' SQL; the SQL ops run on soakd's load pool, the reading on the soak's own
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_bloating_on_postgres_is_found() {
    use sqlx::Connection;
    let pg = soakd::pg::cluster::Cluster::start(true)
        .unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
    let url = pg.url("postgres");
    let mut setup = sqlx::PgConnection::connect(&url).await.unwrap();
    for q in [
        "CREATE TABLE bloaty (id int PRIMARY KEY, v int NOT NULL) WITH (autovacuum_enabled = false)",
        "INSERT INTO bloaty SELECT g, 0 FROM generate_series(1, 100000) g",
        "CREATE TABLE appended (id bigserial PRIMARY KEY, v int NOT NULL)",
        // No ANALYZE: run on the connection whose inserts are not yet reported, it
        // would count every row twice in n_live_tup (an estimate PostgreSQL keeps).
        "INSERT INTO appended (v) SELECT 1 FROM generate_series(1, 20000)",
    ] {
        sqlx::query(q).execute(&mut setup).await.unwrap();
    }
    drop(setup);
    // The transaction a forgotten session left open.
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT txid_current()")
        .execute(&mut holder)
        .await
        .unwrap();
    let yaml = r#"
targets:
  db: {type: postgres, url: "${DATABASE_URL}", max_connections: 1, stats: {enabled: false}}
scenarios:
  churn:
    target: db
    schedule: {hold: {rate: 200/s}}
    ops:
      update: {sql: {query: "UPDATE bloaty SET v = v + 1 WHERE id = (random() * 99999)::int + 1"}}
      append: {sql: {query: "INSERT INTO appended (v) VALUES (1)"}}
soak: {window: 10m, warmup: 10s, resolution: 1s, growth: {tables: 1000%}}
"#;
    // Minutes stand for a soak's days here, so the materiality threshold is scaled as
    // the time is: the appended table's last page fills and a new one starts every
    // two seconds, which moves its bytes per tuple by half a percent either way —
    // thousands of percent "a day" when a minute is extrapolated — while the bloating
    // table grows by ten times that a minute.
    let d = daemon(config_vars(yaml, &[("DATABASE_URL", url.clone())]));
    let api = format!("http://{}/api/v1/soak", d.addr());
    let wanted = [
        ("db", "bloaty.bytes_per_live_tuple"),
        ("db", "bloaty.dead_tuple_ratio"),
        ("db", "appended.bytes_per_live_tuple"),
        ("db", "oldest_xid_age"),
    ];
    let Some(snap) = eventually(Duration::from_secs(200), || async {
        let s = try_json(&api).await?;
        wanted
            .iter()
            .all(|(t, r)| verdict(&s, t, r).is_some_and(|v| v != "insufficient"))
            .then_some(s)
    })
    .await
    else {
        panic!(
            "verdicts within 200 s: {:#}",
            try_json(&api).await.unwrap_or_default()
        )
    };
    assert_eq!(
        schema_violations("soak.schema.json", &snap),
        Vec::<String>::new(),
        "{snap:#}"
    );
    let v = |r: &str| verdict(&snap, "db", r).unwrap_or_default();
    assert_eq!(v("bloaty.bytes_per_live_tuple"), "growing", "{snap:#}");
    assert_eq!(v("bloaty.dead_tuple_ratio"), "growing", "{snap:#}");
    assert_eq!(v("oldest_xid_age"), "growing", "{snap:#}");
    assert_ne!(v("appended.bytes_per_live_tuple"), "growing", "{snap:#}");
    assert_ne!(v("appended.dead_tuple_ratio"), "growing", "{snap:#}");
    let t = target_of(&snap, "db").unwrap();
    assert!(t["errors"].as_object().unwrap().is_empty(), "{t:#}");
    assert!(series_of(t, "wal_bytes").is_some(), "{t:#}");
    assert!(series_of(t, "connections").is_some(), "{t:#}");
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(
            &m,
            r#"soakd_soak_growing{target="db",resource="bloaty.bytes_per_live_tuple"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, r#"soakd_observe_up{target="db",source="postgres"}"#),
        Some(1.0)
    );
    // The dead-tuple ratio's trend is absolute: points of the ratio per day.
    assert!(
        sample(
            &m,
            r#"soakd_soak_trend_per_day{target="db",resource="bloaty.dead_tuple_ratio",bound="lower"}"#
        )
        .unwrap()
            > 0.02
    );
    drop(holder);
    d.shutdown(Duration::from_secs(5)).await;
}
