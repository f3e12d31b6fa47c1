//! Every metric soakd exports is defined in this module, and only here.
//!
//! Names follow Prometheus conventions: a `soakd_` prefix, base units, `_total` for
//! counters, `_seconds` for durations; the pg_* series keep postgres_exporter's names
//! (`pg.rs`). Labels are bounded: `scenario`, `op` and `target` come from the config,
//! `kind` from `drivers::kind` and the protocols' code lists (`grpc_<code>`,
//! `sqlstate_<code>`), `quantile` from a constant list, `area` from
//! `memory::AREAS`, `route`, `method`, `code` and `result` from the demo target's fixed
//! routes and outcomes, and the pg_* labels from the server's fixed sets or capped lists
//! (top statements, busiest tables).
//! `docs/METRICS.md` documents each series; changing one is a breaking change.

mod demo;
pub mod histsnap;
pub mod memory;
pub mod pg;
mod pool;
mod process;
mod quantiles;
pub mod window;

pub use demo::DemoMetrics;
pub use pool::PoolStats;
use pool::{PoolCollector, PoolCollectorHandle};
pub use process::ProcessMetrics;
use quantiles::QuantileCollector;
pub use quantiles::WindowSet;

pub use histsnap::HistSnap;
pub use memory::{MemoryAreas, MemorySize};

use parking_lot::Mutex;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use window::{quantile_secs, Window};

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

/// Quantiles exported from the rolling windows.
pub const QUANTILES: &[(f64, &str)] = &[
    (0.5, "0.5"),
    (0.9, "0.9"),
    (0.95, "0.95"),
    (0.99, "0.99"),
    (0.999, "0.999"),
];

#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// The daemon's registry and metric families.
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    lag: HistogramVec,
    target_rate: GaugeVec,
    in_flight: IntGaugeVec,
    max_in_flight: IntGaugeVec,
    dropped: IntCounterVec,
    scenario_info: IntGaugeVec,
    pub reload_successful: IntGauge,
    pub reload_timestamp: Gauge,
    windows: Arc<WindowSet>,
    pool_acquire: HistogramVec,
    pool_timeouts: IntCounterVec,
    pools: Arc<PoolCollector>,
    buffer_events: IntGaugeVec,
    buffer_capacity: IntGaugeVec,
    buffer_flush: HistogramVec,
    buffer_flushed: IntCounterVec,
    buffer_dropped: IntCounterVec,
    buffer_flush_errors: IntCounterVec,
    event_e2e: HistogramVec,
    pub pgstats_errors: IntCounterVec,
    /// The PostgreSQL statistics snapshot (pg_* series), rendered at scrape time.
    pub pg_snapshot: Arc<pg::Snapshot>,
    /// Every buffered writer's handles by name, for the history sampler.
    buffers: Mutex<std::collections::BTreeMap<String, BufferMetrics>>,
    /// The bounded structures' bytes (`soakd_memory_bytes{area}`).
    pub memory: Arc<MemoryAreas>,
}

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

/// Pool handles for a postgres target.
pub struct PoolMetrics {
    pub acquire: Histogram,
    pub timeouts: IntCounter,
}

/// Buffered-writer handles for a scenario.
#[derive(Clone)]
pub struct BufferMetrics {
    pub events: IntGauge,
    pub capacity: IntGauge,
    pub flush: Histogram,
    pub flushed: IntCounter,
    pub dropped: IntCounter,
    pub flush_errors: IntCounter,
    pub e2e: Histogram,
    /// Where the writer reports its bytes (area `write_buffers`).
    pub memory: Arc<MemoryAreas>,
}

/// Per-scenario handles, resolved once so the hot path never looks up labels.
pub struct ScenarioMetrics {
    pub scenario: String,
    pub target_rate: Gauge,
    pub in_flight: IntGauge,
    pub max_in_flight: IntGauge,
    pub dropped: IntCounter,
    pub lag: Histogram,
    pub ops: Vec<OpMetrics>,
    errors_vec: IntCounterVec,
    /// Error counts by kind for the status API (kinds are a bounded set).
    errors_by_kind: Mutex<HashMap<String, u64>>,
}

