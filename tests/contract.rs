//! The contract between the daemon and its page, checked without a browser: the answers
//! of `/api/v1/status` and `/api/v1/history` against their committed JSON Schemas
//! (`web/schema/`), the history's series against the catalogue, the page's copy of the
//! catalogue (`web/catalogue.js`) against the daemon's, every module the page imports
//! served as JavaScript, and `tsc` over the page's modules (`web/tsconfig.json`).

mod common;

use axum::routing::get;
use axum::Router;
use common::*;
use serde_json::Value;
use soakd::history::catalogue::{self, Group};
use std::path::Path;
use std::time::Duration;

fn web() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn schema(name: &str) -> jsonschema::Validator {
    let path = web().join("schema").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&v).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every way `value` breaks `schema`, one per line.
fn violations(schema: &jsonschema::Validator, value: &Value) -> Vec<String> {
    schema
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// A daemon with two scenarios — one with an SLO and a guard that runs, one paused with
/// a rate override — after it has written history rows.
async fn busy_daemon() -> (soakd::app::Daemon, Value, Value) {
    let app = Router::new().route("/ok", get(|| async { "ok" })).route(
        "/missing",
        get(|| async { axum::http::StatusCode::NOT_FOUND }),
    );
    let (d, _) = daemon_on(
        app,
        r#"
targets: {t: {type: http, base_url: "${TARGET}"}}
scenarios:
  guarded:
    target: t
    schedule: {hold: {rate: 50/s}}
    slo: {p95: 500ms, error_rate: 50%}
    guard: {for: 30s, step_down: 50%, floor: 5/s}
    ops:
      ok: {weight: 9, http: {path: /ok}}
      missing: {weight: 1, http: {path: /missing}}
  held:
    target: t
    schedule: {stages: [{hold: {rate: 10/s, for: 1h}}, {levels: {rates: [5/s, 10/s], each: 1m}}]}
    ops: {ok: {http: {path: /ok}}}
"#,
    )
    .await;
    pause(&d, "held", true);
    d.engine
        .scenario("held")
        .unwrap()
        .set_rate_override(Some(20.0));
    // A few 1 s rows and a rolling SLO verdict.
    let status = eventually(Duration::from_secs(10), || async {
        let s = status(d.addr()).await;
        (s["slo"]["guarded"]["objectives"][0]["value"].is_number()).then_some(s)
    })
    .await
    .expect("the SLO judged the running scenario");
    let history = eventually(Duration::from_secs(10), || async {
        let h = try_json(&format!(
            "http://{}/api/v1/history?resolution=1s&since=0",
            d.addr()
        ))
        .await?;
        (h["t"].as_array()?.len() >= 3).then_some(h)
    })
    .await
    .expect("three 1 s rows");
    (d, status, history)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_history_answers_match_their_schemas() {
    let (d, status, history) = busy_daemon().await;
    let minute = try_json(&format!(
        "http://{}/api/v1/history?resolution=1m&since=0",
        d.addr()
    ))
    .await
    .unwrap();
    d.shutdown(Duration::from_secs(5)).await;
    let (st, hi) = (schema("status.schema.json"), schema("history.schema.json"));
    assert_eq!(violations(&st, &status), Vec::<String>::new(), "{status:#}");
    assert_eq!(
        violations(&hi, &history),
        Vec::<String>::new(),
        "{history:#}"
    );
    assert_eq!(violations(&hi, &minute), Vec::<String>::new(), "{minute:#}");
    // What the answers held, so the schemas were checked against something.
    let states: Vec<&str> = status["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "paused"]);
    assert!(status["slo"]["guarded"]["guard"].is_object(), "{status:#}");
    assert!(history["events"].as_array().is_some_and(|e| !e.is_empty()));

    // The schemas hold the shape: a state the page does not know, a field the page does
    // not read, a missing quantile window and an unknown group are each refused.
    let mut bad = status.clone();
    bad["scenarios"][0]["state"] = "stalled".into();
    assert!(!violations(&st, &bad).is_empty());
    let mut bad = status.clone();
    bad["scenarios"][0]["latency"] = Value::Null;
    assert!(!violations(&st, &bad).is_empty());
    let mut bad = status.clone();
    bad["scenarios"][0]["latency_seconds"]
        .as_object_mut()
        .unwrap()
        .remove("window_seconds");
    assert!(!violations(&st, &bad).is_empty());
    let mut bad = history.clone();
    bad["series"][0]["group"] = "scenarios".into();
    assert!(!violations(&hi, &bad).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_in_the_history_is_in_the_catalogue() {
    let (d, _, history) = busy_daemon().await;
    d.shutdown(Duration::from_secs(5)).await;
    let series = history["series"].as_array().unwrap();
    let mut seen = Vec::new();
    for s in series {
        let group: Group = serde_json::from_value(s["group"].clone()).unwrap();
        let field = s["field"].as_str().unwrap();
        let entry = catalogue::find(group, field)
            .unwrap_or_else(|| panic!("{group:?} {field:?} is not in the catalogue"));
        seen.push((group, entry.field));
    }
    // The run wrote a family member (an error kind) and the process' series.
    assert!(
        seen.contains(&(Group::Scenario, "error_ratio.")),
        "{seen:?}"
    );
    assert!(seen.contains(&(Group::Process, "rss_bytes")), "{seen:?}");
}

#[test]
fn the_pages_catalogue_is_the_daemons() {
    let path = web().join("catalogue.js");
    let want = catalogue::javascript();
    if std::env::var_os("SOAKD_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "web/catalogue.js is not src/history/catalogue.rs's: run `SOAKD_BLESS=1 cargo test --test contract the_pages_catalogue` and commit it"
    );
}

/// The relative modules a page module imports (`import … from "./x.js"`).
fn imports_of(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("import "))
        .filter_map(|l| {
            let from = l.rsplit(" from ").next()?;
            let name = from.trim().trim_end_matches(';').trim_matches('"');
            name.strip_prefix("./").map(String::from)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_the_page_loads_is_served_as_javascript() {
    let (d, _) = daemon_on(
        Router::new(),
        "targets: {t: {type: http, base_url: \"${TARGET}\"}}\nscenarios:\n  s: {target: t, schedule: {hold: {rate: 1/s}}, ops: {get: {http: {path: /}}}}\n",
    )
    .await;
    let page = try_text(&format!("http://{}/", d.addr())).await.unwrap();
    assert!(
        page.contains(r#"<script type="module" src="/assets/main.js">"#),
        "{page}"
    );
    let mut todo = vec!["main.js".to_string()];
    let mut done: Vec<String> = Vec::new();
    while let Some(m) = todo.pop() {
        if done.contains(&m) {
            continue;
        }
        let r = client()
            .get(format!("http://{}/assets/{m}", d.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{m}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/javascript"), "{m}: {ct}");
        let body = r.text().await.unwrap();
        // What is served is the file in web/.
        assert_eq!(
            body,
            std::fs::read_to_string(web().join(&m)).unwrap(),
            "{m}"
        );
        todo.extend(imports_of(&body));
        done.push(m);
    }
    d.shutdown(Duration::from_secs(2)).await;
    // Every module of web/ is reached from main.js (types.js holds only types).
    for e in std::fs::read_dir(web()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".js") && name != "types.js" {
            assert!(done.contains(&name), "{name} is not imported: {done:?}");
        }
    }
}

#[test]
fn the_page_type_checks() {
    let tsc = web().join("node_modules/.bin/tsc");
    assert!(
        tsc.exists(),
        "{} is missing: `npm ci --prefix web` installs the pinned TypeScript (scripts/test.sh does)",
        tsc.display()
    );
    let out = std::process::Command::new(&tsc)
        .args(["--noEmit", "-p"])
        .arg(web())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tsc found errors in the page:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
