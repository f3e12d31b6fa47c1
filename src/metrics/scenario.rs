//! The scenario family: operations, errors and latency per op, and the schedule per
//! scenario (target rate, lag, in flight, dropped arrivals).
//!
//! Handles are resolved once per scenario ([`ScenarioFamily::scenario`]), so the hot
//! path increments counters and observes histograms without looking up labels; error
//! counters are resolved on a kind's first error and cached.

use super::histogram::Histogram;
use super::quantiles::{QuantileCollector, WindowSet};
use super::window::{Cursor, Window};
use crate::metrics::common::{
    histograms, register, Counter, FloatGauge, IntGauge, DURATION_BUCKETS, LAG_BUCKETS,
};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Labels of per-op series (in the order the exposition has always listed them).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
    pub scenario: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub op: String,
    pub scenario: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScenarioLabel {
    pub scenario: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub scenario: String,
    pub target: String,
    pub target_type: String,
}

/// Per error kind: its counter for each op (resolved on the op's first error of that kind)
/// and the count over all ops.
type ErrorsByKind = HashMap<String, (Vec<Option<Counter>>, u64)>;

type HistogramFamily<S> = Family<S, Histogram, super::histogram::WithBounds>;

/// The scenario series, registered once per registry.
pub struct ScenarioFamily {
    requests: Family<OpLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: HistogramFamily<OpLabels>,
    lag: HistogramFamily<ScenarioLabel>,
    target_rate: Family<ScenarioLabel, FloatGauge>,
    in_flight: Family<ScenarioLabel, IntGauge>,
    max_in_flight: Family<ScenarioLabel, IntGauge>,
    dropped: Family<ScenarioLabel, Counter>,
    scenario_info: Family<InfoLabels, IntGauge>,
    /// Every error series created, so that a reload can remove a gone op's (bounded by
    /// scenarios × ops × kinds).
    error_series: Arc<Mutex<Vec<ErrorLabels>>>,
    /// The labels each scenario's info series has now, to replace or remove it.
    info_now: Mutex<HashMap<String, InfoLabels>>,
    /// The rolling windows behind `soakd_request_duration_quantile_seconds`.
    pub windows: Arc<WindowSet>,
}

/// Per-scenario handles, resolved once so the hot path never looks up labels.
pub struct ScenarioMetrics {
    pub scenario: String,
    pub target_rate: FloatGauge,
    pub in_flight: IntGauge,
    pub max_in_flight: IntGauge,
    pub dropped: Counter,
    pub lag: Histogram,
    pub ops: Vec<OpMetrics>,
    errors: Family<ErrorLabels, Counter>,
    error_series: Arc<Mutex<Vec<ErrorLabels>>>,
    /// Error counters by kind, one per op, resolved on a kind's first error; and the
    /// counts for the status API (kinds are a bounded set).
    errors_by_kind: Mutex<ErrorsByKind>,
}

pub struct OpMetrics {
    pub op: String,
    pub requests: Counter,
    pub duration: Histogram,
    pub window: Arc<Window>,
}

/// One reader's cursors over a scenario's op windows ([`Window::since`] per op), kept
/// across reloads that add or remove ops.
#[derive(Default)]
pub struct OpCursors(Vec<(String, Cursor)>);

impl OpCursors {
    /// Hands `each` what every op window recorded since the last call.
    pub fn read(
        &mut self,
        ops: &[OpMetrics],
        now: Instant,
        each: impl FnMut(&hdrhistogram::Histogram<u64>),
    ) {
        let windows: Vec<(&str, &Window)> =
            ops.iter().map(|o| (o.op.as_str(), &*o.window)).collect();
        self.read_windows(&windows, now, each);
    }

    /// [`OpCursors::read`] over any op windows (by op name).
    pub fn read_windows(
        &mut self,
        windows: &[(&str, &Window)],
        now: Instant,
        mut each: impl FnMut(&hdrhistogram::Histogram<u64>),
    ) {
        self.0
            .retain(|(op, _)| windows.iter().any(|(name, _)| name == op));
        for (name, w) in windows {
            let i = match self.0.iter().position(|(op, _)| op == name) {
                Some(i) => i,
                None => {
                    self.0.push((name.to_string(), Cursor::default()));
                    self.0.len() - 1
                }
            };
            each(&w.since_at(&mut self.0[i].1, now));
        }
    }

