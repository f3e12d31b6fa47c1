//! The demo target: a small look-alike of the seed's challenge service, so soakd has
//! something realistic to load on a fresh machine and tests have a target whose
//! behaviour they can set.
//!
//! HTTP: `GET /v1/challenges` (the caller's challenges and goal progress; the user is
//! the part of the bearer token before the first dot), `POST
//! /v1/challenges/{challenge}/goals/{goal}/claim` (200, or 409 when the goal is not
//! completed or already claimed), `/healthz`, its own `/metrics`, and `GET|PUT
//! /admin/knobs` for the demonstration knobs in [`Knobs`].
//!
//! gRPC (see [`grpc`]): the seed's two event services; stat updates and logins advance
//! goal progress in the [`store`] — in memory, or in PostgreSQL through the buffered
//! writer when a database is configured. Goals no event has touched show a synthetic
//! progress, so there are completed goals to claim from the first request.
//! `GET /admin/events` lists the last events received (tests use it).

pub mod grpc;
pub mod launch;
pub mod metrics;
pub mod store;

use crate::challenges::ChallengeIndex;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use metrics::DemoMetrics;
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The 10,000 fixture users with their tokens.
pub const USERS_JSON: &str = include_str!("../../fixtures/users.json");
/// The 250 stat codes of the challenge definitions.
pub const STATS_JSON: &str = include_str!("../../fixtures/stats.json");

/// Demonstration knobs, settable at start and at runtime (`PUT /admin/knobs` with any
/// subset of the fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Added latency, uniform between min and max milliseconds (the seed's mock
    /// platform: 50–200).
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    /// Fraction of requests answered 500 (0.05 = 5 %).
    pub error_ratio: f64,
    /// Every `stall_every_ms`, all requests wait out a stall of `stall_for_ms`.
    pub stall_every_ms: u64,
    pub stall_for_ms: u64,
    /// Requests processed at once (0 = unlimited); the rest queue, so latency climbs
    /// once the offered rate exceeds concurrency_limit / service time.
    pub concurrency_limit: usize,
}

impl Knobs {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_ratio) {
            return Err("error_ratio must be within 0..1".into());
        }
        if self.latency_max_ms < self.latency_min_ms {
            return Err("latency_max_ms must be >= latency_min_ms".into());
        }
        if self.latency_max_ms > 600_000 || self.stall_for_ms > 600_000 {
            return Err("latencies and stalls are capped at 600000 ms".into());
        }
        if self.stall_for_ms > 0 && self.stall_every_ms <= self.stall_for_ms {
            return Err("stall_every_ms must be greater than stall_for_ms".into());
        }
        Ok(())
    }
}

pub struct DemoState {
    pub index: Arc<ChallengeIndex>,
    knobs: RwLock<Knobs>,
    limiter: RwLock<Option<Arc<Semaphore>>>,
    pub store: store::Store,
    pub metrics: DemoMetrics,
    started: Instant,
    /// The last events received, newest last (bounded).
    events: Mutex<VecDeque<grpc::Received>>,
    logins: Mutex<HashMap<String, u32>>,
    pub grpc_in_flight: AtomicUsize,
    pub grpc_peak: AtomicUsize,
    pub grpc_connections: AtomicUsize,
    namespace: String,
}

