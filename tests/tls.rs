//! HTTPS and gRPC over TLS, with certificates made for each test (rcgen): the HTTP
//! driver's behaviours over soakd's own TLS client (redirects, timeouts, error kinds,
//! bodies, keep-alive), client certificates accepted and refused, `version: auto`
//! speaking HTTP/2 when the server chooses it, gRPC with a client certificate, and the
//! config naming bad TLS files.

mod common;

use axum::routing::{get, post};
use axum::Router;
use common::testcerts::TestCerts;
use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn count(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or(0.0)
}

fn errors(text: &str, scenario: &str, op: &str, kind: &str) -> f64 {
    count(
        text,
        &format!(
            "soakd_request_errors_total{{kind=\"{kind}\",op=\"{op}\",scenario=\"{scenario}\"}}"
        ),
    )
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `${PORT}`, `${CA}` and, for configs that present one, our client certificate (`${CERT}`, `${KEY}`) and a stranger's
/// (`${SCERT}`, `${SKEY}`) for a config.
fn cert_vars(certs: &TestCerts, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("PORT", port.to_string()),
        ("CA", path(&certs.ca_file)),
        ("CERT", path(&certs.client.cert_file)),
        ("KEY", path(&certs.client.key_file)),
        ("SCERT", path(&certs.stranger.cert_file)),
        ("SKEY", path(&certs.stranger.key_file)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_keep_every_http_behaviour_on_the_fast_path() {
    let certs = TestCerts::new();
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/old",
            get(|| async { axum::response::Redirect::temporary("/new") }),
        )
        .route(
            "/new",
            get(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::Relaxed);
                    r#"{"id": "n-1"}"#
                }
            }),
        )
        .route(
            "/fail",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        )
        .route(
            "/echo",
            post(|body: String| async move { format!(r#"{{"len": {}}}"#, body.len()) }),
        );
    let accepted = Arc::new(AtomicU64::new(0));
    let addr = serve_tls(
        app,
        certs.server_config(&[b"http/1.1"], false),
        accepted.clone(),
    )
    .await;
    let cfg = config_vars(
        r#"
targets:
  t: {type: http, base_url: "https://localhost:${PORT}", tls: {ca_file: "${CA}"}}
scenarios:
  s:
    target: t
    schedule: {hold: {rate: 40/s}}
    ops:
      ok: {http: {path: /ok}}
      old: {http: {path: /old}}
      fail: {http: {path: /fail}}
      slow: {http: {path: /slow}, timeout: 200ms}
      post:
        steps:
          - {http: {method: POST, path: /echo, json: {a: "{{seq}}"}}, extract: [{from: /len, bind: [n]}]}
          - {http: {path: "/new?len={{n}}"}}
"#,
        &cert_vars(&certs, addr.port()),
    );
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_secs(3)).await;
    pause(&d, "s", true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = metrics_text(d.addr()).await;
    d.shutdown(Duration::from_secs(5)).await;
    let requests = |op: &str| {
        count(
            &m,
            &format!("soakd_requests_total{{op=\"{op}\",scenario=\"s\"}}"),
        )
    };
    for op in ["ok", "old", "post"] {
        assert!(requests(op) > 5.0, "{op}: {m}");
        for kind in ["tls", "connect", "io", "status_other", "body", "timeout"] {
            assert_eq!(errors(&m, "s", op, kind), 0.0, "{op} {kind}");
        }
    }
    // The redirect was followed on the same origin, and the two-step op reached /new.
    assert!(
        hits.load(Ordering::Relaxed) as f64 >= requests("old") + requests("post") - 2.0,
        "{} hits",
        hits.load(Ordering::Relaxed)
    );
    assert_eq!(errors(&m, "s", "fail", "status_5xx"), requests("fail"));
    assert!(errors(&m, "s", "slow", "timeout") > 0.0, "{m}");
    // A handshake per connection the server accepted, and they were kept alive: far
    // fewer connections than requests (each timed-out request costs one). Which op
    // dials a new connection is whichever finds none idle, so the handshakes are
    // counted over every op (a loaded machine once had `ok` reuse all 31).
    let tls: f64 = ["ok", "old", "fail", "slow", "post"]
        .iter()
        .map(|op| {
            count(
                &m,
                &format!(
                    "soakd_http_phase_seconds_count{{op=\"{op}\",phase=\"tls\",scenario=\"s\"}}"
                ),
            )
        })
        .sum();
    let conns = accepted.load(Ordering::Relaxed) as f64;
    assert!(
        tls >= 1.0 && tls <= conns,
        "tls {tls} for {conns} connections"
    );
    assert!(
        conns < requests("ok") + requests("slow") + 8.0,
        "{conns} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_presented_and_a_strangers_is_refused_as_tls() {
    let certs = TestCerts::new();
    let accepted = Arc::new(AtomicU64::new(0));
    let app = Router::new().route("/ok", get(|| async { "ok" }));
    let addr = serve_tls(app, certs.server_config(&[b"http/1.1"], true), accepted).await;
    let cfg = config_vars(
        r#"
targets:
  ours: {type: http, base_url: "https://localhost:${PORT}", tls: {ca_file: "${CA}", cert_file: "${CERT}", key_file: "${KEY}"}}
  theirs: {type: http, base_url: "https://localhost:${PORT}", tls: {ca_file: "${CA}", cert_file: "${SCERT}", key_file: "${SKEY}"}}
  none: {type: http, base_url: "https://localhost:${PORT}", tls: {ca_file: "${CA}"}}
scenarios:
  a: {target: ours, schedule: {hold: {rate: 20/s}}, ops: {get: {http: {path: /ok}}}}
  b: {target: theirs, schedule: {hold: {rate: 20/s}}, ops: {get: {http: {path: /ok}}}}
  c: {target: none, schedule: {hold: {rate: 20/s}}, ops: {get: {http: {path: /ok}}}}
"#,
        &cert_vars(&certs, addr.port()),
    );
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = metrics_text(d.addr()).await;
    d.shutdown(Duration::from_secs(5)).await;
    let total = |s: &str| {
        count(
            &m,
            &format!("soakd_requests_total{{op=\"get\",scenario=\"{s}\"}}"),
        )
    };
    assert!(total("a") > 10.0, "{m}");
    assert_eq!(
        sum_samples(&m, "soakd_request_errors_total", "scenario=\"a\""),
        0.0
    );
    for s in ["b", "c"] {
        assert!(total(s) > 10.0, "{m}");
        assert_eq!(errors(&m, s, "get", "tls"), total(s), "{s}: {m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_auto_speaks_http2_when_the_server_chooses_it_both_on_soakds_own_clients() {
    let certs = TestCerts::new();
    let versions = Arc::new(parking_lot::Mutex::new(HashMap::<String, u64>::new()));
    let v = versions.clone();
    let app = Router::new().route(
        "/v",
        get(move |req: axum::extract::Request| {
            let v = v.clone();
            async move {
                *v.lock().entry(format!("{:?}", req.version())).or_default() += 1;
                "ok"
            }
        }),
    );
    let accepted = Arc::new(AtomicU64::new(0));
    let addr = serve_tls(
        app,
        certs.server_config(&[b"h2", b"http/1.1"], false),
        accepted,
    )
    .await;
    let cfg = config_vars(
        r#"
targets:
  auto: {type: http, base_url: "https://localhost:${PORT}", tls: {ca_file: "${CA}"}}
  one: {type: http, base_url: "https://localhost:${PORT}", version: http1, tls: {ca_file: "${CA}"}}
scenarios:
  a: {target: auto, schedule: {hold: {rate: 20/s}}, ops: {get: {http: {path: /v}}}}
  b: {target: one, schedule: {hold: {rate: 20/s}}, ops: {get: {http: {path: /v}}}}
"#,
        &cert_vars(&certs, addr.port()),
    );
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    pause(&d, "a", true);
    pause(&d, "b", true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = metrics_text(d.addr()).await;
    d.shutdown(Duration::from_secs(5)).await;
    let seen = versions.lock().clone();
    let total = |s: &str| {
        count(
            &m,
            &format!("soakd_requests_total{{op=\"get\",scenario=\"{s}\"}}"),
        )
    };
    for s in ["a", "b"] {
        assert_eq!(
            sum_samples(
                &m,
                "soakd_request_errors_total",
                &format!("scenario=\"{s}\"")
            ),
            0.0,
            "{s}: {m}"
        );
    }
    assert_eq!(
        seen.get("HTTP/2.0").copied().unwrap_or(0) as f64,
        total("a"),
        "{seen:?}"
    );
    assert_eq!(
        seen.get("HTTP/1.1").copied().unwrap_or(0) as f64,
        total("b"),
        "{seen:?}"
    );
    // Both went through soakd's own clients (HTTP/1.1 and, once the server chose h2,
    // HTTP/2): they measured the handshake and every request's first byte.
    for sc in ["a", "b"] {
        let phase = |p: &str| {
            count(
                &m,
                &format!(
                    "soakd_http_phase_seconds_count{{op=\"get\",phase=\"{p}\",scenario=\"{sc}\"}}"
                ),
            )
        };
        assert!(phase("tls") >= 1.0, "{sc}: {m}");
        assert_eq!(phase("first_byte"), total(sc), "{sc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_presents_the_client_certificate() {
    use soakd::demo::{self, DemoState, Knobs};
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let certs = TestCerts::new();
    let st = DemoState::new(Knobs::default()).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &certs.server.cert_pem,
            &certs.server.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(&certs.ca_pem));
    tokio::spawn(demo::grpc::serve_with(
        l,
        st.clone(),
        Some(tls),
        futures::future::pending(),
    ));
    let cfg = config_vars(
        r#"
targets:
  ours: {type: grpc, endpoint: "https://localhost:${PORT}", tls: {ca_file: "${CA}", cert_file: "${CERT}", key_file: "${KEY}"}}
  theirs: {type: grpc, endpoint: "https://localhost:${PORT}", tls: {ca_file: "${CA}", cert_file: "${SCERT}", key_file: "${SKEY}"}}
scenarios:
  a:
    target: ours
    schedule: {hold: {rate: 20/s}}
    ops:
      login: {grpc: {method: iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage, message: {userId: "u-{{seq}}"}}}
  b:
    target: theirs
    schedule: {hold: {rate: 20/s}}
    ops:
      login: {grpc: {method: iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage, message: {userId: "x-{{seq}}"}}}
"#,
        &cert_vars(&certs, port),
    );
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let m = metrics_text(d.addr()).await;
    d.shutdown(Duration::from_secs(5)).await;
    let received = st.received();
    assert!(
        received
            .iter()
            .filter(|e| e.user_id.starts_with("u-"))
            .count()
            > 10,
        "{} calls arrived",
        received.len()
    );
    assert!(!received.iter().any(|e| e.user_id.starts_with("x-")));
    assert_eq!(
        sum_samples(&m, "soakd_request_errors_total", "scenario=\"a\""),
        0.0,
        "{m}"
    );
    assert!(
        sum_samples(&m, "soakd_request_errors_total", "scenario=\"b\"") > 10.0,
        "{m}"
    );
}

#[test]
fn bad_tls_files_are_named_by_the_config() {
    let certs = TestCerts::new();
    let dir = certs.dir.path();
    std::fs::write(dir.join("junk.pem"), "not a certificate\n").unwrap();
    let parse = |tls: &str| -> Vec<(String, String)> {
        let text = format!(
            "targets: {{t: {{type: http, base_url: \"https://localhost:1\", tls: {tls}}}}}\n\
             scenarios: {{s: {{target: t, schedule: {{hold: {{rate: 1/s}}}}, ops: {{g: {{http: {{path: /}}}}}}}}}}\n"
        );
        match soakd::config::parse(&text, "t.yaml", dir, &HashMap::new()) {
            Ok(_) => vec![],
            Err(e) => e
                .errors
                .iter()
                .map(|e| (e.path.clone(), e.message.clone()))
                .collect(),
        }
    };
    // Relative paths resolve against the config's folder.
    assert_eq!(
        parse("{ca_file: ca.crt, cert_file: client.crt, key_file: client.key}"),
        vec![]
    );
    let one = |tls: &str| {
        let e = parse(tls);
        assert_eq!(e.len(), 1, "{tls}: {e:?}");
        e.into_iter().next().unwrap()
    };
    let (p, m) = one("{ca_file: missing.crt}");
    assert_eq!(p, "targets.t.tls.ca_file");
    assert!(
        m.contains("missing.crt") && m.contains("No such file"),
        "{m}"
    );
    let (p, m) = one("{ca_file: junk.pem}");
    assert_eq!(p, "targets.t.tls.ca_file");
    assert!(m.contains("no certificate"), "{m}");
    let (p, m) = one("{cert_file: client.crt}");
    assert_eq!(
        (p.as_str(), m.contains("required")),
        ("targets.t.tls.key_file", true)
    );
    let (p, m) = one("{key_file: client.key}");
    assert_eq!(
        (p.as_str(), m.contains("required")),
        ("targets.t.tls.cert_file", true)
    );
    let (p, m) = one("{cert_file: client.crt, key_file: stranger.key}");
    assert_eq!(p, "targets.t.tls.key_file");
    assert!(m.contains("does not go with"), "{m}");
    let (p, m) = one("{cert_file: client.crt, key_file: junk.pem}");
    assert_eq!(p, "targets.t.tls.key_file");
    assert!(m.contains("no private key"), "{m}");
}
