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
mod http;
pub mod launch;
pub mod metrics;
mod state;
pub mod store;

pub use http::{router, serve_http};
pub use metrics::DemoMetrics;
pub use state::{DemoError, DemoState, Knobs, Received, STATS_JSON, USERS_JSON};
