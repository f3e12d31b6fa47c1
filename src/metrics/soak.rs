//! The soak's series: what is observed of each target, whether each source could be
//! read, its restarts, and each judged resource's trend per day and verdict. Labels are
//! bounded: targets and the resources of `soakd::observe` (a fixed set plus the names a
//! config gives, at most 32 per target), sources a fixed set of five.

use crate::metrics::common::{register, FloatGauge};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub target: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabels {
    pub target: String,
    pub resource: String,
    /// `estimate`, `lower` or `upper`.
    pub bound: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub target: String,
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetOnly {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpSeriesLabels {
    pub scenario: String,
    pub op: String,
    /// `p50_seconds`, `p95_seconds`, `p99_seconds`, `error_ratio` or `rate_per_second`.
    pub series: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpBoundLabels {
    pub scenario: String,
    pub op: String,
    pub series: String,
    pub bound: &'static str,
}

pub struct SoakFamily {
    op_trend: Family<OpBoundLabels, FloatGauge>,
    op_growing: Family<OpSeriesLabels, Gauge>,
    op_changes: Family<OpSeriesLabels, Counter>,
    observed: Family<ResourceLabels, FloatGauge>,
    up: Family<SourceLabels, Gauge>,
    errors: Family<SourceLabels, Counter>,
    restarts: Family<TargetOnly, Counter>,
    trend: Family<BoundLabels, FloatGauge>,
    growing: Family<ResourceLabels, Gauge>,
    changes: Family<ResourceLabels, Counter>,
}

impl SoakFamily {
    pub fn register(registry: &mut Registry) -> SoakFamily {
        let f = SoakFamily {
            op_trend: Family::default(),
            op_growing: Family::default(),
            op_changes: Family::default(),
            observed: Family::default(),
            up: Family::default(),
            errors: Family::default(),
            restarts: Family::default(),
            trend: Family::default(),
            growing: Family::default(),
            changes: Family::default(),
        };
        register(
            registry,
            "soakd_observed",
            "The latest value of a resource of the system under test (targets.NAME.observe); the resource's name carries its unit (docs/SOAK.md).",
            f.observed.clone(),
        );
        register(
            registry,
            "soakd_observe_up",
            "1 when the source's last read succeeded, 0 when it failed (the reason is on the page and in /api/v1/soak).",
            f.up.clone(),
        );
        register(
            registry,
            "soakd_observe_errors_total",
            "Reads of an observed source that failed.",
            f.errors.clone(),
        );
        register(
            registry,
            "soakd_target_restarts_total",
            "Restarts of the system under test seen by soakd (its pid or start time changed, or a counter reset).",
            f.restarts.clone(),
        );
        register(
            registry,
            "soakd_soak_trend_per_day",
            "A judged resource's trend per day relative to its level (0.01 = 1 %/day): the estimate and the 95 % interval's lower and upper bounds.",
            f.trend.clone(),
        );
        register(
            registry,
            "soakd_soak_growing",
            "1 when the soak judge finds the resource growing (the interval above zero and the estimate above soak.growth), else 0.",
            f.growing.clone(),
        );
        register(
            registry,
            "soakd_soak_change_points_total",
            "Level shifts the soak judge found in a resource (confirmed, never withdrawn); each with its time, size and probable cause in /api/v1/soak.",
            f.changes.clone(),
        );
        register(
            registry,
            "soakd_soak_op_trend_per_day",
            "The trend per day of soakd's own series of an op (its latency quantiles and achieved rate relative to their level, 0.01 = 1 %/day; its error ratio absolute): the estimate and the 95 % interval's bounds.",
            f.op_trend.clone(),
        );
        register(
            registry,
            "soakd_soak_op_growing",
            "1 when the soak judge finds one of an op's own series growing, else 0.",
            f.op_growing.clone(),
        );
        register(
            registry,
            "soakd_soak_op_change_points_total",
            "Level shifts found in one of an op's own series (confirmed, never withdrawn); each with its time, size and probable cause in /api/v1/soak.",
            f.op_changes.clone(),
        );
        f
    }

    fn op_labels(scenario: &str, op: &str, series: &str) -> OpSeriesLabels {
        OpSeriesLabels {
            scenario: scenario.to_string(),
            op: op.to_string(),
            series: series.to_string(),
        }
    }

    pub fn op_change_point(&self, scenario: &str, op: &str, series: &str) {
        self.op_changes
            .get_or_create(&Self::op_labels(scenario, op, series))
            .inc();
    }

    /// The trend of one of an op's series (None: no trend yet).
    pub fn set_op_trend(
        &self,
        scenario: &str,
        op: &str,
        series: &str,
        trend: Option<(f64, f64, f64)>,
        growing: bool,
    ) {
        for (bound, i) in [("estimate", 0), ("lower", 1), ("upper", 2)] {
            let l = OpBoundLabels {
                scenario: scenario.to_string(),
                op: op.to_string(),
                series: series.to_string(),
                bound,
            };
            match trend {
                Some(t) => {
                    self.op_trend.get_or_create(&l).set([t.0, t.1, t.2][i]);
                }
                None => {
                    self.op_trend.remove(&l);
                }
            }
        }
        let l = Self::op_labels(scenario, op, series);
        self.op_growing.get_or_create(&l).set(i64::from(growing));
        let _ = self.op_changes.get_or_create(&l);
    }

    pub fn change_point(&self, target: &str, resource: &str) {
        self.changes
            .get_or_create(&ResourceLabels {
                target: target.to_string(),
                resource: resource.to_string(),
            })
            .inc();
    }

    /// A target's sources start `up` at 1 and their error counters at 0.
    pub fn target(&self, target: &str, sources: &[&'static str]) {
        for s in sources {
            let l = SourceLabels {
                target: target.to_string(),
                source: s,
            };
            let _ = self.errors.get_or_create(&l);
        }
        let _ = self.restarts.get_or_create(&TargetOnly {
            target: target.to_string(),
        });
    }

    pub fn set_observed(&self, target: &str, resource: &str, v: f64) {
        self.observed
            .get_or_create(&ResourceLabels {
                target: target.to_string(),
                resource: resource.to_string(),
            })
            .set(v);
    }

    pub fn source_read(&self, target: &str, source: &'static str, ok: bool) {
        let l = SourceLabels {
            target: target.to_string(),
            source,
        };
        self.up.get_or_create(&l).set(i64::from(ok));
        if !ok {
            self.errors.get_or_create(&l).inc();
        }
    }

    pub fn restarted(&self, target: &str) {
        self.restarts
            .get_or_create(&TargetOnly {
                target: target.to_string(),
            })
            .inc();
    }

    /// The trend of a judged resource (None: no relative trend, the series removed).
    pub fn set_trend(
        &self,
        target: &str,
        resource: &str,
        trend: Option<(f64, f64, f64)>,
        growing: bool,
    ) {
        for (bound, i) in [("estimate", 0), ("lower", 1), ("upper", 2)] {
            let l = BoundLabels {
                target: target.to_string(),
                resource: resource.to_string(),
                bound,
            };
            match trend {
                Some(t) => {
                    self.trend.get_or_create(&l).set([t.0, t.1, t.2][i]);
                }
                None => {
                    self.trend.remove(&l);
                }
            }
        }
        let l = ResourceLabels {
            target: target.to_string(),
            resource: resource.to_string(),
        };
        self.growing.get_or_create(&l).set(i64::from(growing));
        // Counted from 0 once a resource is judged, so an alert's increase() sees the first.
        let _ = self.changes.get_or_create(&l);
    }

    /// Drops every series of a target no longer observed.
    pub fn forget(&self, target: &str, resources: &[String], sources: &[&'static str]) {
        for r in resources {
            let l = ResourceLabels {
                target: target.to_string(),
                resource: r.clone(),
            };
            self.observed.remove(&l);
            self.growing.remove(&l);
            self.changes.remove(&l);
            for bound in ["estimate", "lower", "upper"] {
                self.trend.remove(&BoundLabels {
                    target: target.to_string(),
                    resource: r.clone(),
                    bound,
                });
            }
        }
        for s in sources {
            let l = SourceLabels {
                target: target.to_string(),
                source: s,
            };
            self.up.remove(&l);
            self.errors.remove(&l);
        }
        self.restarts.remove(&TargetOnly {
            target: target.to_string(),
        });
    }
}
