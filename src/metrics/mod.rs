//! Every metric soakd exports is defined in this module, and only here, on
//! prometheus-client. Each family of series registers itself
//! (`XFamily::register(&mut Registry) -> Self`, the shape linkerd2-proxy uses):
//! `scenario.rs` (requests, errors, latency, schedule, in-flight), `http.rs` (request
//! phases and bytes), `pool.rs` (database
//! pools), `buffer.rs` (buffered writers), `pg.rs` (the pg_* statistics), `process.rs`
//! (the process), `memory.rs` (bounded structures and the allocator), and the config
//! and build series below, `runtime.rs` (the load runtime's scheduling delay), `slo.rs` (the rolling SLO verdicts), `capacity.rs` (the latest and baseline capacity runs), `guard.rs` (the guardrails' actions), `visibility.rs` (write-to-visible probes). The demo target's own series are `demo::metrics`.
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
pub mod expo;
pub mod guard;
pub mod histogram;
pub mod histsnap;
pub mod http;
pub mod memory;
pub mod pg;
pub mod pool;
pub mod process;
mod quantiles;
pub mod runtime;
pub mod scenario;
pub mod slo;
pub mod visibility;
pub mod window;

pub use buffer::{BufferFamily, BufferMetrics};
pub use expo::Format;
pub use histogram::Histogram;
pub use histsnap::HistSnap;
pub use http::{HttpFamily, PhaseMetrics};
pub use memory::{MemoryAreas, MemorySize};
pub use pool::{PoolFamily, PoolMetrics, PoolStats};
pub use process::ProcessCollector;
pub use quantiles::WindowSet;
pub use runtime::RuntimeFamily;
pub use scenario::{OpMetrics, ScenarioFamily, ScenarioMetrics};
pub use slo::{SloFamily, SloMetrics};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// A monotonic counter.
pub type Counter = prometheus_client::metrics::counter::Counter;
/// An integer gauge.
pub type IntGauge = prometheus_client::metrics::gauge::Gauge<i64, AtomicI64>;
/// A floating-point gauge.
pub type FloatGauge = prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>;

/// Request duration buckets: 100 µs to 60 s, with boundaries at the seeds' SLOs
/// (100 ms event p95, 200 ms, 500 ms API alert, 2 s API limit).
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75,
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Schedule lag buckets: 10 µs to 1 s (later arrivals are dropped, not lagged).
pub const LAG_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// Acquire-wait buckets: 100 µs to 30 s.
pub const ACQUIRE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Flush and end-to-end buckets: 1 ms to 60 s, with the seed's 1 s flush interval inside.
pub const FLUSH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

/// Quantiles exported from the rolling windows.
pub const QUANTILES: &[(f64, &str)] = &[
    (0.5, "0.5"),
    (0.9, "0.9"),
    (0.95, "0.95"),
    (0.99, "0.99"),
    (0.999, "0.999"),
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: encoding the {0} exposition failed")]
    Encode(&'static str),
}

/// Registers `metric` under its full exposition name. prometheus-client appends `_total`
/// to counters, `_info` to info metrics and a full stop to help texts itself, so they are
/// taken off here: the names in this module are the ones a query uses.
pub(crate) fn register<M: Metric + TypedMetric>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) {
    let name = match M::TYPE {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        MetricType::Info => name.strip_suffix("_info").unwrap_or(name),
        _ => name,
    };
    registry.register(name, help.strip_suffix('.').unwrap_or(help), metric);
}