impl crate::metrics::MemorySize for DemoState {
    /// The last events, the login counts and (in memory mode) the progress map.
    fn memory_bytes(&self) -> u64 {
        use crate::metrics::memory::hash_map_bytes;
        let events: usize = {
            let q = self.events.lock();
            q.capacity() * std::mem::size_of::<grpc::Received>()
                + q.iter().map(|e| e.heap_bytes()).sum::<usize>()
        };
        let logins = {
            let m = self.logins.lock();
            hash_map_bytes::<String, u32>(m.capacity())
                + m.keys().map(|k| k.capacity() as u64).sum::<u64>()
        };
        events as u64 + logins + self.store.memory_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo challenges: {0}")]
    Fixture(#[from] serde_json::Error),
    #[error("knobs: {0}")]
    Knobs(String),
}

const MAX_EVENTS_KEPT: usize = 1000;

impl DemoState {
    /// A demo target keeping progress in memory.
    pub fn new(knobs: Knobs) -> Result<Arc<DemoState>, DemoError> {
        Self::with_store(knobs, store::Store::memory(), DemoMetrics::new())
    }

    pub fn with_store(
        knobs: Knobs,
        store: store::Store,
        metrics: DemoMetrics,
    ) -> Result<Arc<DemoState>, DemoError> {
        knobs.validate().map_err(DemoError::Knobs)?;
        let st = Arc::new(DemoState {
            index: Arc::new(ChallengeIndex::embedded()?),
            knobs: RwLock::new(Knobs::default()),
            limiter: RwLock::new(None),
            store,
            metrics,
            started: Instant::now(),
            events: Mutex::new(VecDeque::new()),
            logins: Mutex::new(HashMap::new()),
            grpc_in_flight: AtomicUsize::new(0),
            grpc_peak: AtomicUsize::new(0),
            grpc_connections: AtomicUsize::new(0),
            namespace: "test".into(),
        });
        st.set_knobs(knobs);
        st.metrics.memory.register("target_state", &st);
        if let Some(w) = st.store.writer() {
            st.metrics.memory.register("write_buffers", w);
        }
        Ok(st)
    }

    pub fn knobs(&self) -> Knobs {
        self.knobs.read().clone()
    }

    pub fn set_knobs(&self, k: Knobs) {
        let limit = k.concurrency_limit;
        let mut cur = self.knobs.write();
        if cur.concurrency_limit != limit || self.limiter.read().is_none() && limit > 0 {
            *self.limiter.write() = (limit > 0).then(|| Arc::new(Semaphore::new(limit)));
        }
        *cur = k;
    }

    /// Applies stalls, the concurrency limit and added latency; returns whether to
    /// inject a failure, and the permit to hold while the request is served.
    pub async fn apply_knobs(&self) -> (bool, Option<tokio::sync::OwnedSemaphorePermit>) {
        let k = self.knobs();
        if k.stall_every_ms > 0 && k.stall_for_ms > 0 {
            let phase = self.started.elapsed().as_millis() as u64 % k.stall_every_ms;
            if phase < k.stall_for_ms {
                tokio::time::sleep(Duration::from_millis(k.stall_for_ms - phase)).await;
            }
        }
        let limiter = self.limiter.read().clone();
        let permit = match limiter {
            Some(s) => s.acquire_owned().await.ok(),
            None => None,
        };
        let (delay, fail) = {
            let mut rng = rand::rng();
            let delay = if k.latency_max_ms > 0 {
                rng.random_range(k.latency_min_ms..=k.latency_max_ms)
            } else {
                0
            };
            (
                delay,
                k.error_ratio > 0.0 && rng.random::<f64>() < k.error_ratio,
            )
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        (fail, permit)
    }

    fn record(&self, ev: grpc::Received) {
        let mut q = self.events.lock();
        if q.len() >= MAX_EVENTS_KEPT {
            q.pop_front();
        }
        q.push_back(ev);
    }

    pub fn received(&self) -> Vec<grpc::Received> {
        self.events.lock().iter().cloned().collect()
    }

    /// Logins so far for a user (the value of its login stat).
    fn count_login(&self, user: &str) -> u32 {
        let mut m = self.logins.lock();
        if m.len() >= 1_000_000 {
            m.clear();
        }
        let n = m.entry(user.to_string()).or_default();
        *n += 1;
        *n
    }
}

fn user_of(headers: &HeaderMap) -> Option<String> {
    let tok = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let user = tok.split('.').next()?;
    (!user.is_empty()).then(|| user.to_string())
}

/// Applies the knobs around a handler and records the demo metrics.
async fn knobbed<F, Fut>(st: &DemoState, route: &'static str, f: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Response>,
{
    let start = Instant::now();
    st.metrics.in_flight.inc();
    let (fail, _permit) = st.apply_knobs().await;
    let resp = if fail {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "injected failure"})),
        )
            .into_response()
    } else {
        f().await
    };
    st.metrics
        .request(route, resp.status().as_str(), start.elapsed().as_secs_f64());
    st.metrics.in_flight.dec();
    resp
}

