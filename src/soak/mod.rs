//! The soak judge: what is slowly getting worse in the system under test. Trends of
//! every observed series and of soakd's own per-op latency, errors and rate, each with
//! its evidence.
//!
//! `trend.rs` fits a slope with an interval that survives autocorrelation and periodic
//! patterns; `verdict.rs` turns a fit into `growing`, `shrinking`, `flat`, `bounded` or
//! `insufficient` and says why.

pub mod api;
pub mod changepoint;
pub mod store;
pub mod thread;
pub mod trend;
pub mod verdict;

pub use verdict::{judge, Judgement, PerDay, Threshold, Verdict};
