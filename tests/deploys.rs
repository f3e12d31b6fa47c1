//! The deploy judge against an in-process target whose release, latency and errors the
//! test changes: a release with slower answers is `regressed` (and stays so across a
//! restart of soakd, from the results store), a release alone `unchanged`, more errors
//! `regressed` by kind, a release that flaps during a rollout one deploy, a target soakd
//! cannot drive after the deploy `invalid`; `POST /api/v1/deploys` is a mutation like
//! any other.

mod common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Target {
    version: parking_lot::RwLock<String>,
    latency_ms: AtomicU64,
    /// Answers 500 to this many requests in a thousand, at random.
    errors_per_mille: AtomicU64,
    n: AtomicU64,
}

impl Target {
    fn new(version: &str, latency_ms: u64) -> Arc<Target> {
        let t = Target::default();
        *t.version.write() = version.to_string();
        t.latency_ms.store(latency_ms, Ordering::Relaxed);
        Arc::new(t)
    }

    /// The new release: version, latency and errors change at once.
    fn deploy(&self, version: &str, latency_ms: u64, errors_per_mille: u64) {
        *self.version.write() = version.to_string();
        self.latency_ms.store(latency_ms, Ordering::Relaxed);
        self.errors_per_mille
            .store(errors_per_mille, Ordering::Relaxed);
    }
}