    /// Ops with a cursor.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn scenario_label(s: &str) -> ScenarioLabel {
    ScenarioLabel {
        scenario: s.to_string(),
    }
}

fn op_labels(scenario: &str, op: &str) -> OpLabels {
    OpLabels {
        op: op.to_string(),
        scenario: scenario.to_string(),
    }
}

impl ScenarioFamily {
    pub fn register(registry: &mut Registry, quantile_window: Duration) -> ScenarioFamily {
        let f = ScenarioFamily {
            requests: Family::default(),
            errors: Family::default(),
            duration: histograms(DURATION_BUCKETS),
            lag: histograms(LAG_BUCKETS),
            target_rate: Family::default(),
            in_flight: Family::default(),
            max_in_flight: Family::default(),
            dropped: Family::default(),
            scenario_info: Family::default(),
            error_series: Arc::new(Mutex::new(Vec::new())),
            info_now: Mutex::new(HashMap::new()),
            windows: Arc::new(WindowSet {
                length: quantile_window,
                map: Mutex::new(HashMap::new()),
            }),
        };
        register(
            registry,
            "soakd_requests_total",
            "Operations completed (any outcome).",
            f.requests.clone(),
        );
        register(
            registry,
            "soakd_request_errors_total",
            "Operations that failed, by error kind.",
            f.errors.clone(),
        );
        register(
            registry,
            "soakd_request_duration_seconds",
            "Operation latency measured from the intended start time (coordinated omission corrected).",
            f.duration.clone(),
        );
        register(
            registry,
            "soakd_schedule_lag_seconds",
            "Actual start minus intended start of each operation.",
            f.lag.clone(),
        );
        register(
            registry,
            "soakd_target_rate",
            "Operations per second the schedule (or an override) asks for now.",
            f.target_rate.clone(),
        );
        register(
            registry,
            "soakd_in_flight",
            "Operations started and not yet finished.",
            f.in_flight.clone(),
        );
        register(
            registry,
            "soakd_max_in_flight",
            "The scenario's cap on in-flight operations.",
            f.max_in_flight.clone(),
        );
        register(
            registry,
            "soakd_dropped_iterations_total",
            "Arrivals not started because max_in_flight was reached or the generator fell more than 1s behind.",
            f.dropped.clone(),
        );
        register(
            registry,
            "soakd_scenario_info",
            "Always 1 per running scenario; labels say which target and target type (http, grpc, postgres) it loads, so rules can treat API and event scenarios apart.",
            f.scenario_info.clone(),
        );
        registry.register_collector(Box::new(QuantileCollector::new(f.windows.clone())));
        f
    }

    /// Handles for a scenario and its ops. Asking again for the same names returns the
    /// same series and windows, so a reload keeps counters and histograms.
    pub fn scenario(&self, scenario: &str, ops: &[&str]) -> ScenarioMetrics {
        let s = scenario_label(scenario);
        ScenarioMetrics {
            scenario: scenario.to_string(),
            target_rate: self.target_rate.get_or_create_owned(&s),
            in_flight: self.in_flight.get_or_create_owned(&s),
            max_in_flight: self.max_in_flight.get_or_create_owned(&s),
            dropped: self.dropped.get_or_create_owned(&s),
            lag: self.lag.get_or_create_owned(&s),
            ops: ops
                .iter()
                .map(|op| {
                    let l = op_labels(scenario, op);
                    OpMetrics {
                        op: op.to_string(),
                        requests: self.requests.get_or_create_owned(&l),
                        duration: self.duration.get_or_create_owned(&l),
                        window: self.windows.get(scenario, op),
                    }
                })
                .collect(),
            errors: self.errors.clone(),
            error_series: self.error_series.clone(),
            errors_by_kind: Mutex::new(HashMap::new()),
        }
    }

    /// Marks `scenario` as loading `target` of `target_type`, replacing what it loaded before.
    pub fn set_scenario_info(&self, scenario: &str, target: &str, target_type: &str) {
        let labels = InfoLabels {
            scenario: scenario.to_string(),
            target: target.to_string(),
            target_type: target_type.to_string(),
        };
        let mut now = self.info_now.lock();
        if let Some(old) = now.insert(scenario.to_string(), labels.clone()) {
            self.scenario_info.remove(&old);
        }
        self.scenario_info.get_or_create(&labels).set(1);
    }

