//! The vocabulary every family shares: the metric types, the bucket layouts, the
//! exported quantiles, the per-target label, and [`register`], which registers a metric
//! under the name a query uses.

use super::histogram::{self, Histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::{AtomicI64, AtomicU64};

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