/// `GET /v1/challenges`, serialized straight from the index (about 60 KB a response: no
/// JSON tree is built for it).
#[derive(serde::Serialize)]
struct ChallengesView<'a> {
    user_id: &'a str,
    challenges: Vec<ChallengeView<'a>>,
}

#[derive(serde::Serialize)]
struct ChallengeView<'a> {
    id: &'a str,
    name: &'a str,
    goals: Vec<GoalView<'a>>,
}

#[derive(serde::Serialize)]
struct GoalView<'a> {
    id: &'a str,
    name: &'a str,
    stat_code: &'a str,
    progress: u64,
    target: u64,
    status: &'static str,
    claimed_at: Option<&'static str>,
}

async fn list_challenges(State(st): State<Arc<DemoState>>, headers: HeaderMap) -> Response {
    let st2 = st.clone();
    knobbed(&st, "challenges", || async move {
        let Some(user) = user_of(&headers) else {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "missing bearer token"})),
            )
                .into_response();
        };
        let stored = match st2.store.states(&user).await {
            Ok(s) => s,
            Err(e) => {
                return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e})))
                    .into_response();
            }
        };
        let challenges: Vec<ChallengeView> = st2
            .index
            .challenges
            .iter()
            .map(|c| ChallengeView {
                id: &c.id,
                name: &c.name,
                goals: c
                    .goals
                    .iter()
                    .map(|g| {
                        let s = stored.get(&g.id).copied().unwrap_or(store::GoalState {
                            progress: store::synthetic(&user, g),
                            claimed: false,
                        });
                        GoalView {
                            id: &g.id,
                            name: &g.name,
                            stat_code: &g.stat_code,
                            progress: s.progress.min(g.target),
                            target: g.target,
                            status: if s.claimed {
                                "claimed"
                            } else if s.progress >= g.target {
                                "completed"
                            } else {
                                "in_progress"
                            },
                            claimed_at: s.claimed.then_some("2026-01-01T00:00:00Z"),
                        }
                    })
                    .collect(),
            })
            .collect();
        Json(ChallengesView {
            user_id: &user,
            challenges,
        })
        .into_response()
    })
    .await
}

async fn claim(
    State(st): State<Arc<DemoState>>,
    Path((cid, gid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let st2 = st.clone();
    knobbed(&st, "claim", || async move {
        let Some(user) = user_of(&headers) else {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "missing bearer token"})),
            )
                .into_response();
        };
        let Some(goal) = st2
            .index
            .challenges
            .iter()
            .find(|c| c.id == cid)
            .and_then(|c| c.goals.iter().find(|g| g.id == gid))
        else {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such goal"})),
            )
                .into_response();
        };
        match st2.store.claim(&user, &cid, goal, &st2.namespace).await {
            Ok(()) => {
                st2.metrics.claim("claimed");
                Json(json!({"claimed": true})).into_response()
            }
            Err(store::ClaimError::AlreadyClaimed) => {
                st2.metrics.claim("already_claimed");
                (
                    StatusCode::CONFLICT,
                    Json(json!({"error": "already claimed"})),
                )
                    .into_response()
            }
            Err(store::ClaimError::NotCompleted) => {
                st2.metrics.claim("not_completed");
                (
                    StatusCode::CONFLICT,
                    Json(json!({"error": "goal not completed"})),
                )
                    .into_response()
            }
            Err(store::ClaimError::Unavailable(e)) => {
                (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e}))).into_response()
            }
        }
    })
    .await
}

