//! The engine: one runner per scenario, applying configs (at start and on reload),
//! runtime controls (pause, resume, rate override), status, and draining shutdown.
//!
//! A reload builds everything the new config needs first (target clients, drivers) and
//! only then swaps it in, so an invalid or unbuildable config changes nothing. Changed
//! scenarios get a new plan in place: their runner, connections and metric series stay.
//!
//! The rooms: `core.rs` (the [`Engine`] and shutdown), `apply.rs` (build, then swap),
//! `diff.rs` (what a new config changes, pure), `plan.rs` (a scenario's [`Plan`]),
//! `state.rs` (what a running scenario keeps), `status.rs` (what the API says of it),
//! `runner.rs` and `clock.rs` (the hot path), `visibility.rs` and `guard.rs`.

mod apply;
pub mod clock;
mod core;
pub mod diff;
pub mod follow;
pub mod guard;
mod plan;
pub mod runner;
mod state;
mod status;
pub mod visibility;

pub use core::{ApplyError, Engine, Loader};
pub use diff::ApplySummary;
pub use plan::Plan;
pub use state::{Capture, ScenarioState};
pub use status::{Latency, OpStatus, ReloadState, RunState, ScenarioStatus, VisibilityStatus};
