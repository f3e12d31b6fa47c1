//! What `/api/v1/status` says of each scenario: typed, so the page, the run summary and
//! the tests read the same fields, and the JSON Schema in `web/schema/` checks them.

use super::state::ScenarioState;
use crate::metrics::window::merged_quantiles;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// What a scenario is doing, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    #[serde(rename = "running")]
    Running,
    /// Paused through the control API.
    #[serde(rename = "paused")]
    Paused,
    /// Paused by its guardrail (`guard: {action: pause}`).
    #[serde(rename = "paused by guard")]
    PausedByGuard,
    /// Removed by a reload (or shutting down): no new operations, in-flight ones finish.
    #[serde(rename = "draining")]
    Draining,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioStatus {
    pub name: String,
    pub target: String,
    pub state: RunState,
    pub stage: String,
    pub stage_remaining_seconds: Option<f64>,
    pub target_rate: f64,
    pub rate_override: Option<f64>,
    pub achieved_rate: f64,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub started_total: u64,
    pub requests_total: u64,
    pub dropped_total: u64,
    /// Over the rolling quantile window, all ops merged; null when nothing finished.
    pub latency_seconds: Latency,
    pub errors: BTreeMap<String, u64>,
    /// Scenarios with visibility ops: their probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<VisibilityStatus>,
    pub ops: Vec<OpStatus>,
}

/// A scenario's visibility probes now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VisibilityStatus {
    pub pending: usize,
    pub max_pending: usize,
    /// Writes seen visible, and polls sent, since the start.
    pub visible_total: u64,
    pub polls_total: u64,
    /// Write to visible over the rolling quantile window, all visibility ops merged.
    pub latency_seconds: Latency,
}

/// Quantiles over a window; each null when nothing finished in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    /// How far back the quantiles reach (the rolling window's length).
    pub window_seconds: f64,
}

impl Latency {
    fn of(q: &[Option<f64>], window_seconds: f64) -> Latency {
        Latency {
            p50: q[0],
            p95: q[1],
            p99: q[2],
            window_seconds,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpStatus {
    pub name: String,
    pub weight: u32,
}

/// How the last reload went, for the page's header and the status API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadState {
    pub successful: bool,
    /// Unix milliseconds of the last load or reload attempt.
    pub at_ms: i64,
    /// Every error of the last attempt, when it was rejected.
    pub errors: Vec<String>,
}

const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];

impl ScenarioState {
    pub fn run_state(&self) -> RunState {
        if self.draining.load(Ordering::Relaxed) {
            RunState::Draining
        } else if self.paused.load(Ordering::Relaxed) {
            RunState::Paused
        } else if self.guard.paused() {
            RunState::PausedByGuard
        } else {
            RunState::Running
        }
    }

    pub fn status(&self) -> ScenarioStatus {
        let plan = self.plan();
        let (rate, at) = self.current();
        let window = plan
            .metrics
            .ops
            .first()
            .map_or(0.0, |o| o.window.span().as_secs_f64());
        let q = plan.metrics.window_quantiles(&QUANTILES);
        let requests_total: u64 = plan.metrics.ops.iter().map(|o| o.requests.get()).sum();
        ScenarioStatus {
            name: self.name.clone(),
            target: plan.scenario.target.clone(),
            state: self.run_state(),
            stage: at
                .map(|a| plan.schedule.describe_at(&a))
                .unwrap_or_else(|| "starting".into()),
            stage_remaining_seconds: at.and_then(|a| a.remaining).map(|d| d.as_secs_f64()),
            target_rate: rate,
            rate_override: self.rate_override(),
            achieved_rate: self.achieved_rate(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_in_flight: plan.max_in_flight,
            started_total: self.started.load(Ordering::Relaxed),
            requests_total,
            dropped_total: self.dropped.load(Ordering::Relaxed),
            latency_seconds: Latency::of(&q, window),
            errors: plan.metrics.errors_by_kind().into_iter().collect(),
            visibility: plan.pending_gauge.as_ref().map(|_| {
                let probes = plan.probes.iter().flatten();
                let q = merged_quantiles(probes.clone().map(|p| &*p.metrics.window), &QUANTILES);
                let window = probes
                    .clone()
                    .next()
                    .map_or(window, |p| p.metrics.window.span().as_secs_f64());
                VisibilityStatus {
                    pending: self.pending.load(Ordering::Relaxed),
                    max_pending: plan.scenario.max_pending,
                    visible_total: probes.clone().map(|p| p.metrics.seconds.count()).sum(),
                    polls_total: probes.map(|p| p.metrics.polls.get()).sum(),
                    latency_seconds: Latency::of(&q, window),
                }
            }),
            ops: plan
                .scenario
                .ops
                .iter()
                .map(|o| OpStatus {
                    name: o.name.clone(),
                    weight: o.weight,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_serialise_to_the_strings_the_api_always_gave() {
        let got: Vec<String> = [
            RunState::Running,
            RunState::Paused,
            RunState::PausedByGuard,
            RunState::Draining,
        ]
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
        assert_eq!(
            got,
            [
                "\"running\"",
                "\"paused\"",
                "\"paused by guard\"",
                "\"draining\""
            ]
        );
        let back: RunState = serde_json::from_str("\"paused by guard\"").unwrap();
        assert_eq!(back, RunState::PausedByGuard);
    }
}