    /// Forget the series of ops (or a whole scenario) that a reload removed.
    pub fn remove(&self, scenario: &str, ops: &[String], whole_scenario: bool) {
        let mut w = self.windows.map.lock();
        for op in ops {
            w.remove(&(scenario.to_string(), op.clone()));
            let l = op_labels(scenario, op);
            self.requests.remove(&l);
            self.duration.remove(&l);
        }
        drop(w);
        // Error series of the removed ops, whatever their kinds.
        self.error_series.lock().retain(|l| {
            let gone = l.scenario == scenario && ops.contains(&l.op);
            if gone {
                self.errors.remove(l);
            }
            !gone
        });
        if whole_scenario {
            if let Some(old) = self.info_now.lock().remove(scenario) {
                self.scenario_info.remove(&old);
            }
            let s = scenario_label(scenario);
            self.target_rate.remove(&s);
            self.in_flight.remove(&s);
            self.max_in_flight.remove(&s);
        }
    }
}

impl ScenarioMetrics {
    pub fn record_error(&self, op: usize, kind: &str) {
        let mut by_kind = self.errors_by_kind.lock();
        if !by_kind.contains_key(kind) {
            by_kind.insert(kind.to_string(), (vec![None; self.ops.len()], 0));
        }
        let Some(entry) = by_kind.get_mut(kind) else {
            return;
        };
        entry.1 += 1;
        let Some(o) = self.ops.get(op) else { return };
        if let Some(slot) = entry.0.get_mut(op) {
            slot.get_or_insert_with(|| {
                let labels = ErrorLabels {
                    kind: kind.to_string(),
                    op: o.op.clone(),
                    scenario: self.scenario.clone(),
                };
                let mut series = self.error_series.lock();
                if !series.contains(&labels) {
                    series.push(labels.clone());
                }
                self.errors.get_or_create_owned(&labels)
            })
            .inc();
        }
    }

    /// Creates op `op`'s error series of these kinds at 0, without counting anything:
    /// they are exported from the start (and removed with the op like any other).
    pub fn preset_errors(&self, op: usize, kinds: &[&str]) {
        let Some(o) = self.ops.get(op) else { return };
        let mut series = self.error_series.lock();
        for kind in kinds {
            let labels = ErrorLabels {
                kind: kind.to_string(),
                op: o.op.clone(),
                scenario: self.scenario.clone(),
            };
            let _ = self.errors.get_or_create_owned(&labels);
            if !series.contains(&labels) {
                series.push(labels);
            }
        }
    }

    pub fn errors_by_kind(&self) -> Vec<(String, u64)> {
        let mut v: Vec<_> = self
            .errors_by_kind
            .lock()
            .iter()
            .map(|(k, (_, n))| (k.clone(), *n))
            .collect();
        v.sort();
        v
    }

    /// Errors of op `op` so far, every kind: the exported counters, which a reload
    /// keeps (read off the hot path: the soak's thread, once per resolution).
    pub fn op_errors(&self, op: usize) -> u64 {
        self.op_errors_by_kind(op).iter().map(|(_, n)| n).sum()
    }

    /// Op `op`'s errors so far by kind (the exported counters; off the hot path).
    pub fn op_errors_by_kind(&self, op: usize) -> Vec<(String, u64)> {
        let Some(o) = self.ops.get(op) else {
            return Vec::new();
        };
        let labels: Vec<ErrorLabels> = self
            .error_series
            .lock()
            .iter()
            .filter(|l| l.op == o.op)
            .cloned()
            .collect();
        labels
            .iter()
            .map(|l| (l.kind.clone(), self.errors.get_or_create(l).get()))
            .collect()
    }

    /// Carry error counts over from the handles this replaces (on reload).
    pub fn inherit_errors(&self, old: &ScenarioMetrics) {
        let old = old.errors_by_kind.lock();
        let mut mine = self.errors_by_kind.lock();
        for (kind, (_, n)) in old.iter() {
            mine.entry(kind.clone())
                .or_insert_with(|| (vec![None; self.ops.len()], 0))
                .1 = *n;
        }
    }

    /// Latency quantiles over the window, all ops merged.
    pub fn window_quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        super::window::merged_quantiles(self.ops.iter().map(|o| &*o.window), qs)
    }
}
