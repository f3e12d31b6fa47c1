//! A deploy's load verdict: every op of every scenario on the target, its blocks before
//! the deploy against its blocks after (`shift::compare`), unless soakd itself explains
//! why a window is unusable — the capacity search's rule: its own CPU, its runtime's
//! delay, its schedule lag, its own connection slots. A target so slow after the deploy
//! that arrivals drop is a regression (the `dropped` measure), never invalid.

use super::blocks::{within, GeneratorBlock, Rings, ScenarioBlock};
use super::record::{State, Windows};
use crate::capacity::{GENERATOR_CPU_SATURATED, GENERATOR_DELAY_FLOOR, GENERATOR_QUEUE_SHARE};
use crate::config::deploys::{Baseline, DeploysConfig, MIN_WINDOW_BLOCKS};
use crate::config::Scenario;
use crate::shift::{compare, Block, Change, Drops, Finding, OpWindows, Settings};
use std::time::Duration;

/// Schedule lag p99 above this makes a block soakd's (the capacity search's default
/// `lag_limit`).
pub const LAG_LIMIT: Duration = Duration::from_millis(100);
/// Evidence in at least this share of a window's blocks makes the window unusable.
pub const EVIDENCE_SHARE: f64 = 0.25;

/// The windows a deploy at `at` is judged on.
pub fn windows(at: f64, cfg: &DeploysConfig) -> Windows {
    let (b, a, s) = (
        cfg.before.as_secs_f64(),
        cfg.after.as_secs_f64(),
        cfg.settle.as_secs_f64(),
    );
    let after = [at + s, at + s + a];
    let before = match cfg.baseline {
        Baseline::Before => [at - b, at],
        Baseline::Yesterday => [after[0] - 86_400.0, after[1] - 86_400.0],
    };
    Windows { before, after }
}

/// The load part of a verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadVerdict {
    pub state: State,
    pub findings: Vec<Finding>,
    pub reasons: Vec<String>,
}

