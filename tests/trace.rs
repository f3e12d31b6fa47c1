//! W3C trace context: with `trace: on`, every request of an iteration carries a
//! `traceparent` of the iteration's trace (a new span id per request), HTTP steps and gRPC
//! calls alike; `{{trace.id}}` renders the same id; `trace_sampled` sets the sampled flag
//! on that fraction of traces; `trace: off` sends nothing.

mod common;

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use common::*;
use parking_lot::Mutex;
use soakd::demo::{self, DemoState, Knobs};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// (path, the `s` and `t` query values, the traceparent header) of every request.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

fn recording_router(seen: Seen) -> Router {
    let route = |path: &'static str, seen: Seen| {
        get(
            move |Query(q): Query<HashMap<String, String>>, headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let tp = headers
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let mut s = seen.lock();
                    if s.len() < 100_000 {
                        s.push((
                            path.to_string(),
                            q.get("s").cloned().unwrap_or_default(),
                            q.get("t").cloned().unwrap_or_default(),
                            tp,
                        ));
                    }
                    r#"{"ok": true}"#
                }
            },
        )
    };
    Router::new()
        .route("/a", route("/a", seen.clone()))
        .route("/b", route("/b", seen))
}

/// `00-<32 hex>-<16 hex>-<2 hex>` split into (trace id, span id, flags).
fn parse(tp: &str) -> (String, String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp:?}");
    assert_eq!(parts[0], "00", "{tp:?}");
    assert_eq!(parts[1].len(), 32, "{tp:?}");
    assert_eq!(parts[2].len(), 16, "{tp:?}");
    for p in &parts[1..] {
        assert!(
            p.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{tp:?}"
        );
    }
    assert_ne!(parts[1], "0".repeat(32), "the all-zero trace id is invalid");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_steps_of_an_iteration_share_its_trace() {
    let seen: Seen = Arc::default();
    let (d, _) = daemon_on(
        recording_router(seen.clone()),
        r#"
targets: {t: {type: http, base_url: "${TARGET}", trace: on, trace_sampled: 50%}}
scenarios:
  s:
    target: t
    schedule: {hold: {rate: 100/s}}
    ops:
      two:
        steps:
          - http: {path: "/a?s={{seq}}"}
          - http: {path: "/b?s={{seq}}&t={{trace.id}}"}
"#,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d.shutdown(Duration::from_secs(2)).await;
    let seen = seen.lock().clone();
    assert!(seen.len() > 100, "{} requests", seen.len());
    let mut by_seq: HashMap<String, Vec<(String, String, String, String)>> = HashMap::new();
    for (path, s, t, tp) in &seen {
        let (trace, span, flags) = parse(tp);
        by_seq
            .entry(s.clone())
            .or_default()
            .push((path.clone(), trace, span, flags));
        if path == "/b" {
            assert_eq!(
                t,
                &parse(tp).0,
                "{{{{trace.id}}}} renders the header's trace id"
            );
        }
    }
    let (mut pairs, mut sampled) = (0, 0);
    for reqs in by_seq.values() {
        if reqs.len() != 2 {
            continue; // the run stopped between the two steps
        }
        pairs += 1;
        let (a, b) = (&reqs[0], &reqs[1]);
        assert_eq!(a.1, b.1, "one trace per iteration: {reqs:?}");
        assert_ne!(a.2, b.2, "a span per request: {reqs:?}");
        assert_eq!(a.3, b.3, "one sampling decision per trace: {reqs:?}");
        sampled += usize::from(a.3 == "01");
    }
    assert!(pairs > 100, "{pairs} complete iterations");
    // Different iterations, different traces.
    let traces: std::collections::HashSet<&String> = by_seq.values().map(|r| &r[0].1).collect();
    assert_eq!(traces.len(), by_seq.len());
    // trace_sampled: 50 %.
    let share = sampled as f64 / pairs as f64;
    assert!((0.3..0.7).contains(&share), "{sampled} of {pairs} sampled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_traceparent_without_trace_on() {
    let seen: Seen = Arc::default();
    let (d, _) = daemon_on(
        recording_router(seen.clone()),
        r#"
targets: {t: {type: http, base_url: "${TARGET}"}}
scenarios:
  s:
    target: t
    schedule: {hold: {rate: 50/s}}
    ops: {a: {http: {path: "/a?s={{seq}}"}}}
"#,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.shutdown(Duration::from_secs(2)).await;
    let seen = seen.lock();
    assert!(seen.len() > 10);
    assert!(seen.iter().all(|r| r.3.is_empty()), "{:?}", seen.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_carry_the_trace_as_metadata() {
    let st = DemoState::new(Knobs::default()).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = l.local_addr().unwrap();
    tokio::spawn(demo::grpc::serve(l, st.clone(), futures::future::pending()));
    let d = daemon(config(
        r#"
targets: {ev: {type: grpc, endpoint: "${TARGET}", trace: on, trace_sampled: 0%}}
scenarios:
  e:
    target: ev
    schedule: {hold: {rate: 50/s}}
    ops:
      login:
        grpc:
          method: iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage
          message: {id: "{{trace.id}}", userId: "u-{{seq}}"}
"#,
        grpc,
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.shutdown(Duration::from_secs(2)).await;
    let got = st.received();
    assert!(got.len() > 20, "{} calls", got.len());
    for ev in &got {
        let (trace, _, flags) = parse(&ev.traceparent);
        assert_eq!(
            ev.id, trace,
            "the message's {{{{trace.id}}}} is the metadata's trace"
        );
        assert_eq!(flags, "00", "trace_sampled: 0% marks none sampled");
    }
}
