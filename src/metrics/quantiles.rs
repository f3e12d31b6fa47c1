//! `soakd_request_duration_quantile_seconds`: quantiles of every op's rolling HdrHistogram
//! window, computed at scrape time (the windows themselves are `window.rs`).

use super::window::{quantile_secs, Window};
use super::{MemorySize, QUANTILES};
use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
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
pub(super) struct QuantileCollector {
    windows: Arc<WindowSet>,
    desc: Vec<Desc>,
}

const QUANTILE_NAME: &str = "soakd_request_duration_quantile_seconds";

const QUANTILE_HELP: &str =
    "Latency from intended start over the rolling quantile window (HdrHistogram); a summary whose _count and _sum cover the same window.";

impl QuantileCollector {
    pub(super) fn new(windows: Arc<WindowSet>) -> Result<Self, prometheus::Error> {
        let desc = Desc::new(
            QUANTILE_NAME.into(),
            QUANTILE_HELP.into(),
            vec!["scenario".into(), "op".into()],
            HashMap::new(),
        )?;
        Ok(QuantileCollector {
            windows,
            desc: vec![desc],
        })
    }
}

impl Collector for QuantileCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.desc.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        use prometheus::proto::{LabelPair, Metric, MetricType, Quantile, Summary};
        let mut entries: Vec<((String, String), Arc<Window>)> = self
            .windows
            .map
            .lock()
            .iter()
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let label = |name: &str, value: &str| {
            let mut l = LabelPair::default();
            l.set_name(name.to_string());
            l.set_value(value.to_string());
            l
        };
        let mut metrics = Vec::with_capacity(entries.len());
        for ((scenario, op), w) in entries {
            let snap = w.snapshot();
            let mut summary = Summary::default();
            summary.set_sample_count(snap.len());
            summary.set_sample_sum(snap.mean() * snap.len() as f64 / 1e6);
            summary.set_quantile(
                QUANTILES
                    .iter()
                    .map(|(q, _)| {
                        let mut qq = Quantile::default();
                        qq.set_quantile(*q);
                        // An empty window exports NaN, as a Prometheus summary does.
                        qq.set_value(quantile_secs(&snap, *q).unwrap_or(f64::NAN));
                        qq
                    })
                    .collect(),
            );
            let mut m = Metric::default();
            m.set_label(vec![label("op", &op), label("scenario", &scenario)]);
            m.set_summary(summary);
            metrics.push(m);
        }
        if metrics.is_empty() {
            return vec![];
        }
        let mut mf = MetricFamily::default();
        mf.set_name(QUANTILE_NAME.to_string());
        mf.set_help(QUANTILE_HELP.to_string());
        mf.set_field_type(MetricType::SUMMARY);
        mf.set_metric(metrics);
        vec![mf]
    }
}
