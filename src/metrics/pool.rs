//! The pool family: acquire waits and timeouts per postgres target, and at scrape time
//! the live pools' sizes (in use, idle, maximum) and the statements cancelled by op
//! timeouts.

use super::histogram::{Histogram, WithBounds};
use crate::metrics::common::{histograms, register, Counter, TargetLabel, ACQUIRE_BUCKETS};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// A connection pool's sizes, read at scrape time.
pub trait PoolStats: Send + Sync {
    /// Connections lent to operations now.
    fn in_use(&self) -> i64;
    /// Connections open and idle now.
    fn idle(&self) -> i64;
    fn max(&self) -> i64;
    /// Statements abandoned by the op timeout and cancelled on the server, so far.
    fn statements_cancelled(&self) -> u64;
}

/// Pool handles for a postgres target.
#[derive(Clone)]
pub struct PoolMetrics {
    pub acquire: Histogram,
    pub timeouts: Counter,
}

/// The live pools, by target; read by the collector at every scrape.
type Pools = Arc<Mutex<Vec<(String, Arc<dyn PoolStats>)>>>;

/// The pool series, registered once per registry.
pub struct PoolFamily {
    acquire: Family<TargetLabel, Histogram, WithBounds>,
    timeouts: Family<TargetLabel, Counter>,
    pools: Pools,
}

const POOL_SERIES: [(&str, &str); 3] = [
    (
        "soakd_db_pool_connections_in_use",
        "Pooled connections lent to operations now.",
    ),
    (
        "soakd_db_pool_connections_idle",
        "Pooled connections open and idle now.",
    ),
    (
        "soakd_db_pool_max_connections",
        "The pool's max_connections.",
    ),
];

/// `soakd_db_statements_cancelled_total` (the encoder adds `_total`).
const CANCELLED: (&str, &str) = (
    "soakd_db_statements_cancelled",
    "Statements abandoned by the op timeout and cancelled on the server (pg_cancel_backend).",
);

impl PoolFamily {
    pub fn register(registry: &mut Registry) -> PoolFamily {
        let f = PoolFamily {
            acquire: histograms(ACQUIRE_BUCKETS),
            timeouts: Family::default(),
            pools: Arc::new(Mutex::new(Vec::new())),
        };
        register(
            registry,
            "soakd_db_pool_acquire_seconds",
            "Time operations waited for a pooled database connection.",
            f.acquire.clone(),
        );
        register(
            registry,
            "soakd_db_pool_acquire_timeouts_total",
            "Operations that gave up waiting for a pooled connection (acquire_timeout).",
            f.timeouts.clone(),
        );
        registry.register_collector(Box::new(PoolCollector(f.pools.clone())));
        f
    }

    /// Handles for a postgres target; its pool's sizes are read at every scrape.
    pub fn pool(&self, target: &str, pool: Arc<dyn PoolStats>) -> PoolMetrics {
        let mut pools = self.pools.lock();
        pools.retain(|(t, _)| t != target);
        pools.push((target.to_string(), pool));
        self.handles(target)
    }

    /// The same handles as [`PoolFamily::pool`], without registering a pool (for readers).
    pub fn handles(&self, target: &str) -> PoolMetrics {
        let l = TargetLabel::of(target);
        PoolMetrics {
            acquire: self.acquire.get_or_create_owned(&l),
            timeouts: self.timeouts.get_or_create_owned(&l),
        }
    }

    pub fn forget(&self, target: &str) {
        self.pools.lock().retain(|(t, _)| t != target);
    }
}

struct PoolCollector(Pools);

impl std::fmt::Debug for PoolCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolCollector")
    }
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools = self.0.lock().clone();
        for (i, (name, help)) in POOL_SERIES.iter().enumerate() {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (target, pool) in &pools {
                let v = match i {
                    0 => pool.in_use(),
                    1 => pool.idle(),
                    _ => pool.max(),
                };
                ConstGauge::new(v).encode(family.encode_family(&[("target", target)])?)?;
            }
        }
        let mut family =
            encoder.encode_descriptor(CANCELLED.0, CANCELLED.1, None, MetricType::Counter)?;
        for (target, pool) in &pools {
            ConstCounter::new(pool.statements_cancelled())
                .encode(family.encode_family(&[("target", target)])?)?;
        }
        Ok(())
    }
}