pub struct OpMetrics {
    pub op: String,
    pub requests: IntCounter,
    pub duration: Histogram,
    pub window: Arc<Window>,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

impl Metrics {
    pub fn new(quantile_window: Duration) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            opts(
                "soakd_requests_total",
                "Operations completed (any outcome).",
            ),
            &["scenario", "op"],
        )?;
        let errors = IntCounterVec::new(
            opts(
                "soakd_request_errors_total",
                "Operations that failed, by error kind.",
            ),
            &["scenario", "op", "kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "soakd_request_duration_seconds",
                "Operation latency measured from the intended start time (coordinated omission corrected).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["scenario", "op"],
        )?;
        let lag = HistogramVec::new(
            HistogramOpts::new(
                "soakd_schedule_lag_seconds",
                "Actual start minus intended start of each operation.",
            )
            .buckets(LAG_BUCKETS.to_vec()),
            &["scenario"],
        )?;
        let target_rate = GaugeVec::new(
            opts(
                "soakd_target_rate",
                "Operations per second the schedule (or an override) asks for now.",
            ),
            &["scenario"],
        )?;
        let in_flight = IntGaugeVec::new(
            opts(
                "soakd_in_flight",
                "Operations started and not yet finished.",
            ),
            &["scenario"],
        )?;
        let max_in_flight = IntGaugeVec::new(
            opts(
                "soakd_max_in_flight",
                "The scenario's cap on in-flight operations.",
            ),
            &["scenario"],
        )?;
        let dropped = IntCounterVec::new(
            opts(
                "soakd_dropped_iterations_total",
                "Arrivals not started because max_in_flight was reached or the generator fell more than 1s behind.",
            ),
            &["scenario"],
        )?;
        let scenario_info = IntGaugeVec::new(
            opts(
                "soakd_scenario_info",
                "Always 1 per running scenario; labels say which target and target type (http, grpc, postgres) it loads, so rules can treat API and event scenarios apart.",
            ),
            &["scenario", "target", "target_type"],
        )?;
        let build_info = IntGaugeVec::new(
            opts(
                "soakd_build_info",
                "Always 1; the version label says which soakd runs.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let reload_successful = IntGauge::new(
            "soakd_config_last_reload_successful",
            "1 if the last config load or reload succeeded, 0 if it was rejected.",
        )?;
        let reload_timestamp = Gauge::new(
            "soakd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.",
        )?;
        let windows = Arc::new(WindowSet {
            length: quantile_window,
            map: Mutex::new(HashMap::new()),
        });
        let quantiles = QuantileCollector::new(windows.clone())?;
        let pool_acquire = HistogramVec::new(
            HistogramOpts::new(
                "soakd_db_pool_acquire_seconds",
                "Time operations waited for a pooled database connection.",
            )
            .buckets(ACQUIRE_BUCKETS.to_vec()),
            &["target"],
        )?;
        let pool_timeouts = IntCounterVec::new(
            opts(
                "soakd_db_pool_acquire_timeouts_total",
                "Operations that gave up waiting for a pooled connection (acquire_timeout).",
            ),
            &["target"],
        )?;
        let pools = Arc::new(PoolCollector::new()?);
        let buffer_events = IntGaugeVec::new(
            opts(
                "soakd_buffer_events",
                "Entries (user x goal rows) waiting in the buffered writer.",
            ),
            &["scenario"],
        )?;
        let buffer_capacity = IntGaugeVec::new(
            opts(
                "soakd_buffer_capacity_events",
                "The buffered writer's size_limit.",
            ),
            &["scenario"],
        )?;
        let buffer_flush = HistogramVec::new(
            HistogramOpts::new(
                "soakd_buffer_flush_duration_seconds",
                "Time of one flush (one batched UPSERT), failed ones included.",
            )
            .buckets(FLUSH_BUCKETS.to_vec()),
            &["scenario"],
        )?;
        let buffer_flushed = IntCounterVec::new(
            opts(
                "soakd_buffer_flushed_events_total",
                "Entries committed by flushes.",
            ),
            &["scenario"],
        )?;
        let buffer_dropped = IntCounterVec::new(
            opts(
                "soakd_buffer_dropped_events_total",
                "Events refused because the buffer was full.",
            ),
            &["scenario"],
        )?;
        let buffer_flush_errors = IntCounterVec::new(
            opts(
                "soakd_buffer_flush_errors_total",
                "Flushes that failed (their entries stay buffered and are retried).",
            ),
            &["scenario"],
        )?;
        let event_e2e = HistogramVec::new(
            HistogramOpts::new(
                "soakd_event_e2e_seconds",
                "Event accepted into the buffer until its row is committed (the seed's E2E latency).",
            )
            .buckets(FLUSH_BUCKETS.to_vec()),
            &["scenario"],
        )?;
        let pg_snapshot = Arc::new(pg::Snapshot::default());
        let pgstats_errors = IntCounterVec::new(
            opts(
                "soakd_pgstats_errors_total",
                "Failed statistics collections (connect, query or timeout), by target.",
            ),
            &["target"],
        )?;
        for c in [
            Box::new(pool_acquire.clone()) as Box<dyn Collector>,
            Box::new(pool_timeouts.clone()),
            Box::new(PoolCollectorHandle(pools.clone())),
            Box::new(buffer_events.clone()),
            Box::new(buffer_capacity.clone()),
            Box::new(buffer_flush.clone()),
            Box::new(buffer_flushed.clone()),
            Box::new(buffer_dropped.clone()),
            Box::new(buffer_flush_errors.clone()),
            Box::new(event_e2e.clone()),
            Box::new(pgstats_errors.clone()),
            Box::new(pg::SnapshotCollector::new(pg_snapshot.clone())?),
        ] {
            registry.register(c)?;
        }

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(target_rate.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(max_in_flight.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(scenario_info.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(reload_successful.clone()))?;
        registry.register(Box::new(reload_timestamp.clone()))?;
        registry.register(Box::new(quantiles))?;
        registry.register(Box::new(ProcessMetrics::new()))?;
        let memory = Arc::new(MemoryAreas::default());
        registry.register(Box::new(memory::MemoryCollector::new(memory.clone())?))?;
        memory.register("latency_windows", &windows);

        Ok(Metrics {
            registry,
            requests,
            errors,
            duration,
            lag,
            target_rate,
            in_flight,
            max_in_flight,
            dropped,
            scenario_info,
            reload_successful,
            reload_timestamp,
            windows,
            pool_acquire,
            pool_timeouts,
            pools,
            buffer_events,
            buffer_capacity,
            buffer_flush,
            buffer_flushed,
            buffer_dropped,
            buffer_flush_errors,
            event_e2e,
            pgstats_errors,
            pg_snapshot,
            buffers: Mutex::new(Default::default()),
            memory,
        })
    }

    /// Handles for a postgres target; its pool's sizes are read at every scrape.
    pub fn pool(&self, target: &str, pool: Arc<dyn PoolStats>) -> PoolMetrics {
        let mut pools = self.pools.pools.lock();
        pools.retain(|(t, _)| t != target);
        pools.push((target.to_string(), pool));
        PoolMetrics {
            acquire: self.pool_acquire.with_label_values(&[target]),
            timeouts: self.pool_timeouts.with_label_values(&[target]),
        }
    }

    /// The same handles as [`Metrics::pool`], without registering a pool (for readers).
    pub fn pool_handles(&self, target: &str) -> PoolMetrics {
        PoolMetrics {
            acquire: self.pool_acquire.with_label_values(&[target]),
            timeouts: self.pool_timeouts.with_label_values(&[target]),
        }
    }

    pub fn forget_pool(&self, target: &str) {
        self.pools.pools.lock().retain(|(t, _)| t != target);
    }

    pub fn buffer(&self, scenario: &str) -> BufferMetrics {
        let s = [scenario];
        let m = BufferMetrics {
            events: self.buffer_events.with_label_values(&s),
            capacity: self.buffer_capacity.with_label_values(&s),
            flush: self.buffer_flush.with_label_values(&s),
            flushed: self.buffer_flushed.with_label_values(&s),
            dropped: self.buffer_dropped.with_label_values(&s),
            flush_errors: self.buffer_flush_errors.with_label_values(&s),
            e2e: self.event_e2e.with_label_values(&s),
            memory: self.memory.clone(),
        };
        self.buffers.lock().insert(scenario.to_string(), m.clone());
        m
    }

    /// The buffered writers' handles (one per writer name ever created; names come from
    /// the config, so the list is bounded).
    pub fn buffer_list(&self) -> Vec<(String, BufferMetrics)> {
        self.buffers
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Handles for a scenario and its ops. Asking again for the same names returns the
    /// same series and windows, so a reload keeps counters and histograms.
    pub fn scenario(&self, scenario: &str, ops: &[&str]) -> ScenarioMetrics {
        let s = [scenario];
        ScenarioMetrics {
            scenario: scenario.to_string(),
            target_rate: self.target_rate.with_label_values(&s),
            in_flight: self.in_flight.with_label_values(&s),
            max_in_flight: self.max_in_flight.with_label_values(&s),
            dropped: self.dropped.with_label_values(&s),
            lag: self.lag.with_label_values(&s),
            ops: ops
                .iter()
                .map(|op| OpMetrics {
                    op: op.to_string(),
                    requests: self.requests.with_label_values(&[scenario, op]),
                    duration: self.duration.with_label_values(&[scenario, op]),
                    window: self.windows.get(scenario, op),
                })
                .collect(),
            errors_vec: self.errors.clone(),
            errors_by_kind: Mutex::new(HashMap::new()),
        }
    }

    /// Marks `scenario` as loading `target` of `target_type`, replacing what it loaded before.
    pub fn set_scenario_info(&self, scenario: &str, target: &str, target_type: &str) {
        self.clear_scenario_info(scenario);
        self.scenario_info
            .with_label_values(&[scenario, target, target_type])
            .set(1);
    }

    fn clear_scenario_info(&self, scenario: &str) {
        for mf in self.scenario_info.collect() {
            for m in mf.get_metric() {
                let labels: Vec<&str> = m.get_label().iter().map(|l| l.value()).collect();
                // Label pairs come sorted by name: scenario, target, target_type.
                if labels.first() == Some(&scenario) {
                    let _ = self.scenario_info.remove_label_values(&labels);
                }
            }
        }
    }

    /// Forget the series of ops (or a whole scenario) that a reload removed.
    pub fn remove(&self, scenario: &str, ops: &[String], whole_scenario: bool) {
        let mut w = self.windows.map.lock();
        for op in ops {
            w.remove(&(scenario.to_string(), op.clone()));
            let _ = self.requests.remove_label_values(&[scenario, op]);
            let _ = self.duration.remove_label_values(&[scenario, op]);
        }
        if whole_scenario {
            self.clear_scenario_info(scenario);
            let s = [scenario];
            let _ = self.target_rate.remove_label_values(&s);
            let _ = self.in_flight.remove_label_values(&s);
            let _ = self.max_in_flight.remove_label_values(&s);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl ScenarioMetrics {
    pub fn record_error(&self, op: usize, kind: &str) {
        if let Some(o) = self.ops.get(op) {
            self.errors_vec
                .with_label_values(&[&self.scenario, &o.op, kind])
                .inc();
        }
        *self
            .errors_by_kind
            .lock()
            .entry(kind.to_string())
            .or_default() += 1;
    }

    pub fn errors_by_kind(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .errors_by_kind
            .lock()
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Carry error counts over from the handles this replaces (on reload).
    pub fn inherit_errors(&self, old: &ScenarioMetrics) {
        *self.errors_by_kind.lock() = old.errors_by_kind.lock().clone();
    }

    /// Latency quantiles over the window, all ops merged.
    pub fn window_quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        let mut merged: Option<hdrhistogram::Histogram<u64>> = None;
        for o in &self.ops {
            let s = o.window.snapshot();
            match merged.as_mut() {
                Some(m) => {
                    let _ = m.add(&s);
                }
                None => merged = Some(s),
            }
        }
        qs.iter()
            .map(|q| merged.as_ref().and_then(|h| quantile_secs(h, *q)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_is_not_truncated_to_whole_seconds() {
        // Burn a little CPU so there is something below one second to see.
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let r = Registry::new();
        r.register(Box::new(ProcessMetrics::new())).unwrap();
        let mut buf = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let v: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .unwrap()
            .parse()
            .unwrap();
        let now = crate::sysinfo::read_proc(None).unwrap().cpu.as_secs_f64();
        assert!(
            v > 0.1 && v <= now + 1e-9 && now - v < 0.5,
            "{v} vs {now} ({x})"
        );
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn series_survive_reacquire_and_quantiles_export() {
        let m = Metrics::new(Duration::from_secs(60)).unwrap();
        let a = m.scenario("api", &["list"]);
        a.ops[0].requests.inc();
        a.ops[0].window.record(Duration::from_millis(5));
        a.record_error(0, "status_5xx");
        let b = m.scenario("api", &["list"]);
        b.ops[0].requests.inc();
        assert_eq!(b.ops[0].requests.get(), 2);
        assert_eq!(b.ops[0].window.snapshot().len(), 1);
        let text = m.encode();
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
        assert!(text.contains("soakd_build_info{version="));
        assert_eq!(a.errors_by_kind(), vec![("status_5xx".to_string(), 1)]);
        m.remove("api", &["list".to_string()], true);
        assert!(!m.encode().contains("soakd_requests_total{"));
    }
}
