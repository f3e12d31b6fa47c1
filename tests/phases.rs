//! HTTP request phases on the fast path, against a raw HTTP/1.1 server that delays its
//! first byte by a known amount and counts connections and bytes: `first_byte` shows the
//! delay, `connect` is observed once per new connection, the phases add up to the
//! latency, and the byte counters equal what the server counted. Over plain TCP and
//! over TLS, where `tls` is observed once per new connection too.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    read: AtomicU64,
    written: AtomicU64,
}

const DELAY: Duration = Duration::from_millis(30);
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

/// Answers every GET (keep-alive) `DELAY` after its head arrived; over TLS with
/// `tls`. Bytes are counted as HTTP sees them (inside TLS).
async fn raw_server(counts: Arc<Counts>, tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            counts.connections.fetch_add(1, Ordering::Relaxed);
            let counts = counts.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut s = match tls {
                    None => tokio_util::either::Either::Left(s),
                    Some(a) => match a.accept(s).await {
                        Ok(t) => tokio_util::either::Either::Right(t),
                        Err(_) => return,
                    },
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    counts.read.fetch_add(n as u64, Ordering::Relaxed);
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        tokio::time::sleep(DELAY).await;
                        if s.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                        counts
                            .written
                            .fetch_add(RESPONSE.len() as u64, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    addr
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phases_show_where_the_time_went_and_bytes_match_the_server() {
    phases_and_bytes(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_handshake_is_a_phase_of_each_new_connection() {
    phases_and_bytes(true).await
}

async fn phases_and_bytes(tls: bool) {
    let counts = Arc::new(Counts::default());
    let certs = testcerts::TestCerts::new();
    let acceptor = tls.then(|| certs.server_config(&[b"http/1.1"], false).into());
    let addr = raw_server(counts.clone(), acceptor).await;
    let base = match tls {
        true => format!("https://localhost:{}", addr.port()),
        false => format!("http://{addr}"),
    };
    let d = daemon(config_vars(
        r#"
targets: {t: {type: http, base_url: "${BASE}", max_connections: 4, tls: {ca_file: "${CA}"}}}
scenarios:
  s:
    target: t
    schedule: {hold: {rate: 60/s}}
    ops: {get: {http: {path: /x}}}
"#,
        &[("BASE", base), ("CA", certs.ca_file.display().to_string())],
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    pause(&d, "s", true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = metrics_text(d.addr()).await;
    d.shutdown(Duration::from_secs(2)).await;
    let phase = |p: &str, what: &str| {
        value(
            &text,
            &format!("soakd_http_phase_seconds_{what}{{op=\"get\",phase=\"{p}\",scenario=\"s\"}}"),
        )
    };
    let requests = value(&text, "soakd_requests_total{op=\"get\",scenario=\"s\"}");
    assert!(requests > 100.0, "{requests}");
    // Every request waited for its first byte, and the wait is the server's delay.
    assert_eq!(phase("first_byte", "count"), requests);
    let fb = phase("first_byte", "sum") / requests;
    assert!(
        fb >= DELAY.as_secs_f64() && fb < DELAY.as_secs_f64() + 0.015,
        "first byte {fb}"
    );
    // A connect per connection the server accepted; none for the reused ones.
    let conns = counts.connections.load(Ordering::Relaxed) as f64;
    assert_eq!(phase("connect", "count"), conns);
    assert!(conns <= 4.0, "{conns} connections for max_connections 4");
    // A handshake per connection over TLS, none on a plaintext target; a slot wait on
    // every request (max_connections).
    assert_eq!(phase("tls", "count"), if tls { conns } else { 0.0 });
    assert_eq!(phase("queue", "count"), requests);
    // The phases add up to the latency (measured from the intended start, so it also
    // holds the schedule lag and the request's rendering).
    let phases: f64 = ["queue", "connect", "tls", "first_byte", "body"]
        .iter()
        .map(|p| phase(p, "sum"))
        .sum();
    let latency = value(
        &text,
        "soakd_request_duration_seconds_sum{op=\"get\",scenario=\"s\"}",
    );
    assert!(
        phases <= latency && phases >= 0.9 * latency,
        "phases {phases} vs latency {latency}"
    );
    // Bytes, both ways, as the server counted them.
    assert_eq!(
        value(&text, "soakd_http_sent_bytes_total{scenario=\"s\"}"),
        counts.read.load(Ordering::Relaxed) as f64
    );
    assert_eq!(
        value(&text, "soakd_http_received_bytes_total{scenario=\"s\"}"),
        counts.written.load(Ordering::Relaxed) as f64
    );
}
