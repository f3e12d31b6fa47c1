//! One level's verdict: [`judge`] turns a scenario's measurements into pass, fail or
//! invalid (a breach soakd itself explains — its CPU, its runtime's delay, its own
//! connection slots — is invalid, never a fail), and [`combine`] a level's scenarios.

use super::record::{ScenarioLevel, SloView, Verdict};
use crate::config::search::SearchConfig;
use crate::units::format_latency;

/// What soakd itself did over a level's window: the evidence that a breach was the
/// generator's, not the target's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Generator {
    /// soakd's CPU over the window as a fraction of the CPUs its load runtime runs on.
    pub cpu_share: Option<f64>,
    /// Those CPUs.
    pub cpus: usize,
    /// p99 of the load runtime's scheduling delay over the window, seconds
    /// (`soakd_runtime_delay_seconds`).
    pub runtime_delay_p99: Option<f64>,
}

/// soakd's CPU share at which it is saturated: its tasks wait for a thread.
pub const GENERATOR_CPU_SATURATED: f64 = 0.9;
/// A runtime delay p99 at least this fraction of the breaching latency is in it, not
/// beside it (an operation waits to be polled at least once, usually several times).
pub const GENERATOR_DELAY_SHARE: f64 = 0.1;
/// Below this the runtime delay is the timer's resolution (1 ms), not a backlog.
pub const GENERATOR_DELAY_FLOOR: f64 = 0.002;
/// The share of an operation's time spent queued for soakd's own connection slots at
/// which the slots, not the target, set its latency.
pub const GENERATOR_QUEUE_SHARE: f64 = 0.5;

/// Why the generator, not the target, explains a latency of `got` (the worst breach):
/// each piece of evidence found, or none.
fn generator_evidence(m: &ScenarioLevel, g: &Generator, got: f64) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(share) = g.cpu_share.filter(|s| *s >= GENERATOR_CPU_SATURATED) {
        why.push(format!(
            "soakd used {:.0}% of its {} CPU{}",
            share * 100.0,
            g.cpus,
            if g.cpus == 1 { "" } else { "s" }
        ));
    }
    if let Some(d) = g
        .runtime_delay_p99
        .filter(|d| *d >= GENERATOR_DELAY_FLOOR && *d >= GENERATOR_DELAY_SHARE * got)
    {
        why.push(format!(
            "its runtime polled tasks up to {} late (delay p99)",
            format_latency(d)
        ));
    }
    let total: f64 = m.phases.values().sum();
    if let Some(q) = m
        .phases
        .get("queue")
        .filter(|q| total > 0.0 && **q >= GENERATOR_QUEUE_SHARE * total)
    {
        why.push(format!(
            "{:.0}% of each operation's time ({} of {}) went waiting for soakd's own connection slots (max_connections)",
            100.0 * q / total,
            format_latency(*q),
            format_latency(total)
        ));
    }
    why
}

