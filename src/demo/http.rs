//! The demo target's HTTP side: the challenge API, claims, its knobs and events.

use super::state::{DemoState, Knobs};
use super::store;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

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

/// `GET /admin/leak`: what the leak knobs keep.
async fn get_leak(State(st): State<Arc<DemoState>>) -> Json<crate::demo::state::LeakStatus> {
    Json(st.leak_status())
}

/// `DELETE /admin/leak`: frees it (the knobs stay: set them to 0 to stop leaking).
async fn free_leak(State(st): State<Arc<DemoState>>) -> Json<crate::demo::state::LeakStatus> {
    let was = st.free_leak();
    tracing::info!(bytes = was.bytes, fds = was.fds, "demo leak freed");
    Json(was)
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

/// `GET /version`: the release the `version` knob says (`1.0.0` unless set).
async fn version(State(st): State<Arc<DemoState>>) -> Json<serde_json::Value> {
    let v = st.knobs().version;
    Json(serde_json::json!({"version": if v.is_empty() { "1.0.0".to_string() } else { v }}))
}

pub fn router(st: Arc<DemoState>) -> Router {
    Router::new()
        .route("/v1/challenges", get(list_challenges))
        .route("/v1/challenges/{cid}/goals/{gid}/claim", post(claim))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/version", get(version))
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
        .route("/admin/leak", get(get_leak).delete(free_leak))
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
    fn the_leak_knobs_keep_memory_and_fds_until_freed() {
        let st = DemoState::new(Knobs {
            leak_bytes_per_second: 10 << 20,
            leak_fds_per_minute: 600,
            ..Default::default()
        })
        .unwrap();
        for _ in 0..10 {
            st.leak_tick();
        }
        let l = st.leak_status();
        assert_eq!(l.bytes, 10 << 20, "a second's worth in ten ticks");
        assert_eq!(l.fds, 10);
        assert_eq!(st.free_leak(), l);
        assert_eq!(st.leak_status().bytes, 0);
        assert!(Knobs {
            leak_fds_per_minute: 6001,
            ..Default::default()
        }
        .validate()
        .is_err());
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
