//! The rolling SLO series (`soakd::slo` evaluates them once a second): whether each
//! scenario with an `slo:` meets it over its window, the error budget's burn rate over
//! 5 minutes and 1 hour, and the seconds spent in breach.

use super::scenario::ScenarioLabel;
use crate::metrics::common::{register, FloatGauge, IntGauge};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The burn-rate windows, as their label values.
pub const BURN_WINDOWS: [&str; 2] = ["5m", "1h"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BurnLabels {
    pub scenario: String,
    pub window: String,
}

/// One scenario's handles.
#[derive(Clone)]
pub struct SloMetrics {
    pub ok: IntGauge,
    /// By [`BURN_WINDOWS`], in order.
    pub burn_rate: [FloatGauge; 2],
    pub breached_seconds: Counter<f64, AtomicU64>,
}

/// The SLO series, registered once per registry.
pub struct SloFamily {
    ok: Family<ScenarioLabel, IntGauge>,
    burn_rate: Family<BurnLabels, FloatGauge>,
    breached_seconds: Family<ScenarioLabel, Counter<f64, AtomicU64>>,
}

impl SloFamily {
    pub fn register(registry: &mut Registry) -> SloFamily {
        let f = SloFamily {
            ok: Family::default(),
            burn_rate: Family::default(),
            breached_seconds: Family::default(),
        };
        register(
            registry,
            "soakd_slo_ok",
            "1 while the scenario meets every objective of its slo over slo.window, 0 while it does not.",
            f.ok.clone(),
        );
        register(
            registry,
            "soakd_slo_burn_rate",
            "Error ratio over the window divided by slo.error_rate: 1 spends the error budget exactly as fast as the objective allows.",
            f.burn_rate.clone(),
        );
        register(
            registry,
            "soakd_slo_breached_seconds_total",
            "Seconds during which soakd_slo_ok was 0.",
            f.breached_seconds.clone(),
        );
        f
    }

    /// The handles of `scenario` (created on first use; the same series across reloads).
    pub fn scenario(&self, scenario: &str) -> SloMetrics {
        let label = ScenarioLabel {
            scenario: scenario.to_string(),
        };
        let burn = |w: &str| {
            self.burn_rate.get_or_create_owned(&BurnLabels {
                scenario: scenario.to_string(),
                window: w.to_string(),
            })
        };
        SloMetrics {
            ok: self.ok.get_or_create_owned(&label),
            burn_rate: [burn(BURN_WINDOWS[0]), burn(BURN_WINDOWS[1])],
            breached_seconds: self.breached_seconds.get_or_create_owned(&label),
        }
    }
}
