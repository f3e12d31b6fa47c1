//! `soakd_request_duration_quantile_seconds`: quantiles of every op's rolling HdrHistogram
//! window, computed at scrape time (the windows themselves are `window.rs`).

use super::window::{quantile_secs, Window};
use crate::metrics::common::QUANTILES;
use crate::metrics::memory::MemorySize;
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Rolling windows by (scenario, op); read at scrape time by [`QuantileCollector`].
pub struct WindowSet {
    pub(super) length: Duration,
    pub(super) map: Mutex<HashMap<(String, String), Arc<Window>>>,
}

impl MemorySize for WindowSet {
    fn memory_bytes(&self) -> u64 {
        self.map
            .lock()
            .iter()
            .map(|((s, o), w)| w.memory_bytes() + (s.capacity() + o.capacity()) as u64)
            .sum()
    }
}

impl WindowSet {
    pub(super) fn get(&self, scenario: &str, op: &str) -> Arc<Window> {
        self.map
            .lock()
            .entry((scenario.to_string(), op.to_string()))
            .or_insert_with(|| Arc::new(Window::new(self.length)))
            .clone()
    }
}

/// Computes `soakd_request_duration_quantile_seconds` from the windows at scrape time.
#[derive(Debug)]
pub(super) struct QuantileCollector {
    windows: Arc<WindowSet>,
    name: &'static str,
    help: &'static str,
}

const QUANTILE_NAME: &str = "soakd_request_duration_quantile_seconds";

const QUANTILE_HELP: &str =
    "Latency from intended start over the rolling quantile window (HdrHistogram); a summary whose _count and _sum cover the same window.";

impl QuantileCollector {
    pub(super) fn new(windows: Arc<WindowSet>) -> Self {
        Self::named(windows, QUANTILE_NAME, QUANTILE_HELP)
    }

    /// The same summary of other windows, under another name.
    pub(super) fn named(windows: Arc<WindowSet>, name: &'static str, help: &'static str) -> Self {
        QuantileCollector {
            windows,
            name,
            help,
        }
    }
}

impl std::fmt::Debug for WindowSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowSet")
            .field("length", &self.length)
            .finish()
    }
}

impl Collector for QuantileCollector {
    /// A summary per op (the summary type is a patch to prometheus-client, see
    /// vendor/prometheus-client/PATCHED.md).
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut entries: Vec<((String, String), Arc<Window>)> = self
            .windows
            .map
            .lock()
            .iter()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Summary)?;
        for ((scenario, op), w) in entries {
            let snap = w.snapshot();
            // An empty window exports NaN, as a Prometheus summary does.
            let quantiles: Vec<(f64, f64)> = QUANTILES
                .iter()
                .map(|(q, _)| (*q, quantile_secs(&snap, *q).unwrap_or(f64::NAN)))
                .collect();
            let labels = [("op", op.as_str()), ("scenario", scenario.as_str())];
            family.encode_family(&labels)?.encode_summary(
                snap.mean() * snap.len() as f64 / 1e6,
                snap.len(),
                &quantiles,
            )?;
        }
        Ok(())
    }
}
