//! The guardrails' series (`soakd::engine::guard` decides, the SLO evaluator acts and
//! counts): every action by kind, and the factor the guard holds a scenario's rate at.

use super::scenario::ScenarioLabel;
use crate::metrics::common::{register, FloatGauge};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The `action` label's values (`engine::guard::GuardEvent::as_str`).
pub const ACTIONS: [&str; 6] = [
    "step_down",
    "pause",
    "recover",
    "resume",
    "suspend",
    "revert",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub scenario: String,
    pub action: String,
}

pub struct GuardFamily {
    actions: Family<ActionLabels, Counter>,
    factor: Family<ScenarioLabel, FloatGauge>,
}

impl GuardFamily {
    pub fn register(registry: &mut Registry) -> GuardFamily {
        let f = GuardFamily {
            actions: Family::default(),
            factor: Family::default(),
        };
        register(
            registry,
            "soakd_guard_actions_total",
            "Actions of a scenario's guard: step_down, pause (its SLO broken for guard.for), recover, resume (held for guard.recover_after), suspend (a capacity search took over), revert (the control API).",
            f.actions.clone(),
        );
        register(
            registry,
            "soakd_guard_rate_factor",
            "The factor a scenario's guard holds its rate at: 1 untouched, 0.5 after one 50% step down, 0 while paused by the guard.",
            f.factor.clone(),
        );
        f
    }

    /// Creates the scenario's series (every action at 0, factor 1) so that rates and
    /// annotations see the first action.
    pub fn scenario(&self, scenario: &str) {
        for a in ACTIONS {
            self.action(scenario, a);
        }
        self.set_factor(scenario, 1.0);
    }

    fn action(&self, scenario: &str, action: &str) -> Counter {
        self.actions.get_or_create_owned(&ActionLabels {
            scenario: scenario.to_string(),
            action: action.to_string(),
        })
    }

    pub fn count(&self, scenario: &str, action: &str) {
        self.action(scenario, action).inc();
    }

    pub fn set_factor(&self, scenario: &str, factor: f64) {
        self.factor
            .get_or_create(&ScenarioLabel {
                scenario: scenario.to_string(),
            })
            .set(factor);
    }
}
