//! A deploy's load verdict: every op of every scenario on the target, its blocks before
//! the deploy against its blocks after (`shift::compare`), unless soakd itself explains
//! why a window is unusable — the capacity search's rule: its own CPU, its runtime's
//! delay, its schedule lag, its own connection slots. A target so slow after the deploy
//! that arrivals drop is a regression (the `dropped` measure), never invalid.

use super::blocks::{within, GeneratorBlock, Rings, ScenarioBlock};
use super::record::{State, Windows};
use crate::capacity::{GENERATOR_CPU_SATURATED, GENERATOR_QUEUE_SHARE};
use crate::config::deploys::{Baseline, DeploysConfig, MIN_WINDOW_BLOCKS};
use crate::config::Scenario;
use crate::shift::compare::Control;
use crate::shift::drift::{change as drift_change, past_changes, Drift, Geometry, MIN_PAIRS};
use crate::shift::{compare, Block, Change, Drops, Finding, OpWindows, Settings};
use std::collections::HashMap;
use std::time::Duration;

/// Schedule lag p99 above this makes a block soakd's (the capacity search's default
/// `lag_limit`).
pub const LAG_LIMIT: Duration = Duration::from_millis(100);
/// Blocks with operations a window needs to be judged: the config asks for at least
/// [`MIN_WINDOW_BLOCKS`] per window, and the blocks across the deploy and the settling's
/// end belong to neither window, so a window yields one or two fewer.
pub const MIN_BLOCKS_JUDGED: u64 = MIN_WINDOW_BLOCKS - 2;
/// A runtime delay p99 this much above the windows' usual is soakd's, whatever the op:
/// the delay probe's resolution (Tokio's timer ticks in milliseconds).
pub const DELAY_EXCESS_FLOOR: f64 = 0.001;
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

/// The windows as blocks are taken from them: a block counts when it lies wholly inside,
/// or more than half inside across an outer edge (the before window's start, the after
/// window's end; both of yesterday's) — never across the deploy or the settling, so a
/// window of N blocks yields N whatever the blocks' phase.
fn reach(w: Windows, cfg: &DeploysConfig) -> Windows {
    let half = cfg.block.as_secs_f64() / 2.0;
    let inner = match cfg.baseline {
        Baseline::Before => 0.0,
        Baseline::Yesterday => half,
    };
    Windows {
        before: [w.before[0] - half, w.before[1] + inner],
        after: [w.after[0], w.after[1] + half],
    }
}

/// The load part of a verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadVerdict {
    pub state: State,
    pub findings: Vec<Finding>,
    pub reasons: Vec<String>,
    pub series: Vec<super::record::OpSeries>,
}

/// Why soakd, not the target, explains a block: its CPU saturated, its runtime's delay
/// above the windows' usual by more than `delay_limit`, or (per scenario, in `lag` and
/// `queue`) late starts or its own connection slots.
#[derive(Default)]
struct SetAside {
    /// By block start (bits of `t`): the causes.
    all: HashMap<u64, Vec<&'static str>>,
    /// By scenario, then block start.
    scenario: HashMap<String, HashMap<u64, Vec<&'static str>>>,
}

const CPU: &str = "soakd's CPU saturated";
const DELAY: &str = "soakd's runtime delayed";
const LAG: &str = "operations started late";
const QUEUE: &str = "operations waited for soakd's own connection slots";
const UNSUMMED: &str = "Prometheus did not give the fleet's sums";

impl SetAside {
    fn causes(&self, scenario: &str, t: f64) -> Vec<&'static str> {
        let k = t.to_bits();
        let mut v: Vec<&'static str> = self.all.get(&k).cloned().unwrap_or_default();
        if let Some(m) = self.scenario.get(scenario).and_then(|m| m.get(&k)) {
            v.extend(m.iter().copied());
        }
        v
    }
}

