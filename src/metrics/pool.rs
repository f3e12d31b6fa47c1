//! Connection pools at scrape time: in use, idle and maximum per postgres target, read
//! from the live pools (`PoolStats`), and the statements cancelled by op timeouts.

use super::opts;
use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec};
use std::collections::HashMap;
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

/// Pool sizes read at scrape time from the live pools.
pub(super) struct PoolCollector {
    pub(super) pools: Mutex<Vec<(String, Arc<dyn PoolStats>)>>,
    descs: Vec<Desc>,
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

const CANCELLED: (&str, &str) = (
    "soakd_db_statements_cancelled_total",
    "Statements abandoned by the op timeout and cancelled on the server (pg_cancel_backend).",
);

impl PoolCollector {
    pub(super) fn new() -> Result<Self, prometheus::Error> {
        let descs = POOL_SERIES
            .iter()
            .chain([&CANCELLED])
            .map(|(n, h)| {
                Desc::new(
                    n.to_string(),
                    h.to_string(),
                    vec!["target".into()],
                    HashMap::new(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(PoolCollector {
            pools: Mutex::new(Vec::new()),
            descs,
        })
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let pools = self.pools.lock().clone();
        let mut out = Vec::new();
        for (i, (name, help)) in POOL_SERIES.iter().enumerate() {
            let Ok(g) = IntGaugeVec::new(opts(name, help), &["target"]) else {
                continue;
            };
            for (target, pool) in &pools {
                let v = match i {
                    0 => pool.in_use(),
                    1 => pool.idle(),
                    _ => pool.max(),
                };
                g.with_label_values(&[target.as_str()]).set(v);
            }
            out.extend(g.collect());
        }
        if let Ok(c) = IntCounterVec::new(opts(CANCELLED.0, CANCELLED.1), &["target"]) {
            for (target, pool) in &pools {
                c.with_label_values(&[target.as_str()])
                    .inc_by(pool.statements_cancelled());
            }
            out.extend(c.collect());
        }
        out
    }
}

/// Lets the registry own a collector the metrics struct also keeps.
pub(super) struct PoolCollectorHandle(pub(super) Arc<PoolCollector>);

impl Collector for PoolCollectorHandle {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }
    fn collect(&self) -> Vec<MetricFamily> {
        self.0.collect()
    }
}