/// A family of histograms with the given bounds.
pub(crate) fn histograms<S>(bounds: &'static [f64]) -> Family<S, Histogram, histogram::WithBounds>
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet,
{
    Family::new_with_constructor(histogram::WithBounds(bounds))
}

/// Label set of series per target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

impl TargetLabel {
    pub fn of(target: &str) -> TargetLabel {
        TargetLabel {
            target: target.to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// The config reload and build series.
pub struct ConfigFamily {
    pub reload_successful: IntGauge,
    pub reload_timestamp: FloatGauge,
}

impl ConfigFamily {
    pub fn register(registry: &mut Registry) -> ConfigFamily {
        register(
            registry,
            "soakd_build_info",
            "Always 1; the version label says which soakd runs.",
            Info::new(VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        let f = ConfigFamily {
            reload_successful: IntGauge::default(),
            reload_timestamp: FloatGauge::default(),
        };
        register(
            registry,
            "soakd_config_last_reload_successful",
            "1 if the last config load or reload succeeded, 0 if it was rejected.",
            f.reload_successful.clone(),
        );
        register(
            registry,
            "soakd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.",
            f.reload_timestamp.clone(),
        );
        f
    }
}

/// The daemon's registry and its families.
pub struct Metrics {
    pub registry: Registry,
    pub scenarios: ScenarioFamily,
    pub pools: PoolFamily,
    pub buffers: BufferFamily,
    pub http: HttpFamily,
    pub pg: pg::PgFamily,
    pub config: ConfigFamily,
    /// The load runtime's scheduling delay.
    pub runtime: RuntimeFamily,
    /// The rolling SLO verdicts.
    pub slo: SloFamily,
    /// The latest and the baseline capacity runs.
    pub capacity: capacity::CapacityFamily,
    /// The guardrails' actions.
    pub guard: guard::GuardFamily,
    /// Write-to-visible probes.
    pub visibility: visibility::VisibilityFamily,
    /// The bounded structures' bytes (`soakd_memory_bytes{area}`).
    pub memory: Arc<MemoryAreas>,
}

impl Metrics {
    pub fn new(quantile_window: Duration) -> Metrics {
        let mut registry = Registry::default();
        let scenarios = ScenarioFamily::register(&mut registry, quantile_window);
        let config = ConfigFamily::register(&mut registry);
        let memory = MemoryAreas::register_family(&mut registry);
        memory.register("latency_windows", &scenarios.windows);
        let visibility = visibility::VisibilityFamily::register(&mut registry, quantile_window);
        memory.register("latency_windows", &visibility.windows);
        let pools = PoolFamily::register(&mut registry);
        let buffers = BufferFamily::register(&mut registry, memory.clone());
        let http = HttpFamily::register(&mut registry);
        let pg = pg::PgFamily::register(&mut registry);
        let runtime = RuntimeFamily::register(&mut registry);
        let slo = SloFamily::register(&mut registry);
        let capacity = capacity::CapacityFamily::register(&mut registry);
        let guard = guard::GuardFamily::register(&mut registry);
        ProcessCollector::register(&mut registry);
        Metrics {
            registry,
            scenarios,
            pools,
            buffers,
            http,
            pg,
            config,
            runtime,
            slo,
            capacity,
            guard,
            visibility,
            memory,
        }
    }

    /// The exposition in `format`.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, MetricsError> {
        expo::encode(&self.registry, format)
    }

    /// The Prometheus text exposition (what `promtool check metrics` reads).
    pub fn text(&self) -> String {
        expo::text(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_survive_reacquire_and_quantiles_export() {
        let m = Metrics::new(Duration::from_secs(60));
        let a = m.scenarios.scenario("api", &["list"]);
        a.ops[0].requests.inc();
        a.ops[0].window.record(Duration::from_millis(5));
        a.record_error(0, "status_5xx");
        let b = m.scenarios.scenario("api", &["list"]);
        b.ops[0].requests.inc();
        assert_eq!(b.ops[0].requests.get(), 2);
        assert_eq!(b.ops[0].window.snapshot().len(), 1);
        let text = m.text();
        assert!(
            text.contains("soakd_requests_total{op=\"list\",scenario=\"api\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("soakd_request_duration_quantile_seconds{op=\"list\",scenario=\"api\",quantile=\"0.99\"} 0.005"),
            "{text}"
        );
        assert!(text.contains(
            "soakd_request_errors_total{kind=\"status_5xx\",op=\"list\",scenario=\"api\"} 1"
        ));
        assert!(text.contains("soakd_build_info{version="), "{text}");
        assert!(
            text.contains("# HELP soakd_requests_total Operations completed (any outcome).\n"),
            "help texts end in one full stop: {text}"
        );
        assert_eq!(a.errors_by_kind(), vec![("status_5xx".to_string(), 1)]);
        m.scenarios.remove("api", &["list".to_string()], true);
        let text = m.text();
        assert!(!text.contains("soakd_requests_total{"), "{text}");
        assert!(!text.contains("soakd_request_errors_total{"), "{text}");
    }
}
