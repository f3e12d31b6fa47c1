//! A sharded fleet's levels: with `verdicts.prometheus` the leader waits until
//! Prometheus has every shard, and replaces each level's own counts and latency by the
//! sums over the shards before judging.

use super::progress::SharedProgress;
use crate::capacity::record::{Quantiles, ScenarioLevel};
use crate::units::now_unix;
use std::collections::BTreeMap;
use std::time::Duration;

/// The Prometheus a leader judges levels from, and how long after a window it waits for
/// the scrapes that cover the window's end.
pub(super) struct Fleet {
    pub(super) prom: crate::promql::Prom,
    pub(super) settle: Duration,
    /// The shards whose sums make a whole level (the n of `--shard i/n`).
    pub(super) shards: u32,
}

/// A scenario's level as every shard ran it together: counts, errors, drops, in-flight
/// figures and latency from Prometheus's sums over the window (latency from the summed
/// histogram buckets, so at their resolution); the phases, pool and buffer stay the
/// leader's own.
pub(super) fn summed(sl: &mut ScenarioLevel, t: &crate::promql::WindowTotals) {
    let secs = sl.window_s.max(1e-9);
    let count = |v: f64| v.max(0.0).round() as u64;
    sl.completed = count(t.completed);
    sl.achieved_rate = t.started / secs;
    sl.errors = t
        .errors
        .iter()
        .map(|(k, v)| (k.clone(), count(*v)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let failed = t.errors.values().fold(0.0, |a, b| a + b);
    sl.error_ratio = if t.completed > 0.0 {
        (failed / t.completed).clamp(0.0, 1.0)
    } else {
        0.0
    };
    sl.dropped = count(t.dropped);
    sl.in_flight_peak = count(t.in_flight_peak) as usize;
    sl.max_in_flight = count(t.max_in_flight) as usize;
    sl.latency = Quantiles {
        p50: t.latency[0],
        p95: t.latency[1],
        p99: t.latency[2],
        p999: t.latency[3],
    };
    sl.lag_p99 = t.lag_p99;
    sl.shards = Some(t.instances);
}

impl Fleet {
    /// With `verdicts.prometheus`: replaces each scenario's own counts, errors, drops,
    /// in-flight figures and latency by the sums over every shard, once Prometheus has
    /// scraped past the window's end. Returns the scenarios it could not sum, with why.
    pub(super) async fn sum_shards(
        &self,
        scen: &mut [ScenarioLevel],
        start: f64,
        end: f64,
        run_id: &str,
    ) -> BTreeMap<String, String> {
        let (fleet, mut failed) = (self, BTreeMap::new());
        tokio::time::sleep(fleet.settle).await;
        for sl in scen.iter_mut() {
            match fleet.prom.window(&sl.scenario, start, end).await {
                Ok(t) if t.instances < fleet.shards => {
                    let why = format!(
                        "Prometheus had the series of {} of the {} shards",
                        t.instances, fleet.shards
                    );
                    tracing::warn!(run = %run_id, scenario = %sl.scenario, "capacity level: {why}");
                    failed.insert(sl.scenario.clone(), why);
                }
                Ok(t) => summed(sl, &t),
                Err(e) => {
                    tracing::warn!(run = %run_id, scenario = %sl.scenario, "capacity level: {e}");
                    failed.insert(sl.scenario.clone(), e.to_string());
                }
            }
        }
        failed
    }

    /// With `verdicts.prometheus`: waits until Prometheus has every shard's series of the
    /// searched scenarios, then two more scrapes, so that the first window's sums are
    /// whole (a shard not scraped yet would make a level look like load missing).
    pub(super) async fn wait_for_shards(
        &self,
        scenarios: &[&str],
        progress: &SharedProgress,
        run_id: &str,
    ) {
        let fleet = self;
        let mut logged = false;
        loop {
            let mut short = None;
            for name in scenarios {
                match fleet.prom.instances(name, now_unix()).await {
                    Ok(n) if n >= fleet.shards => {}
                    Ok(n) => {
                        short = Some(format!(
                            "it has the series of {n} of the {} shards",
                            fleet.shards
                        ));
                        break;
                    }
                    Err(e) => {
                        short = Some(e.to_string());
                        break;
                    }
                }
            }
            let Some(why) = short else { break };
            if !logged {
                tracing::warn!(run = %run_id, "capacity search: waiting for every shard in Prometheus: {why}");
                logged = true;
            }
            progress.lock().error = Some(format!("waiting for every shard in Prometheus: {why}"));
            tokio::time::sleep(fleet.settle).await;
        }
        progress.lock().error = None;
        tokio::time::sleep(fleet.settle * 2).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::WindowTotals;

    #[test]
    fn a_level_summed_over_the_shards_takes_their_counts_and_latency() {
        // The leader's own view: half the level, its own latency.
        let mut sl = ScenarioLevel {
            scenario: "api".into(),
            offered_rate: 120.0,
            achieved_rate: 60.0,
            window_s: 5.0,
            completed: 300,
            max_in_flight: 1000,
            latency: Quantiles {
                p95: Some(0.051),
                ..Default::default()
            },
            phases: BTreeMap::from([("first_byte".to_string(), 0.05)]),
            ..Default::default()
        };
        let t = WindowTotals {
            instances: 2,
            completed: 598.4,
            started: 601.0,
            errors: BTreeMap::from([
                ("timeout".to_string(), 5.6),
                ("status_5xx".to_string(), 0.2),
            ]),
            dropped: 2.0,
            in_flight_peak: 13.0,
            max_in_flight: 2000.0,
            latency: [Some(0.04), Some(0.0975), Some(0.1), None],
            lag_p99: Some(0.001),
        };
        summed(&mut sl, &t);
        assert_eq!(sl.shards, Some(2));
        assert_eq!(sl.completed, 598);
        assert!(
            (sl.achieved_rate - 120.2).abs() < 1e-9,
            "{}",
            sl.achieved_rate
        );
        // A kind whose increase rounds to nothing is left out; the ratio keeps the
        // fraction.
        assert_eq!(sl.errors, BTreeMap::from([("timeout".to_string(), 6)]));
        assert!((sl.error_ratio - 5.8 / 598.4).abs() < 1e-12);
        assert_eq!(
            (sl.dropped, sl.in_flight_peak, sl.max_in_flight),
            (2, 13, 2000)
        );
        assert_eq!(sl.latency.p95, Some(0.0975));
        assert_eq!(sl.latency.p999, None);
        assert_eq!(sl.lag_p99, Some(0.001));
        // What only the leader measures stays its own.
        assert_eq!(sl.phases.get("first_byte"), Some(&0.05));
        assert_eq!(sl.offered_rate, 120.0);
    }
}