fn seed_of(id: &str) -> u64 {
    // FNV-1a: a stable seed, so a re-judged deploy (after a restart) agrees.
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Why soakd, not the target, explains a window (each piece of evidence).
fn generator_evidence(
    label: &str,
    scenarios: &[(&str, Vec<&ScenarioBlock>)],
    generator: &[&GeneratorBlock],
) -> Vec<String> {
    let mut why = Vec::new();
    let share = |n: usize, of: usize| of > 0 && n as f64 >= EVIDENCE_SHARE * of as f64;
    let cpu = generator
        .iter()
        .filter(|g| g.cpu_share.is_some_and(|c| c >= GENERATOR_CPU_SATURATED))
        .count();
    if share(cpu, generator.len()) {
        why.push(format!(
            "soakd used at least {:.0} % of its CPUs in {cpu} of the {label} window's {} blocks",
            GENERATOR_CPU_SATURATED * 100.0,
            generator.len()
        ));
    }
    for (name, blocks) in scenarios {
        let lag = blocks
            .iter()
            .filter(|b| b.lag_p99.is_some_and(|l| l > LAG_LIMIT.as_secs_f64()))
            .count();
        if share(lag, blocks.len()) {
            why.push(format!(
                "{name} started operations late (schedule lag p99 > {}) in {lag} of the {label} window's {} blocks",
                crate::units::format_latency(LAG_LIMIT.as_secs_f64()),
                blocks.len()
            ));
        }
        let queued = blocks
            .iter()
            .filter(|b| b.queue_share.is_some_and(|q| q >= GENERATOR_QUEUE_SHARE))
            .count();
        if share(queued, blocks.len()) {
            why.push(format!(
                "{name}'s operations spent half their time or more waiting for soakd's own connection slots in {queued} of the {label} window's {} blocks (raise max_connections)",
                blocks.len()
            ));
        }
    }
    why
}

/// Judges the load part of deploy `id` of `target` at `at`, from `rings`; `scenarios`
/// is the config's (those on `target` are judged).
pub fn judge_load(
    id: &str,
    target: &str,
    at: f64,
    cfg: &DeploysConfig,
    scenarios: &[Scenario],
    rings: &Rings,
) -> LoadVerdict {
    let w = windows(at, cfg);
    let mine: Vec<&Scenario> = scenarios.iter().filter(|s| s.target == target).collect();
    let invalid = |reasons: Vec<String>| LoadVerdict {
        state: State::Invalid,
        findings: Vec::new(),
        reasons,
    };
    if mine.is_empty() {
        return invalid(vec![format!("no scenario sends load to {target}")]);
    }
    let span = |b: &Block| (b.t, b.secs);
    let mut ops: Vec<OpWindows> = Vec::new();
    let mut drops: Vec<Drops> = Vec::new();
    let mut thin: Vec<String> = Vec::new();
    let mut p50: Option<f64> = None;
    let mut scen_blocks: Vec<(String, Vec<&ScenarioBlock>, Vec<&ScenarioBlock>)> = Vec::new();
    for s in &mine {
        let floor = s.slo.error_rate.map_or(0.001, |r| r.0 / 10.0);
        for (key, ring) in rings.ops.range(format!("{}/", s.name)..) {
            let Some(op) = key.strip_prefix(&format!("{}/", s.name)) else {
                break;
            };
            if op.contains('/') {
                continue;
            }
            let before = within(ring, w.before[0], w.before[1], span);
            let after = within(ring, w.after[0], w.after[1], span);
            let busy = |v: &[&Block]| v.iter().filter(|b| b.requests > 0).count() as u64;
            if busy(&before) < MIN_WINDOW_BLOCKS || busy(&after) < MIN_WINDOW_BLOCKS {
                thin.push(format!(
                    "{key}: operations completed in {} blocks before and {} after (at least {MIN_WINDOW_BLOCKS} each are needed)",
                    busy(&before),
                    busy(&after)
                ));
                continue;
            }
            let merged: Vec<(i32, u32)> = {
                let mut v: Vec<(i32, u32)> =
                    before.iter().flat_map(|b| b.hist.iter().copied()).collect();
                v.sort_unstable();
                v
            };
            if let Some(q) = crate::shift::block::quantile_of(&merged, 0.5) {
                p50 = Some(p50.map_or(q, |p: f64| p.min(q)));
            }
            ops.push(OpWindows {
                subject: key.clone(),
                before,
                after,
                errors_floor: floor,
            });
        }
        if let Some(ring) = rings.scenarios.get(&s.name) {
            let sspan = |b: &ScenarioBlock| (b.t, b.secs);
            let before = within(ring, w.before[0], w.before[1], sspan);
            let after = within(ring, w.after[0], w.after[1], sspan);
            let pairs = |v: &[&ScenarioBlock]| v.iter().map(|b| (b.dropped, b.offered)).collect();
            drops.push(Drops {
                scenario: s.name.clone(),
                before: pairs(&before),
                after: pairs(&after),
                floor,
            });
            scen_blocks.push((s.name.clone(), before, after));
        }
    }
    if ops.is_empty() {
        let mut r = vec![format!(
            "soakd has too little of {target}'s load in the windows to judge: soakd was not running, or its scenarios were paused, through them"
        )];
        r.extend(thin);
        return invalid(r);
    }
    let gspan = |b: &GeneratorBlock| (b.t, b.secs);
    let mut evidence = Vec::new();
    for (label, range) in [("before", w.before), ("after", w.after)] {
        let g = within(&rings.generator, range[0], range[1], gspan);
        let sc: Vec<(&str, Vec<&ScenarioBlock>)> = scen_blocks
            .iter()
            .map(|(n, b, a)| {
                (
                    n.as_str(),
                    if label == "before" {
                        b.clone()
                    } else {
                        a.clone()
                    },
                )
            })
            .collect();
        evidence.extend(generator_evidence(label, &sc, &g));
    }
    // The runtime's delay is in every latency soakd measures, on both sides alike; it
    // can make a change only by changing, by more than the smallest change that counts
    // (the minimum effect on the fastest op's p50).
    let delay = |range: [f64; 2]| {
        let mut v: Vec<f64> = within(&rings.generator, range[0], range[1], gspan)
            .iter()
            .filter_map(|g| g.runtime_delay_p99)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    if let (Some(p50), Some(db), Some(da)) = (p50, delay(w.before), delay(w.after)) {
        let limit = GENERATOR_DELAY_FLOOR.max(cfg.min_latency * p50);
        if (da - db).abs() >= limit {
            evidence.push(format!(
                "its runtime's delay (median of the blocks' p99) went from {} to {}, more than the smallest change that counts ({} of a p50 of {})",
                crate::units::format_latency(db),
                crate::units::format_latency(da),
                crate::units::format_latency(limit),
                crate::units::format_latency(p50),
            ));
        }
    }
    if !evidence.is_empty() {
        let mut r = vec!["soakd itself explains why a window is unusable, so no verdict is given: add CPUs or shards, raise max_connections, or lower the load".to_string()];
        r.extend(evidence);
        return invalid(r);
    }
    let settings = Settings {
        false_alarm: cfg.false_alarm,
        min_latency: cfg.min_latency,
        min_errors: cfg.min_errors,
        ..Settings::default()
    };
    let mut findings = compare(&ops, &drops, &settings, seed_of(id));
    findings.sort_by_key(|f| match f.change {
        Change::Worse => 0,
        Change::Better => 1,
        Change::None => 2,
    });
    let worse = findings.iter().any(|f| f.change == Change::Worse);
    let better = findings.iter().any(|f| f.change == Change::Better);
    let state = match (worse, better) {
        (true, _) => State::Regressed,
        (false, true) => State::Improved,
        (false, false) => State::Unchanged,
    };
    let mut reasons: Vec<String> = findings
        .iter()
        .filter(|f| f.change != Change::None)
        .map(|f| f.why.clone())
        .collect();
    if reasons.is_empty() {
        reasons.push(format!(
            "no measure changed by more than its minimum effect with significance ({} measures of {} ops compared; false-alarm rate {} % per deploy)",
            findings.len(),
            ops.len(),
            cfg.false_alarm * 100.0
        ));
    }
    reasons.extend(thin);
    LoadVerdict {
        state,
        findings,
        reasons,
    }
}
