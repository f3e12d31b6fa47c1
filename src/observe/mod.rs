//! Observing the system under test (`targets.NAME.observe`): its process, its cgroup,
//! its own exposition, PromQL and a postgres target's statistics, read off the hot path on the soak's clock.
//!
//! `reading.rs` is what one read gives (values, the process's identity, errors per
//! source); `process.rs`, `cgroup.rs`, `exposition.rs` and `postgres.rs` are the sources.

pub mod cgroup;
pub mod exposition;
pub mod observer;
pub mod postgres;
pub mod process;
pub mod reading;

pub use observer::Observer;
pub use reading::{Identity, Reading, Source};
