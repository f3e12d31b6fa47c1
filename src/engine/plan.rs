//! A scenario's [`Plan`]: everything its runner and operations need, built from the
//! config before anything is swapped in, and replaced whole on reload.

use super::visibility::{self, Probe};
use crate::config::{Arrival, Config, OpKind, Scenario, Target};
use crate::drivers::{self, Driver, DriverError, TargetClient};
use crate::metrics::{IntGauge, Metrics, PhaseMetrics, ScenarioMetrics};
use crate::pg::writer::BufferedWriter;
use crate::schedule::Schedule;
use crate::template::Fixture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What a runner needs to run a scenario; replaced whole on reload.
pub struct Plan {
    pub generation: u64,
    pub scenario: Scenario,
    pub schedule: Schedule,
    pub poisson: bool,
    /// `arrival: closed`: max_in_flight workers back to back instead of a clock.
    pub closed: bool,
    pub max_in_flight: usize,
    cumulative_weights: Vec<u32>,
    pub total_weight: u32,
    pub op_timeouts: Vec<Duration>,
    pub fixtures: Vec<Fixture>,
    pub driver: Arc<dyn Driver>,
    pub metrics: Arc<ScenarioMetrics>,
    /// The target has `trace: on`: each iteration gets a trace, marked sampled with
    /// this probability.
    pub trace: Option<f64>,
    /// Per op, its HTTP phase handles (HTTP ops only).
    pub phases: Vec<Option<PhaseMetrics>>,
    /// Per op, its visibility probe (ops with `visibility:` only).
    pub probes: Vec<Option<Arc<Probe>>>,
    /// `soakd_visibility_pending` of the scenario, when an op has a probe.
    pub pending_gauge: Option<IntGauge>,
}

impl Plan {
    /// The op for a uniform draw `r` in `0..total_weight`.
    pub fn pick_op(&self, r: u32) -> usize {
        pick(&self.cumulative_weights, r)
    }
}

/// The index `r` falls in, given running sums of weights (ops of weight 0 never drawn).
fn pick(cumulative: &[u32], r: u32) -> usize {
    cumulative
        .partition_point(|&c| c <= r)
        .min(cumulative.len().saturating_sub(1))
}

/// Running sums of the ops' weights: op i is drawn for `r` in `[c[i-1], c[i])`.
fn cumulative(weights: impl Iterator<Item = u32>) -> Vec<u32> {
    weights
        .scan(0u32, |acc, w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// Builds `sc`'s plan against the clients (and its writer) the apply prepared. Fails only
/// on what a driver or a probe cannot build; nothing is started.
pub(super) fn build(
    metrics: &Metrics,
    cfg: &Config,
    sc: &Scenario,
    clients: &HashMap<String, (Target, TargetClient)>,
    buffer: Option<Arc<BufferedWriter>>,
    generation: u64,
    shard_divisor: f64,
) -> Result<Arc<Plan>, DriverError> {
    let (target, client) = clients.get(&sc.target).ok_or_else(|| DriverError::Build {
        target: sc.target.clone(),
        message: "no such target".into(),
    })?;
    let driver = drivers::build(target, client, &sc.ops, buffer, sc.timeout)?;
    let names: Vec<&str> = sc.ops.iter().map(|o| o.name.as_str()).collect();
    let scenario_metrics = Arc::new(metrics.scenarios.scenario(&sc.name, &names));
    scenario_metrics.max_in_flight.set(sc.max_in_flight as i64);
    for (i, op) in sc.ops.iter().enumerate() {
        let mut kinds = drivers::kind::expected(&op.kind, &target.kind);
        if op.visibility.is_some() {
            kinds.push(visibility::NOT_VISIBLE);
        }
        scenario_metrics.preset_errors(i, &kinds);
    }
    let cumulative_weights = cumulative(sc.ops.iter().map(|o| o.weight));
    let total_weight = cumulative_weights.last().copied().unwrap_or(0).max(1);
    let probes = visibility::probes(&sc.name, &sc.ops, clients, &metrics.visibility)?;
    let pending_gauge = probes
        .iter()
        .any(Option::is_some)
        .then(|| metrics.visibility.pending(&sc.name));
    let schedule = if shard_divisor > 1.0 {
        sc.schedule.scaled(1.0 / shard_divisor)
    } else {
        sc.schedule.clone()
    };
    Ok(Arc::new(Plan {
        generation,
        scenario: sc.clone(),
        schedule,
        poisson: sc.arrival == Arrival::Poisson,
        closed: sc.arrival == Arrival::Closed,
        max_in_flight: sc.max_in_flight,
        cumulative_weights,
        total_weight,
        op_timeouts: sc
            .ops
            .iter()
            .map(|o| o.timeout.unwrap_or(sc.timeout))
            .collect(),
        fixtures: cfg.fixtures.clone(),
        driver,
        metrics: scenario_metrics,
        trace: target.kind.trace_sampled(),
        phases: sc
            .ops
            .iter()
            .map(|o| matches!(o.kind, OpKind::Http(_)).then(|| metrics.http.op(&sc.name, &o.name)))
            .collect(),
        probes,
        pending_gauge,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_become_running_sums() {
        assert_eq!(cumulative([80, 20].into_iter()), vec![80, 100]);
        assert_eq!(cumulative([1, 0, 3].into_iter()), vec![1, 1, 4]);
        assert!(cumulative(std::iter::empty()).is_empty());
    }

    #[test]
    fn a_draw_picks_the_op_whose_share_it_falls_in() {
        let c = cumulative([80, 20].into_iter());
        assert_eq!(pick(&c, 0), 0);
        assert_eq!(pick(&c, 79), 0);
        assert_eq!(pick(&c, 80), 1);
        assert_eq!(pick(&c, 99), 1);
        // A zero-weight op is never drawn.
        let c = cumulative([1, 0, 3].into_iter());
        assert_eq!(
            (0..4).map(|r| pick(&c, r)).collect::<Vec<_>>(),
            [0, 2, 2, 2]
        );
    }
}
