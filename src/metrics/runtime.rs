//! The load runtime's own delay (`soakd_runtime_delay_seconds`): how late the runtime
//! polled a task whose timer had fired, probed every [`PROBE_EVERY`] by a task on the
//! same runtime as the load (`engine` spawns it). A saturated generator shows here first:
//! its operations wait to be polled again, and every latency it measures includes the
//! wait. The capacity judge reads it per level (see `capacity::judge`).
//!
//! Tokio's timer has millisecond resolution, so an idle runtime shows up to about 1 ms.

use crate::metrics::common::{register, LAG_BUCKETS};
use crate::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// How often the probe sleeps and measures its wake-up.
pub const PROBE_EVERY: Duration = Duration::from_millis(10);

/// The runtime's series.
pub struct RuntimeFamily {
    pub delay: Histogram,
}

impl RuntimeFamily {
    pub fn register(registry: &mut Registry) -> RuntimeFamily {
        let f = RuntimeFamily {
            delay: Histogram::new(LAG_BUCKETS),
        };
        register(
            registry,
            "soakd_runtime_delay_seconds",
            "How late the load runtime polled a task whose timer had fired (probed every 10 ms): soakd's own scheduling delay, included in every latency it measures.",
            f.delay.clone(),
        );
        f
    }
}