fn router(t: Arc<Target>) -> axum::Router {
    axum::Router::new()
        .route(
            "/work",
            get(|State(t): State<Arc<Target>>| async move {
                let ms = t.latency_ms.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                t.n.fetch_add(1, Ordering::Relaxed);
                if rand::random::<u64>() % 1000 < t.errors_per_mille.load(Ordering::Relaxed) {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(t): State<Arc<Target>>| async move {
                format!(
                    "# TYPE build_info gauge\nbuild_info{{version=\"{}\"}} 1\n",
                    t.version.read()
                )
            }),
        )
        .route(
            "/version",
            get(|State(t): State<Arc<Target>>| async move {
                axum::Json(serde_json::json!({"build": {"version": *t.version.read()}}))
            }),
        )
        .with_state(t)
}

/// Windows of 24 s in 2 s blocks (12 each), 2 s of settling, a 2 s debounce.
fn yaml(release: &str, extra_target: &str, extra_top: &str) -> String {
    format!(
        r#"
soak: {{enabled: false}}
deploys: {{before: 24s, after: 24s, settle: 2s, block: 2s, debounce: 2s, poll: 1s, min_effect: {{latency: 20%}}, canaries: {{test/podinfo: api}}}}
{extra_top}
targets:
  api:
    type: http
    base_url: ${{TARGET}}
{extra_target}
    observe:
      metrics_url: ${{TARGET}}/metrics
      release: {release}
scenarios:
  s:
    target: api
    slo: {{error_rate: 1%}}
    schedule: {{hold: {{rate: 50/s}}}}
    ops: {{work: {{http: {{path: /work}}}}}}
"#
    )
}

const BY_LABEL: &str = "{metrics: build_info, label: version}";

/// Asks a Flagger gate as Flagger does: the status and the body.
async fn flagger(addr: std::net::SocketAddr, hook: &str, name: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("http://{addr}/api/v1/gates/flagger/{hook}"))
        .json(&serde_json::json!({"name": name, "namespace": "test", "phase": "Progressing", "metadata": {}}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn argo(addr: std::net::SocketAddr) -> serde_json::Value {
    try_json(&format!("http://{addr}/api/v1/gates/argo/api"))
        .await
        .unwrap()
}

async fn deploys(addr: std::net::SocketAddr) -> serde_json::Value {
    try_json(&format!("http://{addr}/api/v1/deploys"))
        .await
        .unwrap()
}

/// Waits for the first deploy's verdict (its load part given).
async fn verdict(addr: std::net::SocketAddr) -> serde_json::Value {
    eventually(Duration::from_secs(90), || async move {
        let v = try_json(&format!("http://{addr}/api/v1/deploys")).await?;
        let d = v["deploys"].as_array()?.first()?.clone();
        (d["verdict"]["load"] != "pending").then_some(d)
    })
    .await
    .expect("a verdict within 90 s")
}

/// The deploy's finding of `measure` on `subject`.
fn finding(d: &serde_json::Value, subject: &str, measure: &str) -> serde_json::Value {
    d["verdict"]["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["measure"] == measure && f["subject"] == subject)
        .cloned()
        .unwrap_or_else(|| panic!("no {measure} finding of {subject}: {d}"))
}

fn reasons(d: &serde_json::Value) -> String {
    d["verdict"]["reasons"].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_release_is_regressed_and_stays_so_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new("1.0", 20);
    let store = format!("results: {{dir: {}}}", dir.path().display());
    let text = yaml(BY_LABEL, "", &store);
    let (d, target) = daemon_on(router(t.clone()), &text).await;
    let addr = d.addr();
    // Flagger's confirm-rollout holds until soakd has the window before a deploy.
    let (code, body) = flagger(addr, "confirm-rollout", "podinfo").await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["reasons"][0]
            .as_str()
            .unwrap()
            .contains("of the 24s before a deploy it needs"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (code, body) = flagger(addr, "confirm-rollout", "podinfo").await;
    assert_eq!(code, 200, "{body}");
    // A Canary soakd does not know of is refused, naming what to configure.
    let (code, body) = flagger(addr, "confirm-promotion", "other").await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("deploys.canaries"),
        "{body}"
    );
    t.deploy("2.0", 40, 0);
    // Once the deploy is seen and before its window fills: the promotion holds, the
    // rollout check passes (too few blocks after it to say anything yet).
    eventually(Duration::from_secs(10), || async move {
        let v = try_json(&format!("http://{addr}/api/v1/deploys")).await?;
        (!v["deploys"].as_array()?.is_empty()).then_some(())
    })
    .await
    .unwrap();
    let (code, body) = flagger(addr, "confirm-promotion", "podinfo").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["result"], "hold");
    assert!(
        body["reasons"][0].as_str().unwrap().contains("fills in"),
        "{body}"
    );
    let (code, body) = flagger(addr, "rollout", "podinfo").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(argo(addr).await["result"], "hold");
    let dep = verdict(addr).await;
    // Judged regressed: the gates fail, saying why.
    let (code, body) = flagger(addr, "confirm-promotion", "podinfo").await;
    assert_eq!(code, 412, "{body}");
    assert!(
        body["reasons"].to_string().contains("p50 of s/work"),
        "{body}"
    );
    let (code, _) = flagger(addr, "rollout", "podinfo").await;
    assert_eq!(code, 412);
    let a = argo(addr).await;
    assert_eq!(a["result"], "fail", "{a}");
    assert_eq!(a["verdict"], "regressed");
    assert_eq!(a["version"], "2.0");
    assert_eq!(dep["from"], "1.0");
    assert_eq!(dep["to"], "2.0");
    assert_eq!(dep["source"], "metrics");
    assert_eq!(dep["verdict"]["load"], "regressed", "{}", reasons(&dep));
    assert_eq!(dep["verdict"]["state"], "regressed");
    let p50 = finding(&dep, "s/work", "p50");
    assert_eq!(p50["change"], "worse");
    let effect = p50["effect"].as_f64().unwrap();
    assert!((0.6..1.3).contains(&effect), "p50 +{effect}: {p50}");
    assert!(p50["ci"][0].as_f64().unwrap() > 0.3, "{p50}");
    assert!(reasons(&dep).contains("p50 of s/work"), "{}", reasons(&dep));
    let all = deploys(addr).await;
    assert_eq!(
        schema_violations("deploys.schema.json", &all),
        Vec::<String>::new(),
        "{all:#}"
    );
    let text_m = metrics_text(addr).await;
    assert_eq!(
        sample(&text_m, "soakd_deploys_total{target=\"api\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text_m,
            "soakd_deploy_regressed{target=\"api\",scenario=\"s\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text_m,
            "soakd_deploy_info{target=\"api\",target_version=\"2.0\"}"
        ),
        Some(1.0)
    );
    assert!(!text_m.contains("target_version=\"1.0\""), "{text_m}");
    // The event log has the deploy and its verdict (the page marks both).
    let h = try_json(&format!("http://{addr}/api/v1/history?since=0"))
        .await
        .unwrap();
    let events = h["events"].to_string();
    assert!(
        events.contains("target api deployed: 1.0 → 2.0"),
        "{events}"
    );
    assert!(events.contains("judged regressed"), "{events}");

    // Its report: the page, and `soakd report --deploy` fetching it.
    let page = try_text(&format!(
        "http://{addr}/deploys/{}",
        dep["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert!(page.contains("Deploy of api"), "{page}");
    assert!(page.contains("<svg"), "the op's blocks charted: {page}");
    assert!(page.contains("s/work: latency per block"), "{page}");
    let out = dir.path().join("deploy.html");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_soakd"))
        .args([
            "report",
            "--deploy",
            "latest",
            "--url",
            &format!("http://{addr}"),
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("Deploy of api"));
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_soakd"))
        .args([
            "report",
            "--deploy",
            "latest",
            "--json",
            "--url",
            &format!("http://{addr}"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["id"], dep["id"]);

    // A restart of soakd: the verdict comes back from the results store, and the
    // release it finds is no new deploy.
    let id = dep["id"].clone();
    d.shutdown(Duration::from_secs(2)).await;
    let d2 = daemon(config(&text, target));
    let addr2 = d2.addr();
    let again = eventually(Duration::from_secs(10), || async move {
        let v = try_json(&format!("http://{addr2}/api/v1/deploys")).await?;
        let d = v["deploys"].as_array()?.first()?.clone();
        Some(d)
    })
    .await
    .unwrap();
    assert_eq!(again["id"], id);
    assert_eq!(again["verdict"]["state"], "regressed");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let v = deploys(addr2).await;
    assert_eq!(v["deploys"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["releases"][0]["version"], "2.0", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_alone_is_unchanged() {
    let t = Target::new("1.0", 20);
    let (d, _) = daemon_on(
        router(t.clone()),
        &yaml("{http: /version, json: /build/version}", "", ""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    t.deploy("1.1", 20, 0);
    let dep = verdict(d.addr()).await;
    assert_eq!(dep["source"], "http");
    assert_eq!(dep["verdict"]["load"], "unchanged", "{}", reasons(&dep));
    let (code, body) = flagger(d.addr(), "confirm-promotion", "podinfo").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(argo(d.addr()).await["result"], "pass");
    assert!(
        dep["verdict"]["findings"].as_array().unwrap().len() >= 3,
        "p50, p95 and p99 compared: {dep}"
    );
    let m = metrics_text(d.addr()).await;
    assert_eq!(
        sample(&m, "soakd_deploy_regressed{target=\"api\",scenario=\"s\"}"),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_errors_after_a_release_is_regressed_by_kind() {
    let t = Target::new("1.0", 5);
    let (d, _) = daemon_on(router(t.clone()), &yaml(BY_LABEL, "", "")).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    t.deploy("2.0", 5, 50);
    let dep = verdict(d.addr()).await;
    assert_eq!(dep["verdict"]["load"], "regressed", "{}", reasons(&dep));
    let f = finding(&dep, "s/work", "errors:status_5xx");
    assert_eq!(f["change"], "worse", "{f}");
    let after = f["after"].as_f64().unwrap();
    assert!((0.03..0.07).contains(&after), "{f}");
    assert!(
        reasons(&dep).contains("status_5xx errors of s/work"),
        "{}",
        reasons(&dep)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_flapping_during_a_rollout_is_one_deploy() {
    let t = Target::new("1.0", 5);
    let (d, _) = daemon_on(router(t.clone()), &yaml(BY_LABEL, "", "")).await;
    let addr = d.addr();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A rollout behind a load balancer: 1.0 and 1.1 alternate every 400 ms for 4 s.
    for i in 0..10 {
        *t.version.write() = if i % 2 == 0 { "1.1" } else { "1.0" }.into();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    *t.version.write() = "1.1".into();
    let v = eventually(Duration::from_secs(15), || async move {
        let v = try_json(&format!("http://{addr}/api/v1/deploys")).await?;
        (!v["deploys"].as_array()?.is_empty()).then_some(v)
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let v2 = deploys(addr).await;
    assert_eq!(v2["deploys"].as_array().unwrap().len(), 1, "{v2}");
    assert_eq!(v["deploys"][0]["from"], "1.0");
    assert_eq!(v["deploys"][0]["to"], "1.1");
    assert_eq!(v["deploys"][0]["verdict"]["state"], "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_soakd_cannot_drive_after_the_release_is_invalid() {
    // Two connections: 20 ms answers leave room for 100/s, 300 ms ones for 7/s, so the
    // operations wait for soakd's own connection slots — the generator's limit, not a
    // verdict on the target.
    let t = Target::new("1.0", 20);
    let (d, _) = daemon_on(
        router(t.clone()),
        &yaml(BY_LABEL, "    max_connections: 2", ""),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    t.deploy("2.0", 300, 0);
    let dep = verdict(d.addr()).await;
    assert_eq!(dep["verdict"]["load"], "invalid", "{}", reasons(&dep));
    assert!(
        reasons(&dep).contains("waited for soakd's own connection slots"),
        "{}",
        reasons(&dep)
    );
}

#[tokio::test]
async fn a_deploy_told_by_the_api_needs_the_token() {
    let t = Target::new("1.0", 5);
    let (d, _) = daemon_on(router(t), &yaml("api", "", "control_token: s3cret")).await;
    let url = format!("http://{}/api/v1/deploys", d.addr());
    let body = serde_json::json!({"target": "api", "version": "7.1", "note": "CI build 88"});
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(deploys(d.addr()).await["deploys"]
        .as_array()
        .unwrap()
        .is_empty());
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("s3cret");
    let r = auth(client().post(&url)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let dep: serde_json::Value = r.json().await.unwrap();
    assert_eq!(dep["to"], "7.1");
    assert_eq!(dep["note"], "CI build 88");
    assert_eq!(dep["source"], "api");
    assert_eq!(dep["verdict"]["state"], "pending");
    let all = deploys(d.addr()).await;
    assert_eq!(
        schema_violations("deploys.schema.json", &all),
        Vec::<String>::new(),
        "{all:#}"
    );
    assert_eq!(all["releases"][0]["source"], "api");
    // The same version again is the same rollout, not a second deploy.
    let r = auth(client().post(&url)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        deploys(d.addr()).await["deploys"].as_array().unwrap().len(),
        1
    );
    let one = try_json(&format!("{url}/{}", dep["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(one["id"], dep["id"]);
    // Bad input is named.
    let r = auth(client().post(&url))
        .json(&serde_json::json!({"target": "nope", "version": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("no target named \\\"nope\\\""));
    let r = auth(client().post(&url))
        .json(&serde_json::json!({"target": "api", "versoin": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown field"));
}

/// Two shards (0/2 and 1/2, real processes) behind a real Prometheus keeping native
/// histograms: the leader judges the deploy on Prometheus's sums over both, finds the
/// slower release, and the follower names the leader when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_fleet_is_judged_on_prometheus_sums() {
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new("1.0", 20);
    let target = serve(router(t.clone())).await;
    let (p0, p1) = (free_port(), free_port());
    let (_prom, prom) = start_prometheus(
        dir.path(),
        &format!(
            "global: {{scrape_interval: 500ms}}\n\
             scrape_configs:\n\
             \x20 - {{job_name: soakd, static_configs: [{{targets: ['127.0.0.1:{p0}', '127.0.0.1:{p1}']}}]}}\n"
        ),
        &["--enable-feature=native-histograms"],
    );
    let text = yaml(
        BY_LABEL,
        "",
        &format!(
            "verdicts: {{prometheus: \"http://{prom}\", selector: 'job=\"soakd\"', leader: \"http://127.0.0.1:{p0}\", scrape_interval: 1s, interval: 1s}}\nresults: {{dir: \"{}\"}}",
            dir.path().join("results").display()
        ),
    )
    .replace("${TARGET}", &format!("http://{target}"));
    let cfg = dir.path().join("soakd.yaml");
    std::fs::write(&cfg, text).unwrap();
    let _leader = Proc(soakd_run(&cfg, p0, &["--shard", "0/2"], "warn"));
    let _follower = Proc(soakd_run(&cfg, p1, &["--shard", "1/2"], "warn"));
    let leader: std::net::SocketAddr = format!("127.0.0.1:{p0}").parse().unwrap();
    eventually(Duration::from_secs(30), || async {
        (prom_query(&prom, "count(up{job=\"soakd\"} == 1)")
            .await?
            .first()?["value"][1]
            == "2")
            .then_some(())
    })
    .await
    .expect("Prometheus scrapes both shards");
    // A follower asked for the deploys names its leader.
    let r = client()
        .get(format!("http://127.0.0.1:{p1}/api/v1/deploys"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 421);
    assert!(
        r.text().await.unwrap().contains(&format!("127.0.0.1:{p0}")),
        "the follower names the leader"
    );
    // So does its gate: not 2xx, so Flagger holds rather than promote on a shard's word.
    let follower: std::net::SocketAddr = format!("127.0.0.1:{p1}").parse().unwrap();
    let (code, body) = flagger(follower, "confirm-promotion", "podinfo").await;
    assert_eq!(code, 421, "{body}");
    assert!(
        body.to_string().contains(&format!("127.0.0.1:{p0}")),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    t.deploy("2.0", 40, 0);
    let dep = eventually(Duration::from_secs(120), || async move {
        let v = try_json(&format!("http://{leader}/api/v1/deploys")).await?;
        let d = v["deploys"].as_array()?.first()?.clone();
        (d["verdict"]["load"] != "pending").then_some(d)
    })
    .await
    .expect("a verdict within 120 s");
    assert_eq!(dep["verdict"]["load"], "regressed", "{}", reasons(&dep));
    assert!(
        reasons(&dep).contains("judged on Prometheus's sums over the 2 shards (native buckets)"),
        "{}",
        reasons(&dep)
    );
    let p50 = finding(&dep, "s/work", "p50");
    assert_eq!(p50["change"], "worse", "{p50}");
    // 20 ms → 40 ms, read through native buckets (8 per doubling) summed over both.
    let (before, after) = (
        p50["before"].as_f64().unwrap(),
        p50["after"].as_f64().unwrap(),
    );
    assert!((0.019..0.026).contains(&before), "{p50}");
    assert!((0.039..0.048).contains(&after), "{p50}");
}

/// `deploys.controls`: the release of `api` lands while everything slows alike (the
/// machine, the network: its control `calm` slows too). Judged relative to the control,
/// that is no regression — the same deploy without a control is one (the first test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_the_control_shares_is_not_the_deploys() {
    let t = Target::new("1.0", 20);
    let calm = Target::new("-", 20);
    let api = serve(router(t.clone())).await;
    let control = serve(router(calm.clone())).await;
    let text = format!(
        r#"
soak: {{enabled: false}}
deploys: {{before: 24s, after: 24s, settle: 2s, block: 2s, debounce: 2s, poll: 1s, min_effect: {{latency: 20%}}, controls: {{api: calm}}}}
targets:
  api:
    type: http
    base_url: http://{api}
    observe:
      metrics_url: http://{api}/metrics
      release: {BY_LABEL}
  calm: {{type: http, base_url: "http://{control}"}}
scenarios:
  s:
    target: api
    schedule: {{hold: {{rate: 50/s}}}}
    ops: {{work: {{http: {{path: /work}}}}}}
  c:
    target: calm
    schedule: {{hold: {{rate: 50/s}}}}
    ops: {{work: {{http: {{path: /work}}}}}}
"#
    );
    let d = daemon(config(&text, api));
    tokio::time::sleep(Duration::from_secs(30)).await;
    t.deploy("2.0", 40, 0);
    calm.deploy("-", 40, 0);
    let dep = verdict(d.addr()).await;
    assert_eq!(dep["verdict"]["load"], "unchanged", "{}", reasons(&dep));
    let p50 = finding(&dep, "s/work", "p50");
    assert_eq!(p50["relative_to"], "calm", "{p50}");
    // The op's own p50 doubled; relative to its control it did not move.
    let raw = p50["after"].as_f64().unwrap() / p50["before"].as_f64().unwrap();
    assert!(raw > 1.6, "{p50}");
    assert!(p50["effect"].as_f64().unwrap().abs() < 0.1, "{p50}");
    let all = deploys(d.addr()).await;
    assert_eq!(
        schema_violations("deploys.schema.json", &all),
        Vec::<String>::new(),
        "{all:#}"
    );
}