/// Judges one scenario's window against its SLO. Order matters: late starts make any
/// latency breach suspect (latency counts from the intended start), so they come
/// first; then a latency breach that soakd's own saturation explains (its CPU, its
/// runtime's scheduling delay, its connection slots: see [`Generator`]) is invalid, not
/// a failure, since the time was spent inside the generator; a breach among operations
/// that did run is real even if some were dropped; a clean result with load missing
/// cannot be called a pass.
pub fn judge(
    slo: &SloView,
    m: &ScenarioLevel,
    generator: &Generator,
    cfg: &SearchConfig,
) -> (Verdict, String) {
    let lag_limit = cfg.lag_limit.as_secs_f64();
    if let Some(lag) = m.lag_p99.filter(|l| *l > lag_limit) {
        return (
            Verdict::Invalid,
            format!(
                "soakd started operations late (schedule lag p99 {} > {}): the generator, not the target, limited this level",
                format_latency(lag),
                format_latency(lag_limit)
            ),
        );
    }
    let mut breaches = Vec::new();
    let mut errors_breached = false;
    if let (Some(max), true) = (slo.error_rate, m.completed > 0) {
        if m.error_ratio > max {
            errors_breached = true;
            breaches.push(format!(
                "error rate {:.2}% > {:.2}%",
                m.error_ratio * 100.0,
                max * 100.0
            ));
        }
    }
    let mut slowest: Option<f64> = None;
    for (name, limit, got) in [
        ("p50", slo.p50, m.latency.p50),
        ("p95", slo.p95, m.latency.p95),
        ("p99", slo.p99, m.latency.p99),
        (
            "event e2e p95",
            slo.e2e_p95,
            m.buffer.as_ref().and_then(|b| b.e2e_p95),
        ),
    ] {
        if let (Some(limit), Some(got)) = (limit, got) {
            if got > limit {
                // The buffered writer's accept-to-commit time is the target's flush, not
                // an operation soakd timed: it is never the generator's.
                if name != "event e2e p95" {
                    slowest = Some(slowest.map_or(got, |s: f64| s.max(got)));
                }
                breaches.push(format!(
                    "{name} {} > {}",
                    format_latency(got),
                    format_latency(limit)
                ));
            }
        }
    }
    // Errors count against the generator only when they are all timeouts (time spent
    // in soakd counts toward an operation's timeout); any other kind is the target's.
    let errors_are_timeouts = m.errors.keys().all(|k| k == crate::drivers::kind::TIMEOUT);
    if let Some(got) = slowest.filter(|_| !errors_breached || errors_are_timeouts) {
        let evidence = generator_evidence(m, generator, got);
        if !evidence.is_empty() {
            return (
                Verdict::Invalid,
                format!(
                    "{}, explained by the generator, not the target: {} (add CPUs or shards, raise max_connections, or lower the level)",
                    breaches.join(", "),
                    evidence.join("; ")
                ),
            );
        }
    }
    if !breaches.is_empty() {
        return (Verdict::Fail, breaches.join(", "));
    }
    if m.completed == 0 {
        return (
            Verdict::Invalid,
            "no operation completed in the window".into(),
        );
    }
    // One arrival of slack: where the schedule's ticks fall against the window's edges
    // decides whether 19 or 20 of 10/s land in 2 s; that is phase, not a generator limit.
    let edge_slack = if m.window_s > 0.0 {
        1.0 / m.window_s
    } else {
        0.0
    };
    if m.achieved_rate + edge_slack < cfg.min_achieved * m.offered_rate {
        let why = if m.dropped > 0 {
            format!(
                "; {} iterations dropped at max_in_flight {} (raise it to offer this level)",
                m.dropped, m.max_in_flight
            )
        } else {
            String::new()
        };
        return (
            Verdict::Invalid,
            format!(
                "soakd achieved only {:.1}/s of {:.1}/s offered ({:.0}%){why}",
                m.achieved_rate,
                m.offered_rate,
                100.0 * m.achieved_rate / m.offered_rate.max(1e-9)
            ),
        );
    }
    let mut ok = Vec::new();
    if let (Some(l), Some(g)) = (slo.p95, m.latency.p95) {
        ok.push(format!(
            "p95 {} <= {}",
            format_latency(g),
            format_latency(l)
        ));
    }
    if let Some(max) = slo.error_rate {
        ok.push(format!(
            "errors {:.2}% <= {:.2}%",
            m.error_ratio * 100.0,
            max * 100.0
        ));
    }
    (Verdict::Pass, format!("within SLO: {}", ok.join(", ")))
}

