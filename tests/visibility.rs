//! Visibility probes (`visibility:`) against stand-ins whose writes become readable
//! after a known delay: the measured write-to-visible latency, `not_visible` at the
//! deadline, `max_pending` under overload, concurrent probes, the SQL variant against
//! a real PostgreSQL, the shipped examples, and the demo's asynchronous path.

mod common;

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::*;
use parking_lot::Mutex;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a write becomes readable.
#[derive(Clone, Copy)]
enum Delay {
    Fixed(Duration),
    Uniform(Duration, Duration),
    Never,
}

impl Delay {
    fn draw(self) -> Option<Duration> {
        match self {
            Delay::Fixed(d) => Some(d),
            Delay::Uniform(lo, hi) => Some(rand::rng().random_range(lo..=hi)),
            Delay::Never => None,
        }
    }
}

/// A pipeline stand-in: `POST /v1/events` accepts an event at once (202, with the id it
/// gave it) and makes it readable after the delay; `GET /v1/events/{id}` says whether
/// it is processed yet; `GET /v1/devices/{device}/aggregates` counts a device's
/// processed events (404 before the first), as a telemetry aggregator does.
struct Pipeline {
    delay: Delay,
    next: AtomicU64,
    /// id -> (device, readable from)
    events: Mutex<HashMap<String, (String, Option<Instant>)>>,
    /// Polls per event id, and polls for ids it never gave out.
    polls: Mutex<HashMap<String, u64>>,
    unknown: AtomicU64,
}

impl Pipeline {
    fn new(delay: Delay) -> Arc<Pipeline> {
        Arc::new(Pipeline {
            delay,
            next: AtomicU64::new(1),
            events: Mutex::default(),
            polls: Mutex::default(),
            unknown: AtomicU64::new(0),
        })
    }
}

fn pipeline_router(p: Arc<Pipeline>) -> Router {
    Router::new()
        .route(
            "/v1/events",
            post(
                |State(p): State<Arc<Pipeline>>, Json(body): Json<serde_json::Value>| async move {
                    let id = format!("ev-{}", p.next.fetch_add(1, Ordering::Relaxed));
                    let device = body["device_id"].as_str().unwrap_or("none").to_string();
                    let at = p.delay.draw().map(|d| Instant::now() + d);
                    p.events.lock().insert(id.clone(), (device, at));
                    (
                        axum::http::StatusCode::ACCEPTED,
                        Json(serde_json::json!({"event_id": id})),
                    )
                },
            ),
        )
        .route(
            "/v1/events/{id}",
            get(
                |State(p): State<Arc<Pipeline>>, UrlPath(id): UrlPath<String>| async move {
                    let Some((_, at)) = p.events.lock().get(&id).cloned() else {
                        p.unknown.fetch_add(1, Ordering::Relaxed);
                        return axum::http::StatusCode::NOT_FOUND.into_response();
                    };
                    *p.polls.lock().entry(id.clone()).or_default() += 1;
                    let done = at.is_some_and(|t| Instant::now() >= t);
                    Json(serde_json::json!({"event_id": id, "processed": done})).into_response()
                },
            ),
        )
        .route(
            "/v1/devices/{device}/aggregates",
            get(
                |State(p): State<Arc<Pipeline>>, UrlPath(device): UrlPath<String>| async move {
                    let now = Instant::now();
                    let n = p
                        .events
                        .lock()
                        .values()
                        .filter(|(d, at)| *d == device && at.is_some_and(|t| now >= t))
                        .count();
                    if n == 0 {
                        return axum::http::StatusCode::NOT_FOUND.into_response();
                    }
                    Json(serde_json::json!({"device_id": device, "count": n})).into_response()
                },
            ),
        )
        .with_state(p)
}

use axum::response::IntoResponse;

