//! Test support: in-process targets, configs from text, a running daemon, HTTP helpers.
#![allow(dead_code)]

use soakd::app::{Daemon, Options};
use soakd::config::{self, Config};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Serves `router` on 127.0.0.1 with a free port; lives as long as the runtime.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, router).await.unwrap();
    });
    addr
}

#[path = "../../src/drivers/testcerts.rs"]
pub mod testcerts;

/// Serves `router` over TLS with `tls` (its ALPN list decides HTTP/1.1 or HTTP/2) on
/// 127.0.0.1 with a free port; counts the TLS connections accepted.
pub async fn serve_tls(
    router: axum::Router,
    tls: std::sync::Arc<rustls::ServerConfig>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let Ok(s) = acceptor.accept(s).await else {
                    return;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), TowerToHyperService::new(router))
                    .await;
            });
        }
    });
    addr
}

/// Parses config text with `${NAME}` variables.
pub fn config_vars(text: &str, vars: &[(&str, String)]) -> Config {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    match config::parse(text, "test.yaml", &dir, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// Parses config text; `${TARGET}` is the given address as an http URL. Fixture paths
/// resolve against the repository's `fixtures/`.
pub fn config(text: &str, target: SocketAddr) -> Config {
    let env = HashMap::from([("TARGET".to_string(), format!("http://{target}"))]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    match config::parse(text, "test.yaml", &dir, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

/// A daemon on a free loopback port. A config that keeps the default results directory
/// (`results` in the working directory) gets a fresh one of its own instead, so no
/// test reads what another stored (deploys, runs).
pub fn daemon(mut cfg: Config) -> Daemon {
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    if cfg.results == soakd::config::search::ResultsConfig::Dir("results".into()) {
        // Created only if something is stored.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("soakd-test-results-{}-{n}", std::process::id()));
        cfg.results = soakd::config::search::ResultsConfig::Dir(dir);
    }
    Daemon::start(cfg, None, Options::default()).unwrap()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn status(addr: SocketAddr) -> serde_json::Value {
    client()
        .get(format!("http://{addr}/api/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn scenario_status(addr: SocketAddr, name: &str) -> serde_json::Value {
    let s = status(addr).await;
    s["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no scenario {name} in {s}"))
}

pub async fn metrics_text(addr: SocketAddr) -> String {
    client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The body of `GET url`, or None while the server is not answering yet.
pub async fn try_text(url: &str) -> Option<String> {
    client().get(url).send().await.ok()?.text().await.ok()
}

pub async fn try_json(url: &str) -> Option<serde_json::Value> {
    client().get(url).send().await.ok()?.json().await.ok()
}

/// Polls `f` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of one sample line `name{labels} value` in exposition text.
pub fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of the samples of metric `name` whose labels include `label` (`op="x"`).
pub fn sum_samples(text: &str, name: &str, label: &str) -> f64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Pauses (`true`) or resumes a scenario's arrival clock.
pub fn pause(d: &Daemon, scenario: &str, on: bool) {
    d.engine
        .scenario(scenario)
        .unwrap_or_else(|| panic!("no scenario {scenario}"))
        .paused
        .store(on, std::sync::atomic::Ordering::Relaxed);
}

/// A target that answers "ok" on `/` and counts the requests it got.
pub fn counting_router(count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> axum::Router {
    axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let c = count.clone();
            async move {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                "ok"
            }
        }),
    )
}

/// A free loopback port (bound and released; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `soakd run --config CONFIG --listen 127.0.0.1:PORT EXTRA...` (the test's
/// binary) with `RUST_LOG=log`, stdout discarded and stderr passed through.
pub fn soakd_run(config: &Path, port: u16, extra: &[&str], log: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_soakd"))
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .env("RUST_LOG", log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap()
}

/// What [`slow_router`] saw: requests finished, in progress now, and the peak.
#[derive(Default)]
pub struct Seen {
    pub done: std::sync::atomic::AtomicU64,
    pub now: std::sync::atomic::AtomicUsize,
    pub peak: std::sync::atomic::AtomicUsize,
}

/// A target that answers "ok" on `/` after `delay`, recording concurrency in `seen`.
pub fn slow_router(delay: Duration, seen: std::sync::Arc<Seen>) -> axum::Router {
    use std::sync::atomic::Ordering::{Relaxed, SeqCst};
    axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let s = seen.clone();
            async move {
                let cur = s.now.fetch_add(1, SeqCst) + 1;
                s.peak.fetch_max(cur, SeqCst);
                tokio::time::sleep(delay).await;
                s.now.fetch_sub(1, SeqCst);
                s.done.fetch_add(1, Relaxed);
                "ok"
            }
        }),
    )
}

/// A daemon running `yaml` against `router`: the router is served on a free loopback
/// port, `${TARGET}` in the YAML is its URL. Returns the daemon and the router's address.
pub async fn daemon_on(router: axum::Router, yaml: &str) -> (Daemon, SocketAddr) {
    let addr = serve(router).await;
    (daemon(config(yaml, addr)), addr)
}

/// A child process killed when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The path of a binary a Debian package installs; fails with what to run when it is missing.
pub fn need(bin: &str, package: &str) -> std::path::PathBuf {
    let p = std::path::PathBuf::from(bin);
    assert!(
        p.exists(),
        "{bin} is missing: run scripts/test.sh (it installs the Debian package {package})"
    );
    p
}

/// The repository root.
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts `bin` with `args`, its stderr in `dir/NAME.log`.
pub fn spawn(bin: &Path, args: &[String], dir: &Path, name: &str) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Proc(
        std::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

/// Starts Prometheus (the Debian package) on a free loopback port with `config` as its
/// `prometheus.yml` in `dir` (its TSDB and log there too) and `flags` added, e.g.
/// `--enable-feature=native-histograms`. Returns it (killed when dropped) and its address.
pub fn start_prometheus(dir: &Path, config: &str, flags: &[&str]) -> (Proc, String) {
    let bin = need("/usr/bin/prometheus", "prometheus");
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        format!("--config.file={}", dir.join("prometheus.yml").display()),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
        format!("--web.listen-address={addr}"),
    ];
    args.extend(flags.iter().map(|f| f.to_string()));
    (spawn(&bin, &args, dir, "prometheus"), addr)
}

/// The result array of a Prometheus instant query, or None when the query failed.
pub async fn prom_query(prom: &str, expr: &str) -> Option<Vec<serde_json::Value>> {
    let v: serde_json::Value = client()
        .get(format!("http://{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    if v["status"] != "success" {
        return None;
    }
    v["data"]["result"].as_array().cloned()
}

/// Every way `answer` breaks the JSON Schema `web/schema/<name>`.
pub fn schema_violations(name: &str, answer: &serde_json::Value) -> Vec<String> {
    let path = root().join("web/schema").join(name);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let schema = jsonschema::validator_for(&v).unwrap();
    schema
        .iter_errors(answer)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}
