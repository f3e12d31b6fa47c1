//! `follow:` stages' series: the signal each read, the rate it set, and the reads that
//! failed — per scenario with a `follow:` stage (bounded by the config's scenarios).

use super::scenario::ScenarioLabel;
use crate::metrics::common::{register, FloatGauge};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub struct FollowFamily {
    signal: Family<ScenarioLabel, FloatGauge>,
    rate: Family<ScenarioLabel, FloatGauge>,
    errors: Family<ScenarioLabel, Counter>,
}

/// One scenario's series.
pub struct FollowSeries {
    pub signal: FloatGauge,
    pub rate: FloatGauge,
    pub errors: Counter,
}

impl FollowFamily {
    pub fn register(registry: &mut Registry) -> FollowFamily {
        let f = FollowFamily {
            signal: Family::default(),
            rate: Family::default(),
            errors: Family::default(),
        };
        register(
            registry,
            "soakd_follow_signal",
            "A follow: stage's query value at its last good read, before factor and bounds.",
            f.signal.clone(),
        );
        register(
            registry,
            "soakd_follow_rate",
            "The rate a follow: stage set at its last read, operations per second, for the whole fleet (each shard runs its share).",
            f.rate.clone(),
        );
        register(
            registry,
            "soakd_follow_errors_total",
            "Reads of a follow: stage's query that failed (Prometheus unreachable, the query refused, no series or more than one, not a number); the rate held or moved toward the fallback.",
            f.errors.clone(),
        );
        f
    }

    pub fn scenario(&self, scenario: &str) -> FollowSeries {
        let l = ScenarioLabel {
            scenario: scenario.to_string(),
        };
        FollowSeries {
            signal: self.signal.get_or_create(&l).clone(),
            rate: self.rate.get_or_create(&l).clone(),
            errors: self.errors.get_or_create(&l).clone(),
        }
    }
}