/// A scenario posting events to `${NAME}` and polling each one's own id until it is
/// processed; `extra` goes into the visibility block.
fn per_id_scenario(name: &str, target: &str, rate: &str, extra: &str) -> String {
    format!(
        r#"
  {name}:
    target: {target}
    max_in_flight: 50
    timeout: 2s
    schedule: {{hold: {{rate: {rate}}}}}
    ops:
      ingest:
        http:
          method: POST
          path: /v1/events
          json: {{device_id: "d-{{{{seq}}}}", value: "{{{{rand_int 1 9}}}}"}}
          expect: [202]
        extract: [{{from: /event_id, bind: [event_id]}}]
        visibility:
          target: {target}
          http: {{method: GET, path: "/v1/events/{{{{write.event_id}}}}"}}
          until:
            - status: 200
            - {{json: /event_id, eq: "{{{{write.event_id}}}}"}}
            - {{json: /processed, eq: true}}
{extra}
"#
    )
}

async fn wait_idle(addr: std::net::SocketAddr, scenario: &str) {
    let label = format!("soakd_visibility_pending{{scenario=\"{scenario}\"}}");
    eventually(Duration::from_secs(15), || async {
        let m = metrics_text(addr).await;
        (sample(&m, &label)? == 0.0).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{scenario}: probes still pending"));
}

fn quantile(m: &str, scenario: &str, op: &str, q: &str) -> f64 {
    sample(
        m,
        &format!(
            "soakd_visibility_quantile_seconds{{op=\"{op}\",scenario=\"{scenario}\",quantile=\"{q}\"}}"
        ),
    )
    .unwrap_or_else(|| panic!("no {q} quantile for {scenario}/{op}"))
}

/// The smallest bucket bound of histogram `name` (series with `label`, summed) holding
/// at least `q` of its observations: a conservative quantile.
fn bound_at(text: &str, name: &str, label: &str, q: f64) -> f64 {
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for l in text.lines() {
        if !(l.starts_with(&format!("{name}_bucket{{")) && l.contains(label)) {
            continue;
        }
        let Some(le) = l.split("le=\"").nth(1).and_then(|x| x.split('"').next()) else {
            continue;
        };
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let n: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        match by_le.iter_mut().find(|(b, _)| *b == le) {
            Some(e) => e.1 += n,
            None => by_le.push((le, n)),
        }
    }
    let total = by_le.iter().map(|b| b.1).fold(0.0, f64::max);
    assert!(total > 0.0, "no {name}{{{label}}} observations");
    by_le
        .iter()
        .filter(|b| b.1 >= q * total)
        .map(|b| b.0)
        .fold(f64::INFINITY, f64::min)
}

fn counter(m: &str, series: &str) -> f64 {
    sample(m, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_latency_matches_a_known_delay_and_each_probe_sees_its_own_write() {
    let fixed = Pipeline::new(Delay::Fixed(Duration::from_millis(300)));
    let uniform = Pipeline::new(Delay::Uniform(
        Duration::from_millis(100),
        Duration::from_millis(500),
    ));
    let fa = serve(pipeline_router(fixed.clone())).await;
    let ua = serve(pipeline_router(uniform.clone())).await;
    let every = "          every: 10ms\n          deadline: 3s";
    let yaml = format!(
        "targets:\n  fixed: {{type: http, base_url: \"http://{fa}\"}}\n  uniform: {{type: http, base_url: \"http://{ua}\"}}\nscenarios:{}{}",
        per_id_scenario("fixed", "fixed", "20/s", every),
        per_id_scenario("uniform", "uniform", "20/s", every),
    );
    let d = daemon(config(&yaml, fa));
    let addr = d.addr();
    tokio::time::sleep(Duration::from_secs(9)).await;
    pause(&d, "fixed", true);
    pause(&d, "uniform", true);
    wait_idle(addr, "fixed").await;
    wait_idle(addr, "uniform").await;
    let m = metrics_text(addr).await;

    for (sc, p) in [("fixed", &fixed), ("uniform", &uniform)] {
        let writes = counter(
            &m,
            &format!("soakd_requests_total{{op=\"ingest\",scenario=\"{sc}\"}}"),
        );
        let visible = counter(
            &m,
            &format!("soakd_visibility_seconds_count{{op=\"ingest\",scenario=\"{sc}\"}}"),
        );
        let polls = counter(
            &m,
            &format!("soakd_visibility_polls_total{{op=\"ingest\",scenario=\"{sc}\"}}"),
        );
        assert!(writes >= 150.0, "{sc}: {writes} writes in 9 s at 20/s");
        assert_eq!(visible, writes, "{sc}: every write became visible");
        assert_eq!(
            sum_samples(
                &m,
                "soakd_request_errors_total",
                &format!("scenario=\"{sc}\"")
            ),
            0.0,
            "{sc}: no errors"
        );
        // Polled every 10 ms for 100-500 ms: many polls per write.
        assert!(
            polls > 10.0 * writes,
            "{sc}: {polls} polls for {writes} writes"
        );
        // Each probe polled its own event, and only events that existed: several were
        // pending at once (20/s for 0.1-0.5 s), each with its own `write.event_id`.
        let per_id = p.polls.lock().clone();
        assert_eq!(per_id.len() as f64, writes, "{sc}: events polled");
        assert_eq!(
            p.unknown.load(Ordering::Relaxed),
            0,
            "{sc}: polls for unknown ids"
        );
    }
    // A fixed 300 ms: measured from the write's intended start to the answer that
    // showed it, 300 ms plus at most one 10 ms poll period and a poll's round trip.
    let (p50, p99) = (
        quantile(&m, "fixed", "ingest", "0.5"),
        quantile(&m, "fixed", "ingest", "0.99"),
    );
    eprintln!("fixed 300 ms: p50 {p50:.4} p99 {p99:.4}");
    assert!((0.299..0.33).contains(&p50), "fixed p50 {p50}");
    assert!((0.299..0.37).contains(&p99), "fixed p99 {p99}");
    // Uniform 100-500 ms: p50 ~300 ms (±30 ms of sampling noise over ~180 probes),
    // p99 ~496 ms, plus the poll period.
    let (p50, p99) = (
        quantile(&m, "uniform", "ingest", "0.5"),
        quantile(&m, "uniform", "ingest", "0.99"),
    );
    eprintln!("uniform 100-500 ms: p50 {p50:.4} p99 {p99:.4}");
    assert!((0.26..0.35).contains(&p50), "uniform p50 {p50}");
    assert!((0.45..0.55).contains(&p99), "uniform p99 {p99}");
    // The dashboard's history carries them: the quantiles of the last seconds were
    // drawn while probes finished, and pending is back to 0.
    let h = try_json(&format!("http://{addr}/api/v1/history?resolution=1s"))
        .await
        .unwrap();
    let series = |field: &str| -> Vec<f64> {
        h["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["group"] == "visibility" && s["name"] == "uniform" && s["field"] == field)
            .unwrap_or_else(|| panic!("no visibility|uniform|{field} in the history"))["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_f64())
            .collect()
    };
    let p50s = series("p50");
    assert!(
        p50s.iter().any(|v| (0.2..0.4).contains(v)),
        "history p50 {p50s:?}"
    );
    assert_eq!(series("max_pending").last(), Some(&1000.0));
    // And the status API, over the quantile window.
    let v = scenario_status(addr, "fixed").await["visibility"].clone();
    assert_eq!(v["max_pending"], 1000, "{v}");
    let sp50 = v["latency_seconds"]["p50"].as_f64().unwrap();
    assert!(
        (sp50 - quantile(&m, "fixed", "ingest", "0.5")).abs() < 0.002,
        "{v}"
    );
    assert!(series("polls_rate").iter().any(|v| *v > 100.0));
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_never_visible_ends_as_not_visible_at_the_deadline() {
    let never = Pipeline::new(Delay::Never);
    let yaml = format!(
        "targets:\n  t: {{type: http, base_url: \"${{TARGET}}\"}}\nscenarios:{}",
        per_id_scenario(
            "never",
            "t",
            "10/s",
            "          every: 50ms\n          deadline: 400ms"
        ),
    );
    let (d, _) = daemon_on(pipeline_router(never.clone()), &yaml).await;
    let addr = d.addr();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pause(&d, "never", true);
    let paused = Instant::now();
    wait_idle(addr, "never").await;
    // The last probe ended at its deadline, 400 ms after its write at most.
    assert!(
        paused.elapsed() < Duration::from_millis(1500),
        "probes outlived their deadline: {:?}",
        paused.elapsed()
    );
    let m = metrics_text(addr).await;
    let writes = counter(&m, "soakd_requests_total{op=\"ingest\",scenario=\"never\"}");
    let missed = counter(
        &m,
        "soakd_request_errors_total{kind=\"not_visible\",op=\"ingest\",scenario=\"never\"}",
    );
    assert!(writes >= 15.0, "{writes} writes");
    assert_eq!(missed, writes, "every write ends as not_visible");
    assert_eq!(
        counter(
            &m,
            "soakd_visibility_seconds_count{op=\"ingest\",scenario=\"never\"}"
        ),
        0.0
    );
    // Polls from the write's return to 400 ms after its start, every 50 ms: 8 or 9.
    let polls = counter(
        &m,
        "soakd_visibility_polls_total{op=\"ingest\",scenario=\"never\"}",
    );
    let per = polls / writes;
    eprintln!("never visible: {writes} writes, {missed} not_visible, {per:.2} polls each");
    assert!((7.0..=9.5).contains(&per), "{per} polls per probe");
    let st = scenario_status(addr, "never").await;
    assert_eq!(st["errors"]["not_visible"].as_f64(), Some(writes));
    let v = &st["visibility"];
    assert_eq!(v["pending"], 0, "{v}");
    assert_eq!(v["visible_total"], 0, "{v}");
    assert_eq!(v["polls_total"].as_f64(), Some(polls), "{v}");
    assert!(v["latency_seconds"]["p50"].is_null(), "{v}");
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_holds_under_overload_and_the_excess_is_dropped() {
    let slow = Pipeline::new(Delay::Fixed(Duration::from_millis(1500)));
    let yaml = format!(
        "targets:\n  t: {{type: http, base_url: \"${{TARGET}}\"}}\nscenarios:{}",
        per_id_scenario(
            "flood",
            "t",
            "100/s",
            "          every: 50ms\n          deadline: 5s"
        )
        .replace(
            "    max_in_flight: 50\n",
            "    max_in_flight: 50\n    max_pending: 10\n"
        ),
    );
    let (d, _) = daemon_on(pipeline_router(slow.clone()), &yaml).await;
    let addr = d.addr();
    let st = d.engine.scenario("flood").unwrap();
    let start = Instant::now();
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(4) {
        peak = peak.max(st.pending.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pause(&d, "flood", true);
    wait_idle(addr, "flood").await;
    let m = metrics_text(addr).await;
    let writes = counter(&m, "soakd_requests_total{op=\"ingest\",scenario=\"flood\"}");
    let dropped = counter(&m, "soakd_dropped_iterations_total{scenario=\"flood\"}");
    let visible = counter(
        &m,
        "soakd_visibility_seconds_count{op=\"ingest\",scenario=\"flood\"}",
    );
    eprintln!("overload: pending peak {peak}, {writes} writes, {dropped} dropped");
    assert_eq!(peak, 10, "pending peaked at {peak}");
    // 10 probes of ~1.5 s each: ~10 + 10 per 1.5 s over 4 s = ~36 writes; the rest of
    // ~400 arrivals were dropped, not queued.
    assert!((10.0..=45.0).contains(&writes), "{writes} writes");
    assert!(dropped >= 300.0, "{dropped} dropped");
    assert_eq!(visible, writes, "every accepted probe finished");
    d.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_telemetry_example_measures_ingest_to_aggregate() {
    let p = Pipeline::new(Delay::Fixed(Duration::from_millis(300)));
    let a = serve(pipeline_router(p.clone())).await;
    let text = std::fs::read_to_string(root().join("fixtures/visibility-telemetry.yaml")).unwrap();
    let cfg = config_vars(
        &text,
        &[
            ("TELEMETRY_URL", format!("http://{a}")),
            ("TELEMETRY_AGGREGATES_URL", format!("http://{a}")),
        ],
    );
    let d = daemon(cfg);
    let addr = d.addr();
    let sc = d.engine.scenario("ingest-to-aggregate").unwrap();
    sc.set_rate_override(Some(20.0));
    tokio::time::sleep(Duration::from_secs(5)).await;
    pause(&d, "ingest-to-aggregate", true);
    wait_idle(addr, "ingest-to-aggregate").await;
    let m = metrics_text(addr).await;
    let s = "scenario=\"ingest-to-aggregate\"";
    let writes = counter(&m, &format!("soakd_requests_total{{op=\"event\",{s}}}"));
    let visible = counter(
        &m,
        &format!("soakd_visibility_seconds_count{{op=\"event\",{s}}}"),
    );
    assert!(writes >= 60.0, "{writes} writes");
    assert_eq!(visible, writes);
    // Polled at 100 ms, then 120, 144...: the first satisfying poll comes 0-144 ms
    // after the 300 ms delay.
    let p50 = quantile(&m, "ingest-to-aggregate", "event", "0.5");
    eprintln!("telemetry example: {writes} writes, p50 {p50:.4}");
    assert!((0.3..0.46).contains(&p50), "p50 {p50}");
    d.shutdown(Duration::from_secs(2)).await;
}

/// The observer pipeline against a real PostgreSQL: the shipped example inserts
/// change-log rows and polls their processed flag, which a worker sets 300 ms after
/// each row was inserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_variant_polls_a_row_a_worker_marks_processed() {
    use sqlx::Connection;
    let pg = soakd::pg::cluster::Cluster::start(true).unwrap();
    let url = pg.url("postgres");
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE tb_entity_change_log (
             pk_entity_change_log bigserial PRIMARY KEY,
             object_type text, object_id text, modification_type text, object_data jsonb,
             created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
             processed_at timestamptz)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    // The observer stand-in: every 10 ms, marks rows older than 300 ms processed.
    let worker_url = url.clone();
    let worker = tokio::spawn(async move {
        let mut c = sqlx::PgConnection::connect(&worker_url).await.unwrap();
        loop {
            sqlx::query(
                "UPDATE tb_entity_change_log SET processed_at = clock_timestamp()
                 WHERE processed_at IS NULL AND created_at <= clock_timestamp() - interval '300 ms'",
            )
            .execute(&mut c)
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let text = std::fs::read_to_string(root().join("fixtures/visibility-observer.yaml")).unwrap();
    let d = daemon(config_vars(&text, &[("DATABASE_URL", url.clone())]));
    let addr = d.addr();
    tokio::time::sleep(Duration::from_secs(8)).await;
    pause(&d, "change-log-to-processed", true);
    wait_idle(addr, "change-log-to-processed").await;
    worker.abort();
    let m = metrics_text(addr).await;
    let s = "scenario=\"change-log-to-processed\"";
    let writes = counter(&m, &format!("soakd_requests_total{{op=\"insert\",{s}}}"));
    let visible = counter(
        &m,
        &format!("soakd_visibility_seconds_count{{op=\"insert\",{s}}}"),
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tb_entity_change_log")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(writes >= 60.0, "{writes} inserts");
    assert_eq!(rows as f64, writes, "one row per write");
    assert_eq!(visible, writes, "every row seen processed");
    assert_eq!(sum_samples(&m, "soakd_request_errors_total", s), 0.0);
    // 300 ms, plus up to 10 ms for the worker's pass and 20 ms for the next poll.
    let (p50, p99) = (
        quantile(&m, "change-log-to-processed", "insert", "0.5"),
        quantile(&m, "change-log-to-processed", "insert", "0.99"),
    );
    eprintln!("observer example (PostgreSQL): {writes} inserts, p50 {p50:.4} p99 {p99:.4}");
    assert!((0.3..0.36).contains(&p50), "p50 {p50}");
    assert!((0.3..0.45).contains(&p99), "p99 {p99}");
    d.shutdown(Duration::from_secs(2)).await;
}

/// `soakd demo`'s event -> API path: a stat update over gRPC shows in
/// GET /v1/challenges only after the target's buffered writer flushes into PostgreSQL
/// (every 1 s): p50 near half the interval, p99 below the interval plus a flush plus a
/// poll period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_measures_event_to_api_visibility_through_the_flush() {
    use soakd::demo::launch::{Demo, DemoOptions};
    let port = free_port();
    let d = Demo::start(DemoOptions {
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        target_listen: "127.0.0.1:0".parse().unwrap(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        no_postgres: false,
        flush_interval: Duration::from_secs(1),
        target_binary: Some(env!("CARGO_BIN_EXE_soakd").into()),
    })
    .await
    .unwrap();
    assert!(d.database_url.is_some(), "the demo has a database here");
    let addr = d.daemon.addr();
    let count = |m: &str| {
        sample(
            m,
            "soakd_visibility_quantile_seconds_count{op=\"stat_to_api\",scenario=\"visibility\"}",
        )
    };
    let m = eventually(Duration::from_secs(90), || async {
        let m = try_text(&format!("http://{addr}/metrics")).await?;
        (count(&m)? >= 100.0).then_some(m)
    })
    .await
    .expect("fewer than 100 probes visible within 90 s");
    let n = count(&m).unwrap_or(100.0);
    let p50 = quantile(&m, "visibility", "stat_to_api", "0.5");
    let p99 = quantile(&m, "visibility", "stat_to_api", "0.99");
    // What the path is made of, from the histograms of the same run: the write (soakd's
    // gRPC call), the wait for the next flush (up to the 1 s interval), the flush (the
    // target's writer), the wait for the next poll (its period, or a poll still
    // running) and the poll's answer (the target's GET /v1/challenges, ~60 KB).
    let target = try_text(&format!("http://{}/metrics", d.target_http))
        .await
        .unwrap();
    let flush = bound_at(
        &target,
        "soakd_buffer_flush_duration_seconds",
        "scenario=\"demo-target\"",
        1.0,
    );
    let write = bound_at(
        &m,
        "soakd_request_duration_seconds",
        "scenario=\"visibility\"",
        0.99,
    );
    let read = bound_at(
        &target,
        "demo_http_request_duration_seconds",
        "route=\"challenges\"",
        0.99,
    );
    let read50 = bound_at(
        &target,
        "demo_http_request_duration_seconds",
        "route=\"challenges\"",
        0.5,
    );
    let missed = sample(
        &m,
        "soakd_request_errors_total{kind=\"not_visible\",op=\"stat_to_api\",scenario=\"visibility\"}",
    )
    .unwrap_or(0.0);
    eprintln!(
        "demo: p50 {p50:.4} p99 {p99:.4}; bucket bounds: flush {flush} s, write p99 {write} s, read p99 {read} s, read p50 {read50} s"
    );
    assert_eq!(missed, 0.0, "probes missed their deadline");
    // p50: half the interval, plus a flush, half a poll period and a read, at their p50.
    // The wait for the flush is uniform over the interval, so the median of n probes
    // has a standard error of 0.5/√n s; the bounds are 4 of them either side (a 50-probe
    // median once missed a bound 0.14 s above the centre: 2 standard errors).
    let slack = 4.0 * 0.5 / n.sqrt();
    let p50_lo = 0.5 - slack;
    let p50_hi = 0.5 + flush + 0.025 + read50 + slack;
    assert!(
        (p50_lo..p50_hi).contains(&p50),
        "p50 {p50} of {n} probes: not within {p50_lo}..{p50_hi}"
    );
    // p99: below the interval + the slowest flush + a poll period (or a running poll)
    // + a read, after the write.
    let p99_hi = write + 1.0 + flush + read.max(0.05) + read;
    assert!(p99 < p99_hi, "p99 {p99} above {p99_hi}");
    assert!(
        p99 > 0.9,
        "p99 {p99}: a write just after a flush waits ~1 s"
    );
    d.stop().await.unwrap();
}