/// `GET /admin/events`: the last events received, and gRPC concurrency figures.
async fn admin_events(State(st): State<Arc<DemoState>>) -> Json<serde_json::Value> {
    Json(json!({
        "events": st.received(),
        "grpc_peak_in_flight": st.grpc_peak.load(Ordering::Relaxed),
        "grpc_connections": st.grpc_connections.load(Ordering::Relaxed),
    }))
}

async fn get_knobs(State(st): State<Arc<DemoState>>) -> Json<Knobs> {
    Json(st.knobs())
}

/// `PUT /admin/knobs` with a JSON object holding any subset of the knobs.
async fn put_knobs(State(st): State<Arc<DemoState>>, body: Bytes) -> Response {
    let patch: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "expected a JSON object"})),
            )
                .into_response()
        }
    };
    let mut cur = match serde_json::to_value(st.knobs()) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    };
    if let (Some(c), Some(p)) = (cur.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            c.insert(k.clone(), v.clone());
        }
    }
    let knobs: Knobs = match serde_json::from_value(cur) {
        Ok(k) => k,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    };
    if let Err(e) = knobs.validate() {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response();
    }
    tracing::info!(?knobs, "demo knobs changed");
    st.set_knobs(knobs.clone());
    Json(knobs).into_response()
}

pub fn router(st: Arc<DemoState>) -> Router {
    Router::new()
        .route("/v1/challenges", get(list_challenges))
        .route("/v1/challenges/{cid}/goals/{gid}/claim", post(claim))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(
                |State(st): State<Arc<DemoState>>, headers: HeaderMap| async move {
                    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
                    let (status, content_type, body) =
                        crate::metrics::expo::scrape(accept, |f| st.metrics.encode(f));
                    (status, [(header::CONTENT_TYPE, content_type)], body)
                },
            ),
        )
        .route("/admin/knobs", get(get_knobs).put(put_knobs))
        .route("/admin/events", get(admin_events))
        .with_state(st)
}

/// Serves the demo target's HTTP API until `shutdown` completes.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    st: Arc<DemoState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(st))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_parse_and_progress_is_stable() {
        let st = DemoState::new(Knobs::default()).unwrap();
        assert_eq!(st.index.challenges.len(), 10);
        let goals = &st.index.challenges[0].goals;
        assert!(goals
            .iter()
            .all(|g| store::synthetic("u1", g) == store::synthetic("u1", g)));
        let done = goals
            .iter()
            .filter(|g| store::synthetic("user-000001", g) >= g.target)
            .count();
        assert!(done > 0 && done < 50, "{done}");
    }

    #[test]
    fn knob_validation() {
        assert!(Knobs {
            error_ratio: 1.5,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(Knobs {
            latency_min_ms: 5,
            latency_max_ms: 1,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(Knobs {
            stall_every_ms: 100,
            stall_for_ms: 200,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(Knobs {
            latency_min_ms: 50,
            latency_max_ms: 200,
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[tokio::test]
    async fn memory_store_events_and_claims() {
        let st = DemoState::new(Knobs::default()).unwrap();
        let goal = st.index.goals_for("wins_ranked")[0].clone();
        st.store
            .apply(&st.index, "u9", "wins_ranked", 100, "test")
            .unwrap();
        let states = st.store.states("u9").await.unwrap();
        assert_eq!(states[&*goal.goal_id].progress, goal.target);
        let g = st
            .index
            .challenges
            .iter()
            .flat_map(|c| c.goals.iter())
            .find(|g| g.id == *goal.goal_id)
            .unwrap()
            .clone();
        assert_eq!(
            st.store.claim("u9", &goal.challenge_id, &g, "test").await,
            Ok(())
        );
        assert_eq!(
            st.store.claim("u9", &goal.challenge_id, &g, "test").await,
            Err(store::ClaimError::AlreadyClaimed)
        );
    }
}
