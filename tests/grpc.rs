//! gRPC: the seed's event services against the in-process demo target, 500 calls in
//! flight over one connection, status codes by kind, a call to a service soakd was not
//! compiled with, and the demo target's knobs.

mod common;

use common::*;
use prost::Message as _;
use soakd::demo::{self, DemoState, Knobs};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const LOGIN: &str = "iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage";
const STAT: &str = "social.statistic.v1.StatisticStatItemUpdatedService/OnMessage";

/// The demo target's HTTP and gRPC servers on free ports.
async fn demo_target(knobs: Knobs) -> (Arc<DemoState>, SocketAddr, SocketAddr) {
    let st = DemoState::new(knobs).unwrap();
    let http = serve(demo::router(st.clone())).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = l.local_addr().unwrap();
    tokio::spawn(demo::grpc::serve(l, st.clone(), futures::future::pending()));
    (st, http, grpc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_event_services_receive_templated_fields() {
    let (st, _, grpc) = demo_target(Knobs::default()).await;
    let cfg = config(
        &format!(
            r#"
fixtures: {{user: {{file: users.json, pick: sequential}}}}
targets:
  ev: {{type: grpc, endpoint: "${{TARGET}}", metadata: {{x-trace-id: "trace-{{{{seq}}}}"}}}}
scenarios:
  e:
    target: ev
    schedule: {{hold: {{rate: 100/s}}}}
    ops:
      login:
        grpc:
          method: {LOGIN}
          message: {{id: "{{{{uuid}}}}", version: 2, namespace: ns-a, userId: "{{{{user.id}}}}", payload: {{userId: "{{{{user.id}}}}", platformId: steam}}}}
      stat:
        grpc:
          method: {STAT}
          message:
            id: "ev-{{{{seq}}}}"
            namespace: ns-b
            userId: "{{{{user.id}}}}"
            timestamp: "{{{{now_ms}}}}"
            payload: {{userId: "{{{{user.id}}}}", statCode: wins_ranked, latestValue: "{{{{rand_int 7 7}}}}", inc: 1}}
"#
        ),
        grpc,
    );
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = scenario_status(d.addr(), "e").await;
    d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(s["errors"].as_object().unwrap().len(), 0, "{s}");
    let got = st.received();
    let users: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/users.json"))
            .unwrap(),
    )
    .unwrap();
    let (mut logins, mut stats) = (0, 0);
    for ev in &got {
        let seq: usize = ev
            .metadata_trace
            .strip_prefix("trace-")
            .unwrap()
            .parse()
            .unwrap();
        // The sequential fixture gives iteration n the user n.
        assert_eq!(ev.user_id, users[seq % users.len()]["id"], "{ev:?}");
        if ev.service.starts_with("iam.") {
            logins += 1;
            assert_eq!(ev.namespace, "ns-a");
            assert!(uuid::Uuid::parse_str(&ev.id).is_ok(), "{ev:?}");
        } else {
            stats += 1;
            assert_eq!(ev.namespace, "ns-b");
            assert_eq!(ev.id, format!("ev-{seq}"), "one iteration, one seq");
            assert_eq!(
                (ev.stat_code.as_str(), ev.latest_value),
                ("wins_ranked", 7.0)
            );
        }
    }
    assert!(logins > 20 && stats > 20, "{logins} logins, {stats} stats");
    // The stat updates reached the goal store: wins_ranked goals now show 7.
    let user = got
        .iter()
        .find(|e| e.service.starts_with("social."))
        .unwrap()
        .user_id
        .clone();
    let states = st.store.states(&user).await.unwrap();
    let goal = &st.index.goals_for("wins_ranked")[0];
    assert_eq!(states[&*goal.goal_id].progress, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_calls_in_flight_over_one_connection() {
    // Every call takes 1 s at the target, so 1000/s offered needs 1000 in flight.
    let (st, _, grpc) = demo_target(Knobs {
        latency_min_ms: 1000,
        latency_max_ms: 1000,
        ..Default::default()
    })
    .await;
    let cfg = config(
        &format!(
            r#"
fixtures: {{user: {{file: users.json}}}}
targets:
  ev: {{type: grpc, endpoint: "${{TARGET}}"}}
scenarios:
  e:
    target: ev
    max_in_flight: 500
    timeout: 5s
    schedule: {{hold: {{rate: 1000/s}}}}
    ops:
      stat: {{grpc: {{method: {STAT}, message: {{userId: "{{{{user.id}}}}", payload: {{statCode: kills_ranked, latestValue: 3}}}}}}}}
"#
        ),
        grpc,
    );
    let d = daemon(cfg);
    let mut max_in_flight = 0.0f64;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let m = metrics_text(d.addr()).await;
        max_in_flight = max_in_flight.max(sample(&m, "soakd_in_flight{scenario=\"e\"}").unwrap());
    }
    let s = scenario_status(d.addr(), "e").await;
    d.shutdown(Duration::from_secs(5)).await;
    let peak = st.grpc_peak.load(std::sync::atomic::Ordering::SeqCst);
    let conns = st
        .grpc_connections
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak >= 450, "the target saw at most {peak} calls at once");
    assert!(
        peak <= 500 && max_in_flight <= 500.0,
        "{peak} / {max_in_flight}"
    );
    assert_eq!(conns, 1, "all calls share one HTTP/2 connection");
    assert!(
        s["dropped_total"].as_u64().unwrap() > 0,
        "the cap turned the excess into drops: {s}"
    );
}

fn write_echo_proto(dir: &std::path::Path) -> prost_reflect::DescriptorPool {
    std::fs::write(
        dir.join("echo.proto"),
        r#"syntax = "proto3";
package test.echo.v1;
import "google/protobuf/timestamp.proto";
message Shout {
  string text = 1; int64 times = 2; repeated string tags = 3;
  map<string, string> labels = 4; google.protobuf.Timestamp at = 5;
}
service Echo { rpc Say(Shout) returns (Shout); }
"#,
    )
    .unwrap();
    let fds = protox::compile(["echo.proto"], [dir]).unwrap();
    std::fs::write(dir.join("echo.pb"), fds.encode_to_vec()).unwrap();
    prost_reflect::DescriptorPool::from_file_descriptor_set(fds).unwrap()
}

/// An Echo server written without generated code: the test's own dynamic service.
#[derive(Clone)]
struct Echo {
    method: prost_reflect::MethodDescriptor,
    seen: Arc<parking_lot::Mutex<Vec<prost_reflect::DynamicMessage>>>,
}

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.echo.v1.Echo";
}