/// The ops of `control`'s scenarios merged per block (latency, completions, errors)
/// over both windows, by block start: what a drift of the whole environment moves too.
fn control_blocks(
    control: &str,
    scenarios: &[Scenario],
    rings: &Rings,
    w: Windows,
) -> HashMap<u64, Block> {
    let mut by_t: HashMap<u64, Block> = HashMap::new();
    for s in scenarios.iter().filter(|s| s.target == control) {
        let prefix = format!("{}/", s.name);
        for (_, ring) in rings
            .ops
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
        {
            for range in [w.before, w.after] {
                for b in within(ring, range[0], range[1], |b: &Block| (b.t, b.secs)) {
                    let m = by_t.entry(b.t.to_bits()).or_insert_with(|| Block {
                        t: b.t,
                        secs: b.secs,
                        ..Block::default()
                    });
                    m.hist.extend(b.hist.iter().copied());
                    m.requests += b.requests;
                    for (k, n) in &b.errors {
                        *m.errors.entry(k.clone()).or_default() += n;
                    }
                }
            }
        }
    }
    for b in by_t.values_mut() {
        b.hist.sort_unstable_by_key(|x| x.0);
        b.hist.dedup_by(|x, y| {
            if x.0 == y.0 {
                y.1 = y.1.saturating_add(x.1);
                true
            } else {
                false
            }
        });
    }
    by_t.retain(|_, b| b.count() > 0);
    by_t
}

