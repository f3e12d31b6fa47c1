//! Runs a capacity search against the live engine: sets each level's rates (through the
//! scenarios' rate overrides), waits out the warm-up, measures the window, judges it,
//! stores it, and asks [`plan_next`](super::plan_next) for the next level. At the end
//! every searched scenario goes to its soak level (`then`) or back to its schedule.
//!
//! The rooms: `run.rs` (a run from start to end, and the schedule), `searcher.rs` (one
//! level after another), `snapshot.rs` (what a window reads), `shards.rs` (sums over a
//! sharded fleet), `progress.rs` (where the search is, for the API and waiters).

mod progress;
mod run;
mod searcher;
mod shards;
mod snapshot;

pub use progress::{LastLevel, PlanLine, Progress, ProgressCell, SearchState, SharedProgress};
pub use run::{plan_of, run, run_scheduled};
pub use snapshot::SearchError;