impl tower::Service<http::Request<tonic::body::BoxBody>> for Echo {
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::BoxBody>) -> Self::Future {
        struct Say(Arc<parking_lot::Mutex<Vec<prost_reflect::DynamicMessage>>>);
        impl tonic::server::UnaryService<prost_reflect::DynamicMessage> for Say {
            type Response = prost_reflect::DynamicMessage;
            type Future = futures::future::BoxFuture<
                'static,
                Result<tonic::Response<prost_reflect::DynamicMessage>, tonic::Status>,
            >;
            fn call(&mut self, r: tonic::Request<prost_reflect::DynamicMessage>) -> Self::Future {
                let msg = r.into_inner();
                self.0.lock().push(msg.clone());
                Box::pin(async move { Ok(tonic::Response::new(msg)) })
            }
        }
        let codec = soakd::drivers::grpc::DynamicCodec::new(self.method.input());
        let seen = self.seen.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.unary(Say(seen), req).await)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_a_service_soakd_was_not_compiled_with() {
    let dir = tempfile::tempdir().unwrap();
    let pool = write_echo_proto(dir.path());
    let method = pool
        .get_service_by_name("test.echo.v1.Echo")
        .unwrap()
        .methods()
        .next()
        .unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let svc = Echo {
        method,
        seen: seen.clone(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    // Two targets: one reads the serialized descriptor set, one compiles the .proto at
    // start-up.
    let text = format!(
        r#"
targets:
  by_set: {{type: grpc, endpoint: "http://{addr}", descriptors: [echo.pb]}}
  by_proto: {{type: grpc, endpoint: "http://{addr}", protos: {{files: [echo.proto]}}}}
scenarios:
  a:
    target: by_set
    schedule: {{hold: {{rate: 50/s}}}}
    ops:
      say: {{grpc: {{method: test.echo.v1.Echo/Say, message: {{text: "hi {{{{seq}}}}", times: "{{{{rand_int 2 2}}}}", tags: [x, y], labels: {{run: "{{{{seq}}}}"}}, at: "{{{{now_ms}}}}"}}}}}}
  b:
    target: by_proto
    schedule: {{hold: {{rate: 50/s}}}}
    ops:
      say: {{grpc: {{method: test.echo.v1.Echo.Say, message: {{text: proto}}}}}}
"#
    );
    let env = std::collections::HashMap::new();
    let cfg = soakd::config::parse(&text, "echo.yaml", dir.path(), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let a = scenario_status(d.addr(), "a").await;
    let b = scenario_status(d.addr(), "b").await;
    d.shutdown(Duration::from_secs(5)).await;
    for s in [&a, &b] {
        assert_eq!(s["errors"].as_object().unwrap().len(), 0, "{s}");
        assert!(s["requests_total"].as_u64().unwrap() > 20, "{s}");
    }
    let seen = seen.lock();
    let m = seen
        .iter()
        .find(|m| {
            m.get_field_by_name("text")
                .unwrap()
                .as_str()
                .unwrap()
                .starts_with("hi ")
        })
        .unwrap();
    assert_eq!(m.get_field_by_name("times").unwrap().as_i64(), Some(2));
    assert_eq!(
        m.get_field_by_name("tags")
            .unwrap()
            .as_list()
            .unwrap()
            .len(),
        2
    );
    // A bare numeric expression in a map<string, string> arrives as its text, and
    // {{now_ms}} in a Timestamp as the time it was sent.
    let labels = m.get_field_by_name("labels").unwrap();
    let run = labels
        .as_map()
        .unwrap()
        .get(&prost_reflect::MapKey::String("run".into()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(run.parse::<u64>().is_ok(), "{run:?}");
    let at = m.get_field_by_name("at").unwrap();
    let secs = at
        .as_message()
        .unwrap()
        .get_field_by_name("seconds")
        .unwrap()
        .as_i64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - secs).abs() < 60, "{secs} vs {now}");

    // Mistakes in the method or the message are config errors with their key path, and
    // so is a value known before the run that cannot fit its field.
    let bad = text
        .replace("test.echo.v1.Echo/Say", "test.echo.v1.Echo/Shout")
        .replace("{text: proto}", "{txt: proto, times: many}");
    let e = soakd::config::parse(&bad, "echo.yaml", dir.path(), &env)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(
            "scenarios.a.ops.say.grpc.method: service test.echo.v1.Echo has no method \"Shout\""
        ),
        "{e}"
    );
    assert!(
        e.contains("scenarios.b.ops.say.grpc.message.txt: test.echo.v1.Shout has no field \"txt\""),
        "{e}"
    );
    assert!(
        e.contains("scenarios.b.ops.say.grpc.message.times: \"many\" does not fit int64 field"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_codes_are_classified_by_kind() {
    let (_, _, grpc) = demo_target(Knobs::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write_echo_proto(dir.path());
    let down = free_port();
    let text = format!(
        r#"
targets:
  ev: {{type: grpc, endpoint: "http://{grpc}", descriptors: [echo.pb]}}
  gone: {{type: grpc, endpoint: "http://127.0.0.1:{down}"}}
scenarios:
  s:
    target: ev
    schedule: {{hold: {{rate: 60/s}}}}
    ops:
      no_stat: {{grpc: {{method: {STAT}, message: {{userId: u1, payload: {{statCode: ""}}}}}}}}
      not_served: {{grpc: {{method: test.echo.v1.Echo/Say, message: {{text: x}}}}}}
  t:
    target: gone
    schedule: {{hold: {{rate: 20/s}}}}
    ops:
      login: {{grpc: {{method: {LOGIN}, message: {{userId: u1}}}}}}
"#
    );
    let cfg = soakd::config::parse(
        &text,
        "codes.yaml",
        dir.path(),
        &std::collections::HashMap::new(),
    )
    .unwrap();
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = metrics_text(d.addr()).await;
    d.shutdown(Duration::from_secs(5)).await;
    let count = |op: &str, kind: &str, sc: &str| {
        sample(
            &m,
            &format!("soakd_request_errors_total{{kind=\"{kind}\",op=\"{op}\",scenario=\"{sc}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(count("no_stat", "grpc_invalid_argument", "s") > 10.0, "{m}");
    assert!(count("not_served", "grpc_unimplemented", "s") > 10.0, "{m}");
    assert!(count("login", "grpc_unavailable", "t") > 5.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_knobs_change_behaviour_at_runtime() {
    let (_, http, grpc) = demo_target(Knobs::default()).await;
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/demo.yaml"))
        .unwrap();
    let env = std::collections::HashMap::from([
        ("SOAKD_DEMO_HTTP_URL".to_string(), format!("http://{http}")),
        ("SOAKD_DEMO_GRPC_URL".to_string(), format!("http://{grpc}")),
    ]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut cfg = soakd::config::parse(&text, "demo.yaml", &dir, &env).unwrap();
    cfg.targets.retain(|t| t.name != "db");
    cfg.scenarios.retain(|s| s.target != "db");
    // Sized so that 5 % injected errors land within the windows below at ~4 standard
    // deviations: the HTTP responses are 60 KB of JSON, so fewer of them.
    for s in &mut cfg.scenarios {
        let rate = if s.name == "api" { 60.0 } else { 300.0 };
        s.schedule = soakd::schedule::Schedule::constant(rate);
        s.ops.retain(|o| o.name != "claim");
    }
    // 5 % injected errors, set through the admin endpoint.
    let r = client()
        .put(format!("http://{http}/admin/knobs"))
        .body(r#"{"error_ratio": 0.05}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = daemon(cfg);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let api = scenario_status(d.addr(), "api").await;
    let ev = scenario_status(d.addr(), "events").await;
    let ratio = |s: &serde_json::Value, kind: &str| {
        s["errors"][kind].as_f64().unwrap_or(0.0) / s["requests_total"].as_f64().unwrap()
    };
    let (h, g) = (ratio(&api, "status_5xx"), ratio(&ev, "grpc_unavailable"));
    // ~360 HTTP and ~1800 gRPC operations.
    assert!((0.01..=0.10).contains(&h), "HTTP error ratio {h}: {api}");
    assert!((0.025..=0.075).contains(&g), "gRPC error ratio {g}: {ev}");

    // Latency: 100 ms added shows in the window's p95 (the window still holds the
    // earlier fast requests, so not yet in its median).
    client()
        .put(format!("http://{http}/admin/knobs"))
        .body(r#"{"error_ratio": 0, "latency_min_ms": 100, "latency_max_ms": 100}"#)
        .send()
        .await
        .unwrap();
    let slow = eventually(Duration::from_secs(5), || async {
        let s = scenario_status(d.addr(), "api").await;
        (s["latency_seconds"]["p95"].as_f64()? >= 0.1).then_some(())
    })
    .await;
    assert!(slow.is_some());
    // Capacity: 2 at a time at 100 ms each is 20/s; 60/s offered queues up.
    client()
        .put(format!("http://{http}/admin/knobs"))
        .body(r#"{"concurrency_limit": 2}"#)
        .send()
        .await
        .unwrap();
    let saturated = eventually(Duration::from_secs(8), || async {
        let s = scenario_status(d.addr(), "api").await;
        (s["in_flight"].as_u64()? >= 100).then_some(())
    })
    .await;
    assert!(
        saturated.is_some(),
        "{}",
        scenario_status(d.addr(), "api").await
    );
    // Bad knobs are refused.
    let r = client()
        .put(format!("http://{http}/admin/knobs"))
        .body(r#"{"error_ratio": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    d.shutdown(Duration::from_secs(2)).await;
}