/// The per-block log quantiles of `key` from the history, relative to the mean of
/// `control`'s ops' at the same block when it has a control, in time order.
fn drift_series(rings: &Rings, key: &str, control: &[&String]) -> Vec<(f64, [f64; 3])> {
    let Some(own) = rings.history.get(key) else {
        return Vec::new();
    };
    let mut base: HashMap<u64, ([f64; 3], u32)> = HashMap::new();
    for c in control {
        for x in rings.history.get(*c).into_iter().flatten() {
            let e = base.entry(x.t.to_bits()).or_insert(([0.0; 3], 0));
            for (s, v) in e.0.iter_mut().zip(x.ln_q) {
                *s += f64::from(v);
            }
            e.1 += 1;
        }
    }
    let mut out: Vec<(f64, [f64; 3])> = own
        .iter()
        .filter_map(|x| {
            let mut q = x.ln_q.map(f64::from);
            if !control.is_empty() {
                let (sum, n) = base.get(&x.t.to_bits())?;
                for (v, s) in q.iter_mut().zip(sum) {
                    *v -= s / f64::from(*n);
                }
            }
            Some((x.t, q))
        })
        .collect();
    // Newest wins where a block was cut twice.
    out.reverse();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The drift check's input for one op: its change between the judged blocks (by start)
/// and the changes of the window pairs laid over its history before `w0.before[0]`,
/// skipping pairs with a deploy or restart of `targets` in them.
fn drift_of(
    series: &[(f64, [f64; 3])],
    before: &[&Block],
    after: &[&Block],
    w0: Windows,
    cfg: &DeploysConfig,
    marks: &[f64],
) -> Option<Drift> {
    let at = |bs: &[&Block]| -> Vec<[f64; 3]> {
        bs.iter()
            .filter_map(|b| {
                let i = series.partition_point(|(t, _)| *t < b.t);
                series.get(i).filter(|(t, _)| *t == b.t).map(|(_, q)| *q)
            })
            .collect()
    };
    let now = drift_change(&at(before), &at(after), MIN_BLOCKS_JUDGED as usize)?;
    let g = Geometry {
        before: w0.before[1] - w0.before[0],
        gap: w0.after[0] - w0.before[1],
        after: (w0.after[1] - w0.after[0]).max(0.0),
    };
    let history = cfg.history.as_secs_f64();
    let past = past_changes(
        series,
        w0.before[0],
        w0.before[0] - history,
        g,
        MIN_BLOCKS_JUDGED as usize,
        marks,
    );
    Some(Drift { now, past, history })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
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
    judge_load_until(id, target, at, cfg, scenarios, rings, f64::INFINITY)
}

/// As [`judge_load`], with the after window cut at `until` (a gate asking before it
/// has filled: what the blocks so far say).
pub fn judge_load_until(
    id: &str,
    target: &str,
    at: f64,
    cfg: &DeploysConfig,
    scenarios: &[Scenario],
    rings: &Rings,
    until: f64,
) -> LoadVerdict {
    let mut w0 = windows(at, cfg);
    w0.after[1] = w0.after[1].min(until);
    let mut w = reach(w0, cfg);
    w.after[1] = w.after[1].min(until);
    let mine: Vec<&Scenario> = scenarios.iter().filter(|s| s.target == target).collect();
    let invalid = |reasons: Vec<String>| LoadVerdict {
        state: State::Invalid,
        findings: Vec::new(),
        reasons,
        series: Vec::new(),
    };
    if mine.is_empty() {
        return invalid(vec![format!("no scenario sends load to {target}")]);
    }
    let span = |b: &Block| (b.t, b.secs);
    let sspan = |b: &ScenarioBlock| (b.t, b.secs);
    let gspan = |b: &GeneratorBlock| (b.t, b.secs);
    // The fastest op's p50 before the deploy: a runtime delay smaller than the minimum
    // effect on it cannot make a change that counts.
    let mut p50: Option<f64> = None;
    for s in &mine {
        for (key, ring) in rings.ops.range(format!("{}/", s.name)..) {
            if !key.starts_with(&format!("{}/", s.name)) {
                break;
            }
            let mut v: Vec<(i32, u32)> = within(ring, w.before[0], w.before[1], span)
                .iter()
                .flat_map(|b| b.hist.iter().copied())
                .collect();
            v.sort_unstable();
            if let Some(q) = crate::shift::block::quantile_of(&v, 0.5) {
                p50 = Some(p50.map_or(q, |p: f64| p.min(q)));
            }
        }
    }
    // The blocks soakd itself explains, set aside from both windows.
    let gen: Vec<&GeneratorBlock> = within(&rings.generator, w.before[0], w.before[1], gspan)
        .into_iter()
        .chain(within(&rings.generator, w.after[0], w.after[1], gspan))
        .collect();
    let usual = median(gen.iter().filter_map(|g| g.runtime_delay_p99).collect());
    let delay_limit = DELAY_EXCESS_FLOOR.max(cfg.min_latency * p50.unwrap_or(0.0));
    let mut aside = SetAside::default();
    let mut unsummed: Vec<&str> = Vec::new();
    for g in &gen {
        let e = aside.all.entry(g.t.to_bits()).or_default();
        if let Some(why) = &g.unsummed {
            e.push(UNSUMMED);
            if unsummed.len() < 3 && !unsummed.contains(&why.as_str()) {
                unsummed.push(why);
            }
        }
        if g.cpu_share.is_some_and(|c| c >= GENERATOR_CPU_SATURATED) {
            e.push(CPU);
        }
        if let (Some(d), Some(u)) = (g.runtime_delay_p99, usual) {
            if d - u >= delay_limit {
                e.push(DELAY);
            }
        }
    }
    for s in &mine {
        let Some(ring) = rings.scenarios.get(&s.name) else {
            continue;
        };
        let m = aside.scenario.entry(s.name.clone()).or_default();
        for b in within(ring, w.before[0], w.before[1], sspan)
            .into_iter()
            .chain(within(ring, w.after[0], w.after[1], sspan))
        {
            let e = m.entry(b.t.to_bits()).or_default();
            if b.lag_p99.is_some_and(|l| l > LAG_LIMIT.as_secs_f64()) {
                e.push(LAG);
            }
            if b.queue_share.is_some_and(|q| q >= GENERATOR_QUEUE_SHARE) {
                e.push(QUEUE);
            }
        }
    }
    let mut notes_early: Vec<String> = Vec::new();
    // `deploys.controls`: the control target's ops merged per block, by block start.
    let mut control_name = cfg.controls.get(target);
    let mut control = control_name.map(|c| control_blocks(c, scenarios, rings, w));
    if let (Some(name), Some(by_t)) = (control_name, &control) {
        // A control that did not run through both windows cannot be compared with:
        // the target is judged alone, and the verdict says so.
        let busy = |range: [f64; 2]| {
            by_t.values()
                .filter(|b| b.t >= range[0] - 1e-6 && b.t + b.secs <= range[1] + 1e-6)
                .count() as u64
        };
        if busy(w.before) < MIN_BLOCKS_JUDGED || busy(w.after) < MIN_BLOCKS_JUDGED {
            notes_early.push(format!(
                "the control {name} has operations in {} blocks before and {} after (at least {MIN_BLOCKS_JUDGED} each are needed): {target} judged alone",
                busy(w.before),
                busy(w.after)
            ));
            (control_name, control) = (None, None);
        }
    }
    // The drift check (`deploys.history`): the control's ops, and the deploys and
    // restarts of the target and its control whose pairs are left out.
    let drifting = cfg.history > Duration::ZERO && cfg.baseline == Baseline::Before;
    let control_ops: Vec<&String> = control_name
        .map(|c| {
            rings
                .history
                .keys()
                .filter(|k| {
                    scenarios.iter().any(|s| {
                        &s.target == c
                            && k.strip_prefix(&s.name).is_some_and(|r| r.starts_with('/'))
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let marks: Vec<f64> = std::iter::once(target)
        .chain(control_name.map(String::as_str))
        .filter_map(|t| rings.marks.get(t))
        .flatten()
        .copied()
        .collect();
    let mut uncalibrated: Vec<(String, usize)> = Vec::new();
    let mut ops: Vec<OpWindows> = Vec::new();
    let mut drops: Vec<Drops> = Vec::new();
    let mut thin: Vec<String> = Vec::new();
    let mut evidence: Vec<String> = Vec::new();
    let mut notes: Vec<String> = notes_early;
    if let Some(n) = gen.iter().filter_map(|g| g.shards).max() {
        let layout = if gen.iter().any(|g| g.classic) {
            "classic buckets: Prometheus without native histograms, so latency only at the SLO boundaries' resolution"
        } else {
            "native buckets"
        };
        notes.push(format!(
            "judged on Prometheus's sums over the {n} shards ({layout})"
        ));
    }
    if !unsummed.is_empty() {
        notes.push(format!(
            "blocks without the fleet's sums were set aside: {}",
            unsummed.join("; ")
        ));
    }
    for s in &mine {
        let floor = s.slo.error_rate.map_or(0.001, |r| r.0 / 10.0);
        // How much of each window soakd explains, for this scenario.
        let mut unusable = false;
        for (label, range) in [("before", w.before), ("after", w.after)] {
            let g = within(&rings.generator, range[0], range[1], gspan);
            let mut by_cause: Vec<(&str, usize)> = Vec::new();
            let mut n = 0;
            for b in &g {
                let c = aside.causes(&s.name, b.t);
                if !c.is_empty() {
                    n += 1;
                }
                for x in c {
                    match by_cause.iter_mut().find(|(k, _)| *k == x) {
                        Some((_, k)) => *k += 1,
                        None => by_cause.push((x, 1)),
                    }
                }
            }
            if n == 0 {
                continue;
            }
            let causes: Vec<String> = by_cause
                .iter()
                .map(|(c, k)| format!("{c} in {k}"))
                .collect();
            let what = format!(
                "{}: {n} of the {label} window's {} blocks set aside ({})",
                s.name,
                g.len(),
                causes.join(", ")
            );
            if n as f64 > EVIDENCE_SHARE * g.len() as f64 {
                unusable = true;
                evidence.push(what);
            } else {
                notes.push(what);
            }
        }
        if unusable {
            continue;
        }
        let keep = |t: f64| aside.causes(&s.name, t).is_empty();
        for (key, ring) in rings.ops.range(format!("{}/", s.name)..) {
            let Some(op) = key.strip_prefix(&format!("{}/", s.name)) else {
                break;
            };
            if op.contains('/') {
                continue;
            }
            let pick = |range: [f64; 2]| -> Vec<&Block> {
                within(ring, range[0], range[1], span)
                    .into_iter()
                    .filter(|b| keep(b.t))
                    .collect()
            };
            let (mut before, mut after) = (pick(w.before), pick(w.after));
            // With a control, only the blocks it has too, paired with its.
            let paired = control.as_ref().map(|by_t| {
                let pair = |v: &mut Vec<&Block>| -> Vec<&Block> {
                    v.retain(|b| by_t.contains_key(&b.t.to_bits()));
                    v.iter().filter_map(|b| by_t.get(&b.t.to_bits())).collect()
                };
                (pair(&mut before), pair(&mut after))
            });
            let busy = |v: &[&Block]| v.iter().filter(|b| b.requests > 0).count() as u64;
            if busy(&before) < MIN_BLOCKS_JUDGED || busy(&after) < MIN_BLOCKS_JUDGED {
                thin.push(format!(
                    "{key}: operations completed in {} blocks before and {} after (at least {MIN_BLOCKS_JUDGED} each are needed)",
                    busy(&before),
                    busy(&after)
                ));
                continue;
            }
            let drift = drifting.then(|| {
                let series = drift_series(rings, key, &control_ops);
                drift_of(&series, &before, &after, w0, cfg, &marks)
            });
            let drift = drift.flatten();
            if drift.as_ref().is_none_or(|d| d.past.len() < MIN_PAIRS) {
                uncalibrated.push((key.clone(), drift.as_ref().map_or(0, |d| d.past.len())));
            }
            ops.push(OpWindows {
                subject: key.clone(),
                before,
                after,
                drift,
                errors_floor: floor,
                control: paired.zip(control_name).map(|((cb, ca), name)| Control {
                    name: name.clone(),
                    before: cb,
                    after: ca,
                }),
            });
        }
        if let Some(ring) = rings.scenarios.get(&s.name) {
            let pairs = |range: [f64; 2]| -> Vec<(u64, u64)> {
                within(ring, range[0], range[1], sspan)
                    .into_iter()
                    .filter(|b| keep(b.t))
                    .map(|b| (b.dropped, b.offered))
                    .collect()
            };
            drops.push(Drops {
                scenario: s.name.clone(),
                before: pairs(w.before),
                after: pairs(w.after),
                floor,
            });
        }
    }
    if !evidence.is_empty() {
        let mut r = vec![format!(
            "soakd itself explains more than a quarter of a window, so no verdict is given: add CPUs or shards, raise max_connections, or lower the load (a delay counts from {} above the windows' usual)",
            crate::units::format_latency(delay_limit)
        )];
        r.extend(evidence);
        return invalid(r);
    }
    if ops.is_empty() {
        let mut r = vec![format!(
            "soakd has too little of {target}'s load in the windows to judge: soakd was not running, or its scenarios were paused, through them"
        )];
        r.extend(thin);
        return invalid(r);
    }
    let settings = Settings {
        false_alarm: cfg.false_alarm,
        min_latency: cfg.min_latency,
        min_errors: cfg.min_errors,
        ..Settings::default()
    };
    let mut findings = compare(
        &ops,
        &drops,
        &settings,
        crate::shift::compare::seed_of(&[id]),
    );
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
    if !drifting {
        reasons.push(match cfg.baseline {
            Baseline::Yesterday => "latency judged on the two windows alone: the drift check lays pairs of before/after windows, not yesterday's".to_string(),
            Baseline::Before => "latency judged on the two windows alone (deploys.history is 0): a drift between any two windows can pass for a change".to_string(),
        });
    } else if !uncalibrated.is_empty() {
        let most = uncalibrated.iter().map(|(_, k)| *k).max().unwrap_or(0);
        reasons.push(format!(
            "{} of {} ops' wander between windows without a deploy is not known yet (at most {most} pairs of windows in the last {:.0} h, {MIN_PAIRS} needed): their latency is judged on the two windows alone, and a drift between any two windows can pass for a change",
            uncalibrated.len(),
            ops.len(),
            cfg.history.as_secs_f64() / 3600.0
        ));
    }
    reasons.extend(notes);
    // The ops with a change first, then the rest, as their blocks.
    let changed = |subject: &str| {
        findings
            .iter()
            .any(|f| f.change != Change::None && f.subject == subject)
    };
    let mut order: Vec<&OpWindows> = ops.iter().collect();
    order.sort_by_key(|o| !changed(&o.subject));
    let points = |v: &[&Block]| -> Vec<[f64; 4]> {
        v.iter()
            .filter_map(|b| {
                Some([
                    b.t + b.secs / 2.0,
                    b.quantile(0.5)?,
                    b.quantile(0.95)?,
                    b.quantile(0.99)?,
                ])
            })
            .collect()
    };
    let series = order
        .iter()
        .take(super::record::MAX_SERIES)
        .map(|o| super::record::OpSeries {
            subject: o.subject.clone(),
            before: points(&o.before),
            after: points(&o.after),
        })
        .collect();
    LoadVerdict {
        state,
        findings,
        reasons,
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::blocks::Cut;
    use crate::shift::block::bucket_of;

    const YAML: &str = r#"
targets:
  api: {type: http, base_url: "http://127.0.0.1:1"}
  calm: {type: http, base_url: "http://127.0.0.1:2"}
scenarios:
  s: {target: api, schedule: {hold: {rate: 10/s}}, ops: {work: {http: {path: /}}}}
  c: {target: calm, schedule: {hold: {rate: 10/s}}, ops: {work: {http: {path: /}}}}
deploys: {before: 20s, after: 20s, settle: 2s, block: 2s, controls: {api: calm}}
"#;

    fn block(t: f64, ms: f64) -> Block {
        Block {
            t,
            secs: 2.0,
            hist: vec![(bucket_of(ms / 1e3), 90), (bucket_of(ms * 1.5 / 1e3), 10)],
            requests: 100,
            errors: Default::default(),
        }
    }

    /// Rings with `api` at `ms` before the deploy at t = 100 and `after_ms` after, and
    /// `calm` at `ms` throughout — or only before the deploy.
    fn rings(ms: f64, after_ms: f64, calm_after: bool) -> Rings {
        let mut r = Rings::new(40, 400);
        for i in 0..30 {
            let t = 78.0 + 2.0 * i as f64;
            let after = t >= 100.0;
            let mut cut = Cut::default();
            cut.generator.t = t;
            cut.generator.secs = 2.0;
            // Minutes that differ a little, as real ones do (every op alike).
            let wobble = 1.0 + 0.03 * ((i * 7) % 5) as f64;
            let own = if after { after_ms } else { ms };
            cut.ops.push(("s/work".into(), block(t, own * wobble)));
            if !after || calm_after {
                cut.ops.push(("c/work".into(), block(t, ms * wobble)));
            }
            r.add(cut);
        }
        r
    }

    #[test]
    fn a_control_that_stopped_leaves_the_target_judged_alone_saying_so() {
        let cfg = crate::config::parse_for_test(YAML).unwrap();
        let judge = |calm_after: bool| {
            let r = rings(20.0, 30.0, calm_after);
            judge_load("d", "api", 100.0, &cfg.deploys, &cfg.scenarios, &r)
        };
        let v = judge(true);
        assert_eq!(v.state, State::Regressed, "{:?}", v.findings);
        assert!(v
            .findings
            .iter()
            .all(|f| !f.measure.starts_with('p') || f.relative_to.as_deref() == Some("calm")));
        let v = judge(false);
        assert_eq!(v.state, State::Regressed, "{:?}", v.reasons);
        assert!(v.findings.iter().all(|f| f.relative_to.is_none()));
        assert!(
            v.reasons
                .iter()
                .any(|r| r.contains("the control calm has operations in")
                    && r.contains("api judged alone")),
            "{:?}",
            v.reasons
        );
    }

    /// Rings holding `n` blocks of 2 s before the deploy at t = 100 + 2n and the 11
    /// after it, `c/work` at 20 ms × `level(i)` × `step` after the deploy (a small
    /// per-block wobble on top).
    fn history(n: usize, level: impl Fn(usize) -> f64, step: f64) -> (Rings, f64) {
        let mut r = Rings::new(40, 4000);
        let at = 100.0 + 2.0 * n as f64;
        for i in 0..n + 11 {
            let t = 100.0 + 2.0 * i as f64;
            let mut cut = Cut::default();
            cut.generator.t = t;
            cut.generator.secs = 2.0;
            let wobble = 1.0 + 0.03 * ((i * 7) % 5) as f64;
            let f = if t >= at { step } else { 1.0 };
            cut.ops
                .push(("c/work".into(), block(t, 20.0 * level(i) * wobble * f)));
            r.add(cut);
        }
        (r, at)
    }

    #[test]
    fn a_change_inside_the_ops_own_wander_is_not_called() {
        let cfg = crate::config::parse_for_test(YAML).unwrap();
        // The level wanders by up to ±12 % from one 20 s window to the next, as a
        // shared machine's does; the deploy adds 10 % where it holds still. Its
        // windows alone (3 % block to block) would call it; the 6 pairs of windows laid
        // over the 5 minutes before say that two windows differ this much without a
        // deploy.
        let pat = [
            0.3, -0.8, 1.0, -0.2, -0.9, 0.6, 0.1, 0.7, -0.5, -1.0, 0.9, 0.2, -0.3, 0.4,
        ];
        let wander = |i: usize| {
            // Pair k spans blocks s_k .. s_k + 21 (10 before, 1 between, 10 after).
            let Some(back) = 140usize.checked_sub(i + 1) else {
                return 1.0;
            };
            let k = back / 21;
            let o = 20 - back % 21;
            1.0 + 0.12 * pat[(2 * k + usize::from(o >= 11)) % pat.len()]
        };
        let (r, at) = history(150, wander, 1.10);
        let v = judge_load("d", "calm", at, &cfg.deploys, &cfg.scenarios, &r);
        assert_eq!(v.state, State::Unchanged, "{:#?}", v.findings);
        let p50 = v.findings.iter().find(|f| f.measure == "p50").unwrap();
        let d = p50.drift.as_ref().expect("drift evidence");
        assert!(d.pairs >= MIN_PAIRS, "{d:?}");
        assert!(d.interval[1] > 0.10, "{d:?}");
        assert!(
            p50.why
                .contains("within its wander between windows without a deploy"),
            "{}",
            p50.why
        );
        // Without the history, the windows alone call it, and the verdict says the
        // wander is not known.
        let (r, at) = history(21, |_| 1.0, 1.10);
        let v = judge_load("d", "calm", at, &cfg.deploys, &cfg.scenarios, &r);
        assert!(
            v.reasons
                .iter()
                .any(|x| x.contains("wander between windows without a deploy is not known yet")),
            "{:?}",
            v.reasons
        );
    }

    #[test]
    fn a_change_beyond_a_steady_ops_wander_is_called_with_it_as_evidence() {
        let cfg = crate::config::parse_for_test(YAML).unwrap();
        let (r, at) = history(150, |_| 1.0, 1.3);
        let v = judge_load("d", "calm", at, &cfg.deploys, &cfg.scenarios, &r);
        assert_eq!(v.state, State::Regressed, "{:#?}", v.findings);
        let p50 = v.findings.iter().find(|f| f.measure == "p50").unwrap();
        assert_eq!(p50.change, Change::Worse, "{}", p50.why);
        assert!(p50.why.contains("outside its wander"), "{}", p50.why);
        // A deploy inside the history takes its pairs out.
        let (mut r, at) = history(150, |_| 1.0, 1.3);
        for k in 0..7 {
            r.mark("calm", 110.0 + 42.0 * k as f64);
        }
        let v = judge_load("d", "calm", at, &cfg.deploys, &cfg.scenarios, &r);
        assert!(
            v.findings.iter().all(|f| f.drift.is_none()),
            "{:#?}",
            v.findings
        );
    }
}
