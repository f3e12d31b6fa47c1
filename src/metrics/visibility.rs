//! The visibility family: how long after a write its effect could be read
//! (`visibility:` ops), the probes pending, and the polls sent.

use super::histogram::{Histogram, WithBounds};
use super::quantiles::{QuantileCollector, WindowSet};
use super::scenario::{OpLabels, ScenarioLabel};
use super::window::Window;
use crate::metrics::common::{histograms, register, Counter, IntGauge, FLUSH_BUCKETS};
use parking_lot::Mutex;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One visibility op's handles.
#[derive(Clone)]
pub struct VisibilityOpMetrics {
    /// Write's intended start to the first poll answer that satisfied `until`.
    pub seconds: Histogram,
    /// The same latencies, for the rolling quantiles and the dashboard.
    pub window: Arc<Window>,
    pub polls: Counter,
}

/// The visibility series, registered once per registry.
pub struct VisibilityFamily {
    seconds: Family<OpLabels, Histogram, WithBounds>,
    pending: Family<ScenarioLabel, IntGauge>,
    polls: Family<OpLabels, Counter>,
    /// The windows behind `soakd_visibility_quantile_seconds`.
    pub windows: Arc<WindowSet>,
}

fn labels(scenario: &str, op: &str) -> OpLabels {
    OpLabels {
        op: op.to_string(),
        scenario: scenario.to_string(),
    }
}

impl VisibilityFamily {
    pub fn register(registry: &mut Registry, quantile_window: Duration) -> VisibilityFamily {
        let f = VisibilityFamily {
            seconds: histograms(FLUSH_BUCKETS),
            pending: Family::default(),
            polls: Family::default(),
            windows: Arc::new(WindowSet {
                length: quantile_window,
                map: Mutex::new(HashMap::new()),
            }),
        };
        register(
            registry,
            "soakd_visibility_seconds",
            "From a visibility op's intended start (its write) to the first poll answer that showed the write (`until` held).",
            f.seconds.clone(),
        );
        register(
            registry,
            "soakd_visibility_pending",
            "Visibility probes running (write sent, not yet visible or past the deadline); at most the scenario's max_pending.",
            f.pending.clone(),
        );
        register(
            registry,
            "soakd_visibility_polls_total",
            "Polls sent by visibility probes, whatever they answered.",
            f.polls.clone(),
        );
        registry.register_collector(Box::new(QuantileCollector::named(
            f.windows.clone(),
            "soakd_visibility_quantile_seconds",
            "Write-to-visible latency over the rolling quantile window (HdrHistogram); a summary whose _count and _sum cover the same window.",
        )));
        f
    }

    /// The handles of a visibility op; asking again returns the same series.
    pub fn op(&self, scenario: &str, op: &str) -> VisibilityOpMetrics {
        let l = labels(scenario, op);
        VisibilityOpMetrics {
            seconds: self.seconds.get_or_create_owned(&l),
            window: self.windows.get(scenario, op),
            polls: self.polls.get_or_create_owned(&l),
        }
    }

    /// The pending gauge of a scenario with visibility ops.
    pub fn pending(&self, scenario: &str) -> IntGauge {
        self.pending.get_or_create_owned(&ScenarioLabel {
            scenario: scenario.to_string(),
        })
    }

    /// Forget a gone op's series (or a whole scenario's).
    pub fn remove(&self, scenario: &str, ops: &[String], whole_scenario: bool) {
        let mut w = self.windows.map.lock();
        for op in ops {
            w.remove(&(scenario.to_string(), op.clone()));
            let l = labels(scenario, op);
            self.seconds.remove(&l);
            self.polls.remove(&l);
        }
        drop(w);
        if whole_scenario {
            self.pending.remove(&ScenarioLabel {
                scenario: scenario.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_histogram_pending_polls_and_quantiles() {
        let mut r = Registry::default();
        let f = VisibilityFamily::register(&mut r, Duration::from_secs(60));
        let m = f.op("events", "stat_update");
        m.seconds.observe(0.4);
        m.window.record(Duration::from_millis(400));
        m.polls.inc_by(9);
        f.pending("events").set(3);
        let text = crate::metrics::expo::text(&r);
        for want in [
            "soakd_visibility_seconds_bucket{op=\"stat_update\",scenario=\"events\",le=\"0.5\"} 1",
            "soakd_visibility_pending{scenario=\"events\"} 3",
            "soakd_visibility_polls_total{op=\"stat_update\",scenario=\"events\"} 9",
            "soakd_visibility_quantile_seconds{op=\"stat_update\",scenario=\"events\",quantile=\"0.5\"} 0.4",
        ] {
            assert!(text.contains(want), "{want} not in {text}");
        }
        let q = crate::metrics::window::merged_quantiles([&*m.window], &[0.5]);
        assert!((q[0].unwrap() - 0.4).abs() < 0.001, "{q:?}");
        assert_eq!(
            crate::metrics::window::merged_quantiles([], &[0.5]),
            vec![None]
        );
        f.remove("events", &["stat_update".to_string()], true);
        let text = crate::metrics::expo::text(&r);
        assert!(!text.contains("soakd_visibility_seconds_bucket{"), "{text}");
        assert!(!text.contains("soakd_visibility_pending{"), "{text}");
    }
}
