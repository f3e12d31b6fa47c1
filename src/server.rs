//! The admin server: `/metrics`, `/healthz`, `/readyz`, the status and control API,
//! `/-/reload` and a landing page.
//!
//! In the daemon it runs on its own thread and runtime ([`spawn_admin_thread`]), so a
//! load runtime busy with 50,000 operations a second cannot delay a scrape.
//!
//! Mutating endpoints need `Authorization: Bearer <token>` when a control token is
//! configured (401 otherwise); with no token they are refused (403) unless the server
//! listens on a loopback address.

use crate::capacity::controller::SharedProgress;
use crate::capacity::store::{Store, StoreError};
use crate::engine::{ApplyError, Engine};
use crate::events::EventKind;
use crate::history::{History, Resolution};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    /// The configured listen address is loopback (decides the no-token policy).
    pub loopback_only: bool,
    /// The capacity search's progress, when the config has a `search:` section.
    pub search: Option<SharedProgress>,
    /// The results store, once open (None until then, or when it cannot be opened).
    pub results: SharedStore,
    /// The dashboard's history (None when `dashboard.enabled` is false).
    pub history: Option<Arc<History>>,
    /// The config file, for the page's header (None: an embedded config).
    pub config_path: Option<String>,
    /// The rolling SLO verdicts by scenario (`slo::spawn` fills it).
    pub slo: crate::slo::SharedSlo,
    /// The soak's series and verdicts (None: `soak.enabled: false`, or a follower shard,
    /// which neither observes nor judges).
    pub soak: Option<std::sync::Arc<crate::soak::store::Soak>>,
    /// The deploys and their verdicts (None: `deploys.enabled: false`, or a follower
    /// shard).
    pub deploys: Option<Arc<crate::deploy::Deploys>>,
}

/// `GET /api/v1/status`: what the page's header and cards read (`web/types.js`'s
/// `Status`, checked against `web/schema/status.schema.json` by tests/contract.rs).
#[derive(serde::Serialize)]
pub struct StatusPayload {
    pub version: &'static str,
    pub uptime_seconds: f64,
    pub config_last_reload_successful: bool,
    /// The config file (None: an embedded config).
    pub config_file: Option<String>,
    pub reload: crate::engine::ReloadState,
    /// The control rules the page follows.
    pub control: ControlPolicy,
    /// Whether a results store is open (the page lists the stored runs then).
    pub results_store: bool,
    /// Whether the soak is judged here (`/api/v1/soak` answers; the page shows its cards).
    pub soak: bool,
    /// Whether deploys are judged here (`/api/v1/deploys` answers; the page shows them).
    pub deploys: bool,
    pub scenarios: Vec<crate::engine::ScenarioStatus>,
    /// The rolling SLO verdicts by scenario.
    pub slo: std::collections::BTreeMap<String, crate::slo::SloStatus>,
    /// The capacity search, when one is configured.
    pub search: Option<crate::capacity::controller::Progress>,
}

pub use crate::capacity::store::SharedStore;

