//! soakd: an always-on, Prometheus-native load daemon for staging.
//!
//! See `docs/ARCHITECTURE.md` for how the modules fit together.

// Nothing that input, the network or a database can make fail may panic: errors are
// values (clippy.toml lets tests unwrap).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod capacity;
pub mod challenges;
pub mod chart;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod deploy;
pub mod drivers;
pub mod engine;
pub mod events;
pub mod feeder;
pub mod history;
pub mod metrics;
pub mod observe;
pub mod pg;
pub mod phases;
pub mod promql;
pub mod protos;
pub mod schedule;
pub mod server;
pub mod shift;
pub mod slo;
pub mod soak;
pub mod sysinfo;
pub mod template;
pub mod threads;
pub mod units;
