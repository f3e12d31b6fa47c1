//! The soak judge: what is slowly getting worse in the system under test. Trends of
//! every observed series and of soakd's own per-op latency, errors and rate, each with
//! its evidence.
//!
//! `trend.rs` fits a slope with an interval that survives autocorrelation and periodic
//! patterns; `verdict.rs` turns a fit into `growing`, `shrinking`, `flat`, `bounded` or
//! `insufficient` and says why; `changepoint.rs` finds level shifts and names their
//! probable cause; `store.rs` keeps the rings; `thread.rs` reads and judges on the soak's
//! own thread; `api.rs` and `report.rs` are what a user reads.

pub mod api;
pub mod changepoint;
pub mod report;
pub mod store;
pub mod thread;
pub mod trend;
pub mod verdict;

pub use verdict::{judge, Judgement, PerDay, Threshold, Verdict};