pub fn router(state: AppState) -> Router {
    let control = Router::new()
        .route("/api/v1/scenarios/{name}/pause", post(pause))
        .route("/api/v1/scenarios/{name}/resume", post(resume))
        .route("/api/v1/scenarios/{name}/guard/revert", post(revert_guard))
        .route(
            "/api/v1/scenarios/{name}/rate",
            put(set_rate).delete(clear_rate),
        )
        .route("/-/reload", post(reload))
        .route("/api/v1/deploys", post(announce_deploy))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/", get(page))
        .route("/assets/{file}", get(asset))
        // Browsers ask for it on every page, JSON ones included: no icon, no error.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/v1/history", get(history))
        .route("/runs/{id}", get(run_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/soak", get(soak))
        .route("/api/v1/soak/report", get(soak_report_json))
        .route("/soak/report", get(soak_report_page))
        .route("/api/v1/deploys", get(deploys))
        .route("/api/v1/deploys/{id}", get(deploy_json))
        .route("/deploys/{id}", get(deploy_page))
        // Gates only read: Flagger's webhooks cannot send a token, so they are not
        // behind the control API's rules.
        .route("/api/v1/gates/flagger/{hook}", post(flagger_gate))
        .route("/api/v1/gates/argo/{target}", get(argo_gate))
        .route("/api/v1/search", get(search))
        .route("/api/v1/runs", get(runs))
        .route("/api/v1/runs/{id}", get(run_json))
        .route("/api/v1/runs/{id}/report", get(run_report))
        .route("/api/v1/runs/{id}/{file}", get(run_chart))
        .route("/api/v1/runs/{id}/compare/{b}", get(compare_json))
        .route("/api/v1/runs/{id}/compare/{b}/{file}", get(compare_file))
        .merge(control)
        .fallback(|| async { err(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({ "error": msg.into() }))).into_response()
}

/// The no-token policy as a pure function: may a mutation go through?
pub fn check_auth(
    token: Option<&str>,
    loopback_only: bool,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    match token {
        Some(want) => {
            let got = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            // Constant-time compare: a timing oracle on the token is cheap to avoid.
            let ok = got.is_some_and(|g| {
                g.len() == want.len()
                    && g.bytes().zip(want.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
            });
            if ok {
                Ok(())
            } else {
                Err((StatusCode::UNAUTHORIZED, "missing or wrong bearer token"))
            }
        }
        None if loopback_only => Ok(()),
        None => Err((
            StatusCode::FORBIDDEN,
            "control endpoints are disabled: soakd listens on a non-loopback address and no control_token is configured",
        )),
    }
}

async fn authorize(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        let cfg = st.engine.config();
        let token = cfg.control_token.as_ref().map(|s| s.0.as_str());
        if let Err((code, msg)) = check_auth(token, st.loopback_only, req.headers()) {
            let mut r = err(code, msg);
            if code == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            return r;
        }
    }
    next.run(req).await
}

/// `/metrics` in the format the scrape asks for (protobuf with native histograms,
/// OpenMetrics with exemplars, or the Prometheus text format).
async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (status, content_type, body) =
        crate::metrics::expo::scrape(accept, |f| st.engine.metrics.encode(f));
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn readyz(State(st): State<AppState>) -> Response {
    if st.engine.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn status(State(st): State<AppState>) -> Response {
    let e = &st.engine;
    Json(StatusPayload {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: e.uptime().as_secs_f64(),
        config_last_reload_successful: e.metrics.config.reload_successful.get() == 1,
        config_file: st.config_path.clone(),
        reload: e.last_reload(),
        control: control_policy(&st),
        results_store: st.results.read().is_some(),
        soak: st.soak.is_some(),
        deploys: st.deploys.is_some(),
        scenarios: e.status(),
        slo: st.slo.read().clone(),
        search: st.search.as_ref().map(|p| p.lock().now()),
    })
    .into_response()
}

async fn search(State(st): State<AppState>) -> Response {
    match &st.search {
        Some(p) => Json(p.lock().now()).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            "no capacity search configured (add a `search:` section)",
        ),
    }
}

/// Why a results endpoint could not answer.
enum RunsError {
    NoStore,
    Store(StoreError),
    Compare(crate::capacity::compare::CompareError),
}

impl IntoResponse for RunsError {
    fn into_response(self) -> Response {
        match self {
            RunsError::NoStore => err(
                StatusCode::SERVICE_UNAVAILABLE,
                "the results store is not open (see the logs)",
            ),
            RunsError::Store(
                e @ (StoreError::NoSuchRun(_) | StoreError::NoRuns | StoreError::NoBaseline(_)),
            ) => err(StatusCode::NOT_FOUND, e.to_string()),
            RunsError::Store(e @ StoreError::BaselineAgainstBaseline) => {
                err(StatusCode::BAD_REQUEST, e.to_string())
            }
            RunsError::Compare(e) => err(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            RunsError::Store(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

fn store_of(st: &AppState) -> Result<Store, RunsError> {
    st.results.read().clone().ok_or(RunsError::NoStore)
}

async fn runs(State(st): State<AppState>) -> Response {
    let list = match store_of(&st) {
        Ok(s) => s.list_runs().await.map_err(RunsError::Store),
        Err(e) => Err(e),
    };
    match list {
        Ok(list) => Json(json!({ "runs": list })).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn load(st: &AppState, id: &str) -> Result<crate::capacity::Run, RunsError> {
    store_of(st)?.load_run(id).await.map_err(RunsError::Store)
}

async fn run_json(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match load(&st, &id).await {
        Ok(run) => Json(run).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run_report(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match load(&st, &id).await {
        Ok(run) => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            crate::capacity::report::render(&run).markdown,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The report's charts, at the relative paths its Markdown links to.
async fn run_chart(
    State(st): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let run = match load(&st, &id).await {
        Ok(run) => run,
        Err(e) => return e.into_response(),
    };
    let report = crate::capacity::report::render(&run);
    match report.charts.into_iter().find(|(n, _)| *n == file) {
        Some((_, svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            format!("no chart {file:?} in run {id:?}"),
        ),
    }
}

#[derive(serde::Deserialize)]
struct CompareQuery {
    /// Overrides search.regression_tolerance (a ratio, e.g. 0.05).
    tolerance: Option<f64>,
}

/// Run `b` against the reference run `a` (ids, `latest`, `baseline`; several separated by
/// commas: repeated baselines), with the daemon's `search.regression_tolerance` unless
/// the query gives one.
async fn comparison(
    st: &AppState,
    a: &str,
    b: &str,
    q: &CompareQuery,
) -> Result<
    (
        crate::capacity::compare::Comparison,
        crate::capacity::Run,
        crate::capacity::Run,
    ),
    RunsError,
> {
    use crate::capacity::compare;
    let (mut refs, rb) = store_of(st)?
        .load_baselines(a, b)
        .await
        .map_err(RunsError::Store)?;
    let tolerance = q.tolerance.unwrap_or_else(|| {
        st.engine
            .config()
            .search
            .as_ref()
            .map(|s| s.regression_tolerance)
            .unwrap_or(compare::DEFAULT_TOLERANCE)
    });
    let c = compare::compare_with(&refs.iter().collect::<Vec<_>>(), &rb, tolerance)
        .map_err(RunsError::Compare)?;
    // Run A of the report is the first reference (compare_with refuses none).
    let ra = refs.swap_remove(0);
    Ok((c, ra, rb))
}

async fn compare_json(
    State(st): State<AppState>,
    Path((a, b)): Path<(String, String)>,
    Query(q): Query<CompareQuery>,
) -> Response {
    match comparison(&st, &a, &b, &q).await {
        Ok((c, _, _)) => Json(c).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The comparison as Markdown (`report`) and its overlay charts, at the paths the
/// Markdown links to.
async fn compare_file(
    State(st): State<AppState>,
    Path((a, b, file)): Path<(String, String, String)>,
    Query(q): Query<CompareQuery>,
) -> Response {
    let (c, ra, rb) = match comparison(&st, &a, &b, &q).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let report = crate::capacity::report::compare::render(&c, &ra, &rb);
    if file == "report" {
        return (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report.markdown,
        )
            .into_response();
    }
    match report.charts.into_iter().find(|(n, _)| *n == file) {
        Some((_, svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => err(
            StatusCode::NOT_FOUND,
            format!("no chart {file:?} in the comparison of {a:?} and {b:?}"),
        ),
    }
}

fn with_scenario(
    st: &AppState,
    name: &str,
    f: impl FnOnce(&crate::engine::ScenarioState),
) -> Response {
    match st.engine.scenario(name) {
        Some(s) => {
            f(&s);
            Json(s.status()).into_response()
        }
        None => err(StatusCode::NOT_FOUND, format!("no scenario named {name:?}")),
    }
}

async fn pause(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    with_scenario(&st, &name, |s| {
        s.paused.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(scenario = %name, "paused");
        st.engine
            .events
            .push(EventKind::Pause, Some(&name), "paused (control API)");
    })
}

async fn resume(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    with_scenario(&st, &name, |s| {
        s.paused.store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(scenario = %name, "resumed");
        st.engine
            .events
            .push(EventKind::Resume, Some(&name), "resumed (control API)");
    })
}

/// Undoes what the scenario's guard did (full rate, unpaused) at once; the guard keeps
/// watching and acts again after another `for` out of the SLO.
async fn revert_guard(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(s) = st.engine.scenario(&name) else {
        return err(StatusCode::NOT_FOUND, format!("no scenario named {name:?}"));
    };
    if s.plan().scenario.guard.is_none() {
        return err(
            StatusCode::CONFLICT,
            format!("scenario {name:?} has no guard"),
        );
    }
    let reverted = s.guard.revert();
    if reverted {
        tracing::warn!(scenario = %name, action = "revert", "guard reverted (control API)");
        st.engine.events.push(
            EventKind::Guard,
            Some(&name),
            "guard reverted (control API): full rate",
        );
        st.engine.metrics.guard.count(&name, "revert");
        st.engine.metrics.guard.set_factor(&name, 1.0);
    }
    Json(json!({ "reverted": reverted, "scenario": s.status() })).into_response()
}

/// Body: `{"rate": 250}` (per second) or `{"rate": "250/s"}`.
async fn set_rate(State(st): State<AppState>, Path(name): Path<String>, body: Bytes) -> Response {
    let v: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
    };
    let rate = match v.get("rate") {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => crate::units::parse_rate(s),
        _ => None,
    };
    let Some(rate) = rate.filter(|r| r.is_finite() && *r >= 0.0 && *r <= 10_000_000.0) else {
        return err(
            StatusCode::BAD_REQUEST,
            "expected {\"rate\": N} with N per second (0..10000000) or {\"rate\": \"500/s\"}",
        );
    };
    with_scenario(&st, &name, |s| {
        s.set_rate_override(Some(rate));
        tracing::info!(scenario = %name, rate, "rate override set");
        st.engine.events.push(
            EventKind::Override,
            Some(&name),
            format!(
                "rate override {} (control API)",
                crate::units::format_rate(rate)
            ),
        );
    })
}

async fn clear_rate(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    with_scenario(&st, &name, |s| {
        s.set_rate_override(None);
        tracing::info!(scenario = %name, "rate override cleared");
        st.engine.events.push(
            EventKind::Override,
            Some(&name),
            "rate override cleared: back to the schedule (control API)",
        );
    })
}

async fn reload(State(st): State<AppState>) -> Response {
    let engine = st.engine.clone();
    // Building clients and reading files is blocking work.
    let result = tokio::task::spawn_blocking(move || engine.reload()).await;
    match result {
        Ok(Ok(summary)) => Json(json!({ "status": "applied", "changes": summary })).into_response(),
        Ok(Err(ApplyError::Invalid(e))) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "status": "rejected",
                "error": "the new config is invalid; the running config is unchanged",
                "errors": e.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "status": "rejected",
                "error": format!("{e}; the running config is unchanged"),
            })),
        )
            .into_response(),
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload task failed: {e}"),
        ),
    }
}

/// What the page needs to know about the control API's rules, so it can disable its
/// controls and say why instead of failing on click.
#[derive(serde::Serialize)]
pub struct ControlPolicy {
    /// Mutations can go through (with a token when one is required).
    pub enabled: bool,
    /// A bearer token must be sent.
    pub token_required: bool,
    /// Why the controls are disabled, when they are.
    pub reason: Option<&'static str>,
}

fn control_policy(st: &AppState) -> ControlPolicy {
    let token = st.engine.config().control_token.is_some();
    match check_auth(None, st.loopback_only, &HeaderMap::new()) {
        _ if token => ControlPolicy {
            enabled: true,
            token_required: true,
            reason: None,
        },
        Ok(()) => ControlPolicy {
            enabled: true,
            token_required: false,
            reason: None,
        },
        Err((_, why)) => ControlPolicy {
            enabled: false,
            token_required: false,
            reason: Some(why),
        },
    }
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crate::dashboard::PAGE,
    )
        .into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match crate::dashboard::asset(&file) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                // Embedded in the binary: they change only with it.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            a.body,
        )
            .into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no asset {file:?}")),
    }
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    since: Option<String>,
    resolution: Option<String>,
}

#[derive(serde::Deserialize)]
struct SoakQuery {
    /// Points per series for charts (0 or absent: none; at most 500).
    points: Option<usize>,
}

/// `GET /api/v1/soak[?points=N]` ([`crate::soak::api::SoakPayload`]).
async fn soak(State(st): State<AppState>, Query(q): Query<SoakQuery>) -> Response {
    let Some(s) = &st.soak else {
        return soak_absent();
    };
    Json(crate::soak::api::payload(
        s,
        crate::units::now_unix(),
        q.points.unwrap_or(0),
    ))
    .into_response()
}

/// Deploys are judged on shard 0 only: a follower names the leader (`verdicts.leader`).
fn deploys_absent(st: &AppState) -> Response {
    let cfg = st.engine.config();
    match (
        cfg.deploys.enabled,
        cfg.verdicts.as_ref().and_then(|v| v.leader.clone()),
    ) {
        (true, Some(leader)) => {
            let mut r = err(
                StatusCode::MISDIRECTED_REQUEST,
                format!("deploys are judged by the leader, shard 0: ask {leader}"),
            );
            if let Ok(v) = header::HeaderValue::from_str(&leader) {
                r.headers_mut().insert("x-soakd-leader", v);
            }
            r
        }
        _ => err(
            StatusCode::NOT_FOUND,
            "deploys are not judged here (deploys.enabled: false, or a shard other than 0)",
        ),
    }
}

async fn deploys(State(st): State<AppState>) -> Response {
    let Some(d) = &st.deploys else {
        return deploys_absent(&st);
    };
    Json(crate::deploy::api::payload(d)).into_response()
}

async fn deploy_json(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(d) = &st.deploys else {
        return deploys_absent(&st);
    };
    let id = match (id.as_str(), d.list().first()) {
        ("latest", Some(x)) => x.id.clone(),
        _ => id,
    };
    match d.get(&id) {
        Some(x) => Json(x).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no deploy {id:?} is kept")),
    }
}

async fn deploy_page(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let Some(d) = &st.deploys else {
        return deploys_absent(&st);
    };
    let id = if id == "latest" {
        match d.list().first() {
            Some(x) => x.id.clone(),
            None => return err(StatusCode::NOT_FOUND, "no deploy seen yet"),
        }
    } else {
        id
    };
    match d.get(&id) {
        Some(x) => axum::response::Html(crate::deploy::report::html(&x)).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("no deploy {id:?} is kept")),
    }
}

async fn announce_deploy(State(st): State<AppState>, body: axum::body::Bytes) -> Response {
    let Some(d) = &st.deploys else {
        return deploys_absent(&st);
    };
    let a: crate::deploy::api::Announce = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"target\": …, \"version\": …, \"note\": …}}: {e}"),
            )
        }
    };
    let cfg = st.engine.config();
    let observed = st.soak.is_some()
        && cfg
            .observe
            .iter()
            .any(|o| o.target == a.target && o.has_source());
    match crate::deploy::api::announce(d, &st.engine, observed, a) {
        Ok(Some(x)) => (StatusCode::CREATED, Json(x)).into_response(),
        Ok(None) => (
            StatusCode::OK,
            Json(json!({"message": "the target already runs that version: not a new deploy"})),
        )
            .into_response(),
        Err(e @ crate::deploy::state::AnnounceError::NoTarget(_)) => {
            err(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => err(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// A Flagger webhook's body (docs.flagger.app, "Webhooks").
#[derive(serde::Deserialize)]
struct FlaggerHook {
    name: String,
    namespace: String,
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    metadata: std::collections::BTreeMap<String, String>,
}

fn gate_response(a: crate::deploy::gate::Answer) -> Response {
    use crate::deploy::gate::Outcome;
    let code = match a.result {
        Outcome::Pass => StatusCode::OK,
        Outcome::Hold => StatusCode::CONFLICT,
        Outcome::Fail => StatusCode::PRECONDITION_FAILED,
    };
    (code, Json(a)).into_response()
}

async fn flagger_gate(
    State(st): State<AppState>,
    Path(hook): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(d) = &st.deploys else {
        return deploys_absent(&st);
    };
    let Some(h) = crate::deploy::gate::Hook::parse(&hook) else {
        return err(
            StatusCode::NOT_FOUND,
            format!("no gate {hook:?}: confirm-rollout, rollout or confirm-promotion"),
        );
    };
    let p: FlaggerHook = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected Flagger's webhook payload {{name, namespace, phase, metadata}}: {e}"
                ),
            )
        }
    };
    let cfg = st.engine.config();
    let key = format!("{}/{}", p.namespace, p.name);
    let target = cfg
        .deploys
        .canaries
        .get(&key)
        .or_else(|| p.metadata.get("target"))
        .cloned();
    let Some(target) = target else {
        return err(
            StatusCode::NOT_FOUND,
            format!("Canary {key} is not mapped to a target: add it to deploys.canaries (or give metadata.target)"),
        );
    };
    if !cfg.targets.iter().any(|t| t.name == target) {
        return err(StatusCode::NOT_FOUND, format!("no target named {target:?}"));
    }
    tracing::debug!(canary = %key, phase = ?p.phase, hook = %hook, "gate asked");
    let a = crate::deploy::gate::answer(d, &cfg, &target, h, crate::units::now_unix());
    gate_response(a)
}

async fn argo_gate(State(st): State<AppState>, Path(target): Path<String>) -> Response {
    let Some(d) = &st.deploys else {
        return deploys_absent(&st);
    };
    let cfg = st.engine.config();
    if !cfg.targets.iter().any(|t| t.name == target) {
        return err(StatusCode::NOT_FOUND, format!("no target named {target:?}"));
    }
    let a = crate::deploy::gate::answer(
        d,
        &cfg,
        &target,
        crate::deploy::gate::Hook::Promotion,
        crate::units::now_unix(),
    );
    // Argo's web metric reads the body whatever it says: always 200.
    Json(a).into_response()
}

fn soak_absent() -> Response {
    err(
        StatusCode::NOT_FOUND,
        "the soak is not judged here (soak.enabled: false, or a shard other than 0)",
    )
}

#[derive(serde::Deserialize)]
struct SoakReportQuery {
    /// How far back: `24h`, `90m` (default 24h; cut to the window).
    since: Option<String>,
}

fn soak_report(
    st: &AppState,
    q: &SoakReportQuery,
) -> Result<crate::soak::report::SoakReport, Box<Response>> {
    let Some(s) = &st.soak else {
        return Err(Box::new(soak_absent()));
    };
    let since = match q.since.as_deref() {
        None => 86_400.0,
        Some(t) => match crate::units::parse_duration(t) {
            Some(d) if !d.is_zero() => d.as_secs_f64(),
            _ => {
                return Err(Box::new(err(
                    StatusCode::BAD_REQUEST,
                    format!("since: expected a duration like 24h or 90m, got {t:?}"),
                )))
            }
        },
    };
    Ok(crate::soak::report::build(
        s,
        crate::units::now_unix(),
        since,
    ))
}

/// `GET /api/v1/soak/report?since=24h`: the soak report as JSON.
async fn soak_report_json(
    State(st): State<AppState>,
    Query(q): Query<SoakReportQuery>,
) -> Response {
    match soak_report(&st, &q) {
        Ok(r) => Json(r).into_response(),
        Err(e) => *e,
    }
}

/// `GET /soak/report?since=24h`: the soak report as one HTML page, charts inline.
async fn soak_report_page(
    State(st): State<AppState>,
    Query(q): Query<SoakReportQuery>,
) -> Response {
    match soak_report(&st, &q) {
        Ok(r) => axum::response::Html(crate::soak::report::html(&r)).into_response(),
        Err(e) => *e,
    }
}

/// `?since=<unix-ms>&resolution=1s|1m`: rows (and events) newer than `since`.
async fn history(State(st): State<AppState>, Query(q): Query<HistoryQuery>) -> Response {
    let Some(h) = &st.history else {
        return err(
            StatusCode::NOT_FOUND,
            "history is off (dashboard.enabled: false)",
        );
    };
    let Some(res) = Resolution::parse(q.resolution.as_deref().unwrap_or("1s")) else {
        return err(StatusCode::BAD_REQUEST, "resolution must be 1s or 1m");
    };
    let since = match q.since.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(ms)) => ms,
        Some(Err(_)) => {
            return err(
                StatusCode::BAD_REQUEST,
                "since must be a unix time in milliseconds",
            )
        }
    };
    let payload = crate::dashboard::history_payload(h, &st.engine.events, res, since);
    Json(payload).into_response()
}

async fn run_page(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match load(&st, &id).await {
        Ok(run) => {
            let report = crate::capacity::report::render(&run);
            Html(crate::dashboard::report::page(&run.record.id, &report)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The admin server on its own OS thread and single-threaded runtime.
pub struct AdminThread {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

pub fn spawn_admin_thread(
    listener: std::net::TcpListener,
    state: AppState,
) -> std::io::Result<AdminThread> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let join = crate::threads::spawn_with_runtime("soakd-admin", move || async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => {
                let stop = async move {
                    let _ = rx.await;
                };
                if let Err(e) = serve(l, state, stop).await {
                    tracing::error!("admin server failed: {e}");
                }
            }
            Err(e) => tracing::error!("admin server listener: {e}"),
        }
    })?;
    Ok(AdminThread {
        addr,
        stop: Some(tx),
        join: Some(join),
    })
}

impl AdminThread {
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_policy() {
        let mut h = HeaderMap::new();
        assert!(check_auth(None, true, &h).is_ok());
        assert_eq!(
            check_auth(None, false, &h).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            check_auth(Some("t0k"), true, &h).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        h.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert_eq!(
            check_auth(Some("t0k"), false, &h).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        h.insert(header::AUTHORIZATION, "Bearer t0k".parse().unwrap());
        assert!(check_auth(Some("t0k"), false, &h).is_ok());
    }
}
