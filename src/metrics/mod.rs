//! Every metric soakd exports is defined in this module, and only here, on
//! prometheus-client. Each family of series registers itself
//! (`XFamily::register(&mut Registry) -> Self`, the shape linkerd2-proxy uses):
//! `scenario.rs` (requests, errors, latency, schedule, in-flight), `http.rs` (request
//! phases and bytes), `pool.rs` (database
//! pools), `buffer.rs` (buffered writers), `pg.rs` (the pg_* statistics), `process.rs`
//! (the process), `memory.rs` (bounded structures and the allocator), and the config
//! and build series below, `runtime.rs` (the load runtime's scheduling delay), `slo.rs` (the rolling SLO verdicts), `capacity.rs` (the latest and baseline capacity runs), `guard.rs` (the guardrails' actions), `follow.rs` (`follow:` stages' signal and rate), `visibility.rs` (write-to-visible probes). The demo target's own series are `demo::metrics`.
//!
//! Names follow Prometheus conventions: a `soakd_` prefix, base units, `_total` for
//! counters, `_seconds` for durations; the pg_* series keep postgres_exporter's names.
//! Labels are bounded: `scenario`, `op` and `target` come from the config, `kind` from
//! `drivers::kind` and the protocols' code lists (`grpc_<code>`, `sqlstate_<code>`),
//! `quantile` from a constant list, `area` from `memory::AREAS`, and the pg_* labels from
//! the server's fixed sets or capped lists (top statements, busiest tables).
//! `docs/METRICS.md` documents each series; changing one is a breaking change.
//!
//! Latency histograms (`histogram.rs`) carry classic buckets, a native histogram and
//! exemplars; `expo.rs` serves them in the format the scraper asks for.

pub mod buffer;
pub mod capacity;
mod common;
mod config;
pub mod deploy;
pub mod expo;
pub mod follow;
pub mod guard;
pub mod histogram;
pub mod histsnap;
pub mod http;
pub mod memory;
pub mod pg;
pub mod pool;
pub mod process;
mod quantiles;
mod registry;
pub mod runtime;
pub mod scenario;
pub mod slo;
pub mod soak;
pub mod visibility;
pub mod window;

pub use buffer::{BufferFamily, BufferMetrics};
pub(crate) use common::{histograms, register};
pub use common::{
    Counter, FloatGauge, IntGauge, MetricsError, TargetLabel, ACQUIRE_BUCKETS, DURATION_BUCKETS,
    FLUSH_BUCKETS, LAG_BUCKETS, QUANTILES,
};
pub use config::ConfigFamily;
pub use expo::Format;
pub use histogram::Histogram;
pub use histsnap::HistSnap;
pub use http::{HttpFamily, PhaseMetrics};
pub use memory::{MemoryAreas, MemorySize};
pub use pool::{PoolFamily, PoolMetrics, PoolStats};
pub use process::ProcessCollector;
pub use quantiles::WindowSet;
pub use registry::Metrics;
pub use runtime::RuntimeFamily;
pub use scenario::{OpMetrics, ScenarioFamily, ScenarioMetrics};
pub use slo::{SloFamily, SloMetrics};