/// The level's verdict from its scenarios': any invalid makes it invalid, else any
/// failure fails it.
pub fn combine(scenarios: &[ScenarioLevel]) -> (Verdict, String) {
    let pick = |v: Verdict| -> Vec<String> {
        scenarios
            .iter()
            .filter(|s| s.verdict == Some(v))
            .map(|s| format!("{}: {}", s.scenario, s.reason))
            .collect()
    };
    for v in [Verdict::Invalid, Verdict::Fail] {
        let r = pick(v);
        if !r.is_empty() {
            return (v, r.join("; "));
        }
    }
    (Verdict::Pass, pick(Verdict::Pass).join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::plan::test_search as cfg;
    use crate::capacity::record::{BufferLevel, Quantiles};
    use crate::config::search::SearchMode;
    use std::collections::BTreeMap;

    fn level(offered: f64, achieved: f64, p95: f64, errs: f64, lag: f64) -> ScenarioLevel {
        ScenarioLevel {
            scenario: "api".into(),
            offered_rate: offered,
            achieved_rate: achieved,
            completed: 1000,
            error_ratio: errs,
            dropped: if achieved < offered { 10 } else { 0 },
            max_in_flight: 5,
            latency: Quantiles {
                p95: Some(p95),
                ..Default::default()
            },
            lag_p99: Some(lag),
            ..Default::default()
        }
    }

    #[test]
    fn judge_separates_target_failures_from_generator_limits() {
        let c = cfg(SearchMode::Isolated, 0);
        let idle = Generator::default();
        let slo = SloView {
            p95: Some(2.0),
            error_rate: Some(0.01),
            ..Default::default()
        };
        assert_eq!(
            judge(&slo, &level(100.0, 100.0, 0.5, 0.0, 0.001), &idle, &c).0,
            Verdict::Pass
        );
        let (v, why) = judge(&slo, &level(100.0, 100.0, 2.5, 0.0, 0.001), &idle, &c);
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("p95"), "{why}");
        let (v, why) = judge(&slo, &level(100.0, 100.0, 0.1, 0.02, 0.001), &idle, &c);
        assert_eq!(v, Verdict::Fail);
        assert!(why.contains("error rate 2.00%"), "{why}");
        // Late starts inflate latency measured from the intended start: not the target.
        let (v, why) = judge(&slo, &level(100.0, 100.0, 2.5, 0.0, 0.5), &idle, &c);
        assert_eq!(v, Verdict::Invalid);
        assert!(why.contains("lag"), "{why}");
        // Load missing, SLO fine: cannot be called a pass.
        let (v, why) = judge(&slo, &level(100.0, 50.0, 0.1, 0.0, 0.001), &idle, &c);
        assert_eq!(v, Verdict::Invalid);
        assert!(why.contains("max_in_flight 5"), "{why}");
        // 10/s over a 2.01 s window: 19 arrivals is the window's edge, 17 is a shortfall.
        let edge = |started: f64| ScenarioLevel {
            window_s: 2.01,
            dropped: 0,
            ..level(10.0, started / 2.01, 0.1, 0.0, 0.001)
        };
        assert_eq!(judge(&slo, &edge(19.0), &idle, &c).0, Verdict::Pass);
        let (v, why) = judge(&slo, &edge(17.0), &idle, &c);
        assert_eq!(v, Verdict::Invalid);
        assert!(why.contains("achieved only 8.5/s of 10.0/s"), "{why}");
    }

    #[test]
    fn a_breach_the_generator_explains_is_invalid_never_fail() {
        let c = cfg(SearchMode::Isolated, 0);
        let slo = SloView {
            p95: Some(0.05),
            error_rate: Some(0.01),
            ..Default::default()
        };
        // The measured case: 400,000/s asked of nginx, 63,480/s achieved at 94 % of a
        // 2-CPU machine, p95 74 ms, schedule lag p99 77 ms (under the 100 ms lag_limit).
        let saturated = ScenarioLevel {
            latency: Quantiles {
                p95: Some(0.074),
                ..Default::default()
            },
            lag_p99: Some(0.077),
            ..level(400_000.0, 63_480.0, 0.074, 0.0, 0.077)
        };
        let busy = Generator {
            cpu_share: Some(0.94),
            cpus: 2,
            runtime_delay_p99: Some(0.03),
        };
        let (v, why) = judge(&slo, &saturated, &busy, &c);
        assert_eq!(v, Verdict::Invalid, "{why}");
        assert!(
            why.starts_with("p95 74ms > 50ms, explained by the generator"),
            "{why}"
        );
        assert!(why.contains("soakd used 94% of its 2 CPUs"), "{why}");
        assert!(why.contains("polled tasks up to 30ms late"), "{why}");

        // CPU below saturation, but the runtime's delay is a tenth of the latency or more.
        let late = Generator {
            cpu_share: Some(0.6),
            cpus: 2,
            runtime_delay_p99: Some(0.008),
        };
        let (v, why) = judge(&slo, &saturated, &late, &c);
        assert_eq!(v, Verdict::Invalid, "{why}");
        assert!(!why.contains("soakd used"), "{why}");

        // max_connections: the time went waiting for soakd's own slots.
        let mut queued = saturated.clone();
        queued.phases = BTreeMap::from([
            ("queue".to_string(), 0.039),
            ("first_byte".to_string(), 0.0004),
        ]);
        let calm = Generator {
            cpu_share: Some(0.5),
            cpus: 2,
            runtime_delay_p99: Some(0.001),
        };
        let (v, why) = judge(&slo, &queued, &calm, &c);
        assert_eq!(v, Verdict::Invalid, "{why}");
        assert!(why.contains("99% of each operation's time"), "{why}");
        assert!(why.contains("max_connections"), "{why}");

        // A real knee: the target's own time, soakd idle — a failure, as before.
        let mut knee = saturated.clone();
        knee.latency.p95 = Some(0.4);
        knee.phases = BTreeMap::from([
            ("queue".to_string(), 0.002),
            ("first_byte".to_string(), 0.3),
        ]);
        let (v, why) = judge(&slo, &knee, &calm, &c);
        assert_eq!(v, Verdict::Fail, "{why}");
        // An 8 ms delay beside 400 ms is beside the latency, not in it.
        assert_eq!(judge(&slo, &knee, &late, &c).0, Verdict::Fail);

        // Errors of the target's own kinds are the target's, whatever soakd's state.
        let mut refused = saturated.clone();
        refused.error_ratio = 0.05;
        refused.errors = BTreeMap::from([("http_503".to_string(), 50)]);
        assert_eq!(judge(&slo, &refused, &busy, &c).0, Verdict::Fail);
        // Timeouts are time, and time inside a saturated generator counts toward them.
        refused.errors = BTreeMap::from([("timeout".to_string(), 50)]);
        assert_eq!(judge(&slo, &refused, &busy, &c).0, Verdict::Invalid);

        // The writer's accept-to-commit time is the target's flush, never soakd's.
        let slo_e2e = SloView {
            e2e_p95: Some(0.1),
            ..Default::default()
        };
        let mut flush = level(100.0, 100.0, 0.001, 0.0, 0.001);
        flush.buffer = Some(BufferLevel {
            e2e_p95: Some(0.5),
            ..Default::default()
        });
        assert_eq!(judge(&slo_e2e, &flush, &busy, &c).0, Verdict::Fail);
    }
}
