//! The capacity search on Prometheus: the current level's rate per searched scenario and
//! the levels judged by verdict (the controller sets them; the dashboards annotate with
//! them), and the verdicts across runs (`soakd::capacity::watch` keeps them in step with
//! the results store): the latest finished run's maximum sustainable level per searched
//! scenario, the baseline's, the tolerance, and per scenario whether the latest run
//! regressed against the baseline by the comparison's tests (what `CapacityRegressed`
//! fires on).

use super::scenario::ScenarioLabel;
use crate::metrics::common::{register, FloatGauge};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// One per-scenario gauge family and the scenarios it has series for.
struct PerScenario {
    family: Family<ScenarioLabel, FloatGauge>,
    shown: parking_lot::Mutex<Vec<String>>,
}

impl PerScenario {
    fn new() -> PerScenario {
        PerScenario {
            family: Family::default(),
            shown: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// Sets the series to exactly `values`: scenarios no longer in it go, the others
    /// are updated in place (never absent from a scrape in between).
    fn set(&self, values: &[(String, f64)]) {
        let mut shown = self.shown.lock();
        for gone in shown
            .iter()
            .filter(|s| !values.iter().any(|(n, _)| n == *s))
        {
            self.family.remove(&ScenarioLabel {
                scenario: gone.clone(),
            });
        }
        for (scenario, v) in values {
            self.family
                .get_or_create(&ScenarioLabel {
                    scenario: scenario.clone(),
                })
                .set(*v);
        }
        *shown = values.iter().map(|(n, _)| n.clone()).collect();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    pub verdict: String,
}

/// The `verdict` label's values.
pub const VERDICTS: [&str; 3] = ["pass", "fail", "invalid"];

pub struct CapacityFamily {
    max_sustainable: PerScenario,
    baseline: PerScenario,
    regressed: PerScenario,
    /// The runs and tolerance `regressed` was judged for.
    regressed_key: parking_lot::Mutex<Option<String>>,
    tolerance: FloatGauge,
    level_rate: Family<ScenarioLabel, FloatGauge>,
    levels: Family<VerdictLabel, Counter>,
}

impl CapacityFamily {
    pub fn register(registry: &mut Registry) -> CapacityFamily {
        let f = CapacityFamily {
            max_sustainable: PerScenario::new(),
            baseline: PerScenario::new(),
            regressed: PerScenario::new(),
            regressed_key: parking_lot::Mutex::new(None),
            tolerance: FloatGauge::default(),
            level_rate: Family::default(),
            levels: Family::default(),
        };
        for v in VERDICTS {
            // Every verdict's series from the start, so that increase() sees the first.
            drop(f.levels.get_or_create(&VerdictLabel {
                verdict: v.to_string(),
            }));
        }
        register(
            registry,
            "soakd_capacity_max_sustainable",
            "The latest finished capacity run's highest level within the SLO, in operations per second (0: no level passed). Isolated searches only.",
            f.max_sustainable.family.clone(),
        );
        register(
            registry,
            "soakd_capacity_baseline",
            "The baseline run's highest level within the SLO, in operations per second (soakd report --set-baseline).",
            f.baseline.family.clone(),
        );
        register(
            registry,
            "soakd_capacity_regressed",
            "1 when the latest finished capacity run regressed against the baseline run for this scenario (soakd report --compare baseline latest: its block tests and minimum effects, the tolerance), else 0.",
            f.regressed.family.clone(),
        );
        register(
            registry,
            "soakd_capacity_regression_tolerance",
            "search.regression_tolerance: how far below the baseline the latest run may be before it counts as regressed.",
            f.tolerance.clone(),
        );
        register(
            registry,
            "soakd_capacity_level_rate",
            "The rate a running capacity search offers a searched scenario at its current level, operations per second (0: held idle, or no level running).",
            f.level_rate.clone(),
        );
        register(
            registry,
            "soakd_capacity_levels_total",
            "Capacity-search levels judged, by verdict (pass, fail, invalid).",
            f.levels.clone(),
        );
        f
    }

    /// The current level's rate of `scenario` (0 after the search).
    pub fn set_level_rate(&self, scenario: &str, rate: f64) {
        self.level_rate
            .get_or_create(&ScenarioLabel {
                scenario: scenario.to_string(),
            })
            .set(rate);
    }

    /// A level was judged `verdict` (one of [`VERDICTS`]).
    pub fn count_level(&self, verdict: &str) {
        self.levels
            .get_or_create(&VerdictLabel {
                verdict: verdict.to_string(),
            })
            .inc();
    }

    pub fn set_latest(&self, values: &[(String, f64)]) {
        self.max_sustainable.set(values);
    }

    pub fn set_baseline(&self, values: &[(String, f64)]) {
        self.baseline.set(values);
    }

    /// Per scenario, 1 regressed or 0 not; empty without both a baseline and a latest.
    /// `key` names the runs and tolerance judged (so they are judged once).
    pub fn set_regressed(&self, values: &[(String, f64)], key: Option<String>) {
        self.regressed.set(values);
        *self.regressed_key.lock() = key;
    }

    pub fn regressed_key(&self) -> Option<String> {
        self.regressed_key.lock().clone()
    }

    pub fn set_tolerance(&self, t: f64) {
        self.tolerance.set(t);
    }
}
