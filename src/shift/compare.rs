//! A before/after comparison of every op's blocks: latency quantiles, the error ratio
//! by kind and (per scenario) the share of arrivals dropped, each tested, the family
//! corrected with Holm's procedure, and each change called only when it is both
//! significant and at least the minimum effect.

use super::block::Block;
use super::drift::{check, Drift, DriftCheck};
use super::stats::{holm, quantile_shifts, ratio_shift, Paired};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

pub use super::block::QUANTILES;
/// Fewer blocks than this on either side and a measure is not compared (too few to
/// rank or resample).
pub const MIN_BLOCKS: usize = 5;
/// The level of the intervals reported beside each effect.
pub const LEVEL: f64 = 0.95;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The chance, per deploy, of calling a change where there is none (the family-wise
    /// α Holm's correction holds across every test of the deploy).
    pub false_alarm: f64,
    /// The smallest relative change of a latency quantile that counts.
    pub min_latency: f64,
    /// The smallest relative change of an error (or drop) ratio that counts …
    pub min_errors: f64,
    /// Bootstrap and permutation resamples.
    pub resamples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            false_alarm: 0.01,
            min_latency: 0.05,
            min_errors: 0.5,
            resamples: 2000,
        }
    }
}

/// One op's blocks in each window.
pub struct OpWindows<'a> {
    /// `scenario/op`.
    pub subject: String,
    pub before: Vec<&'a Block>,
    pub after: Vec<&'a Block>,
    /// … and at least this many points of the ratio (a tenth of the scenario's
    /// `slo.error_rate`, or 0.1 point without one).
    pub errors_floor: f64,
    /// Latency relative to a control: its name and its blocks paired with `before`
    /// and `after` by index.
    pub control: Option<Control<'a>>,
    /// The op's wander between windows without a deploy (`shift::drift`), when its
    /// history holds it.
    pub drift: Option<Drift>,
}

/// What an op's latency is judged relative to (`deploys.controls`).
pub struct Control<'a> {
    pub name: String,
    pub before: Vec<&'a Block>,
    pub after: Vec<&'a Block>,
}

/// A scenario's arrivals per block: `(dropped, offered)` in each window.
pub struct Drops {
    pub scenario: String,
    pub before: Vec<(u64, u64)>,
    pub after: Vec<(u64, u64)>,
    pub floor: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Worse,
    Better,
    None,
}

/// One measure's comparison and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `scenario/op`, or the scenario for dropped arrivals.
    pub subject: String,
    /// `p50`, `p95`, `p99`, `errors:<kind>` or `dropped`.
    pub measure: String,
    pub before: f64,
    pub after: f64,
    /// Latency: after / before − 1. Ratios: after − before.
    pub effect: f64,
    /// The 95 % block-bootstrap interval of the effect.
    pub ci: [f64; 2],
    /// The test's p-value, and after Holm's correction over the deploy's tests.
    pub p: f64,
    pub p_adjusted: f64,
    /// The smallest effect that counts for this measure (in the effect's unit).
    pub min_effect: f64,
    pub change: Change,
    pub why: String,
    /// Latency judged relative to this control's (`before`/`after` stay the op's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<String>,
    /// Latency: the change against the op's own wander between windows without a
    /// deploy; a change is called only outside it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftCheck>,
}

fn pct(x: f64) -> String {
    let v = x * 100.0;
    if v.abs() >= 10.0 {
        format!("{v:+.0} %")
    } else {
        format!("{v:+.1} %")
    }
}

fn ratio_pct(x: f64) -> String {
    let v = x * 100.0;
    if v == 0.0 {
        "0 %".into()
    } else if v.abs() < 0.1 {
        format!("{v:.3} %")
    } else {
        format!("{v:.2} %")
    }
}

fn p_text(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.0e}")
    } else {
        format!("{p:.4}")
    }
}

/// A stable seed from names (FNV-1a over their bytes in turn): the same comparison
/// resamples the same way every time, so a re-judged deploy or a re-read comparison
/// agrees.
pub fn seed_of(parts: &[&str]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
}

/// Compares every op (and every scenario's drops). `seed` fixes the resampling, so the
/// same blocks always give the same verdict (a restart re-judging a deploy agrees).
pub fn compare(ops: &[OpWindows], drops: &[Drops], s: &Settings, seed: u64) -> Vec<Finding> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<Finding> = Vec::new();
    for o in ops {
        let enough = |w: &[&Block]| w.iter().filter(|b| b.count() > 0).count() >= MIN_BLOCKS;
        if enough(&o.before) && enough(&o.after) {
            let shifts = quantile_shifts(
                &o.before,
                &o.after,
                o.control.as_ref().map(|c| Paired {
                    before: &c.before,
                    after: &c.after,
                }),
                &QUANTILES,
                s.resamples,
                LEVEL,
                &mut rng,
            );
            for x in shifts.into_iter().flatten() {
                let i = QUANTILES.iter().position(|q| *q == x.q).unwrap_or(0);
                out.push(Finding {
                    subject: o.subject.clone(),
                    measure: format!("p{}", (x.q * 100.0).round()),
                    before: x.before,
                    after: x.after,
                    effect: x.effect,
                    ci: [x.ci.0, x.ci.1],
                    p: x.p,
                    p_adjusted: x.p,
                    min_effect: s.min_latency,
                    change: Change::None,
                    why: String::new(),
                    relative_to: o.control.as_ref().map(|c| c.name.clone()),
                    drift: o.drift.as_ref().and_then(|d| check(d, i)),
                });
            }
        }
        let with_requests =
            |w: &[&Block]| w.iter().filter(|b| b.requests > 0).count() >= MIN_BLOCKS;
        if !(with_requests(&o.before) && with_requests(&o.after)) {
            continue;
        }
        let mut kinds: Vec<&String> = o
            .before
            .iter()
            .chain(&o.after)
            .flat_map(|b| b.errors.keys())
            .collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let per = |w: &[&Block]| -> Vec<(u64, u64)> {
                w.iter()
                    .map(|b| (b.errors.get(kind).copied().unwrap_or(0), b.requests))
                    .collect()
            };
            if let Some(r) = ratio_shift(
                &per(&o.before),
                &per(&o.after),
                s.resamples,
                LEVEL,
                &mut rng,
            ) {
                out.push(ratio_finding(
                    &o.subject,
                    format!("errors:{kind}"),
                    r,
                    o.errors_floor,
                    s,
                ));
            }
        }
    }
    for d in drops {
        if d.before.len() < MIN_BLOCKS || d.after.len() < MIN_BLOCKS {
            continue;
        }
        if d.before.iter().chain(&d.after).all(|(x, _)| *x == 0) {
            continue;
        }
        if let Some(r) = ratio_shift(&d.before, &d.after, s.resamples, LEVEL, &mut rng) {
            out.push(ratio_finding(&d.scenario, "dropped".into(), r, d.floor, s));
        }
    }
    let adjusted = holm(&out.iter().map(|f| f.p).collect::<Vec<_>>());
    let m = out.len();
    // The drift checks are a family of their own: a change must pass both.
    let with_drift: Vec<usize> = (0..m).filter(|i| out[*i].drift.is_some()).collect();
    let drift_adjusted = holm(
        &with_drift
            .iter()
            .filter_map(|i| out[*i].drift.as_ref().map(|d| d.p))
            .collect::<Vec<_>>(),
    );
    for (i, pa) in with_drift.into_iter().zip(drift_adjusted) {
        if let Some(d) = out[i].drift.as_mut() {
            d.p_adjusted = pa;
        }
    }
    for (f, pa) in out.iter_mut().zip(adjusted) {
        f.p_adjusted = pa;
        decide(f, s, m);
    }
    out
}

fn ratio_finding(
    subject: &str,
    measure: String,
    r: super::stats::RatioShift,
    floor: f64,
    s: &Settings,
) -> Finding {
    Finding {
        subject: subject.to_string(),
        measure,
        before: r.before,
        after: r.after,
        effect: r.effect,
        ci: [r.ci.0, r.ci.1],
        p: r.p,
        p_adjusted: r.p,
        min_effect: floor.max(s.min_errors * r.before.min(r.after).max(0.0)),
        change: Change::None,
        why: String::new(),
        relative_to: None,
        drift: None,
    }
}

/// A change is called when its adjusted p is under the false-alarm rate, its interval
/// excludes no change, and its effect is at least the minimum.
fn decide(f: &mut Finding, s: &Settings, tests: usize) {
    let latency = f.measure.starts_with('p');
    let significant = f.p_adjusted < s.false_alarm
        && ((f.effect > 0.0 && f.ci[0] > 0.0) || (f.effect < 0.0 && f.ci[1] < 0.0));
    // Outside the op's own wander between windows, in the same direction.
    let beyond_drift = f
        .drift
        .as_ref()
        .is_none_or(|d| d.p_adjusted < s.false_alarm && (d.change > 0.0) == (f.effect > 0.0));
    let material = f.effect.abs() >= f.min_effect;
    f.change = match (significant && beyond_drift && material, f.effect > 0.0) {
        (true, true) => Change::Worse,
        (true, false) => Change::Better,
        (false, _) => Change::None,
    };
    let what = if latency {
        let relative = f
            .relative_to
            .as_ref()
            .map(|c| format!(" relative to {c}"))
            .unwrap_or_default();
        format!(
            "{} of {} {} → {} ({}{relative}, 95 % interval {} to {})",
            f.measure,
            f.subject,
            crate::units::format_latency(f.before),
            crate::units::format_latency(f.after),
            pct(f.effect),
            pct(f.ci[0]),
            pct(f.ci[1]),
        )
    } else {
        let name = match f.measure.strip_prefix("errors:") {
            Some(kind) => format!("{kind} errors of {}", f.subject),
            None => format!("arrivals of {} dropped", f.subject),
        };
        format!(
            "{name} {} → {} ({} points, 95 % interval {} to {})",
            ratio_pct(f.before),
            ratio_pct(f.after),
            pct(f.effect).replace(" %", ""),
            pct(f.ci[0]).replace(" %", ""),
            pct(f.ci[1]).replace(" %", ""),
        )
    };
    let test = if latency {
        "rank test"
    } else {
        "permutation test"
    };
    let verdict = match f.change {
        Change::Worse => "worse".to_string(),
        Change::Better => "better".to_string(),
        Change::None if !significant => format!(
            "no change shown: {test} p = {} after Holm over {tests} tests (needs < {})",
            p_text(f.p_adjusted),
            s.false_alarm
        ),
        Change::None if !beyond_drift => {
            let d = f.drift.as_ref();
            format!(
                "within its wander between windows without a deploy ({} to {} from {} pairs over the last {:.0} h; p = {} after Holm, needs < {})",
                pct(d.map_or(0.0, |d| d.interval[0])),
                pct(d.map_or(0.0, |d| d.interval[1])),
                d.map_or(0, |d| d.pairs),
                d.map_or(0.0, |d| d.hours),
                p_text(d.map_or(1.0, |d| d.p_adjusted)),
                s.false_alarm
            )
        }
        Change::None => format!(
            "significant but under the minimum effect ({})",
            if latency {
                pct(f.min_effect).trim_start_matches('+').to_string()
            } else {
                format!(
                    "{} points",
                    pct(f.min_effect).trim_start_matches('+').replace(" %", "")
                )
            }
        ),
    };
    f.why = match f.change {
        Change::None => format!("{what}: {verdict}"),
        _ => {
            let drift = f
                .drift
                .as_ref()
                .map(|d| {
                    format!(
                        "; outside its wander between windows without a deploy, {} to {} from {} pairs over the last {:.0} h, p = {}",
                        pct(d.interval[0]),
                        pct(d.interval[1]),
                        d.pairs,
                        d.hours,
                        p_text(d.p_adjusted)
                    )
                })
                .unwrap_or_default();
            format!(
                "{what}: {verdict} ({test} p = {} after Holm over {tests} tests{drift})",
                p_text(f.p_adjusted)
            )
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn blocks(seed: u64, n: usize, scale: f64, err: f64) -> Vec<Block> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let mut h = crate::metrics::window::new_hist::<u64>();
                let mut e = 0;
                for _ in 0..3000 {
                    let u: f64 = rng.random_range(1e-9..1.0);
                    h.record((-u.ln() * 20_000.0 * scale).max(1.0) as u64)
                        .unwrap();
                    if rng.random::<f64>() < err {
                        e += 1;
                    }
                }
                let mut b = Block {
                    t: i as f64 * 60.0,
                    secs: 60.0,
                    hist: Block::hist_of(&h),
                    requests: 3000,
                    ..Block::default()
                };
                if e > 0 {
                    b.errors.insert("http_5xx".into(), e);
                }
                b
            })
            .collect()
    }

    fn run(before: &[Block], after: &[Block]) -> Vec<Finding> {
        let op = OpWindows {
            subject: "api/get".into(),
            before: before.iter().collect(),
            after: after.iter().collect(),
            errors_floor: 0.001,
            control: None,
            drift: None,
        };
        compare(
            &[op],
            &[],
            &Settings {
                resamples: 400,
                ..Settings::default()
            },
            1,
        )
    }

    #[test]
    fn slower_is_worse_and_the_same_is_no_change() {
        let before = blocks(1, 30, 1.0, 0.001);
        let f = run(&before, &blocks(2, 30, 1.15, 0.001));
        let p95 = f.iter().find(|f| f.measure == "p95").unwrap();
        assert_eq!(p95.change, Change::Worse, "{}", p95.why);
        assert!(p95.why.starts_with("p95 of api/get"), "{}", p95.why);
        assert!(f
            .iter()
            .all(|x| x.measure.starts_with('p') || x.change == Change::None));
        let f = run(&before, &blocks(3, 30, 1.0, 0.001));
        assert!(f.iter().all(|x| x.change == Change::None), "{f:#?}");
        // Faster by 15 %: better.
        let f = run(&before, &blocks(4, 30, 0.85, 0.001));
        assert!(f
            .iter()
            .any(|x| x.measure == "p50" && x.change == Change::Better));
    }

    #[test]
    fn more_errors_is_worse_by_kind() {
        let f = run(&blocks(1, 30, 1.0, 0.001), &blocks(2, 30, 1.0, 0.005));
        let e = f.iter().find(|f| f.measure == "errors:http_5xx").unwrap();
        assert_eq!(e.change, Change::Worse, "{}", e.why);
        assert!(
            e.why.contains("http_5xx errors of api/get 0.1"),
            "{}",
            e.why
        );
    }

    #[test]
    fn too_few_blocks_compare_nothing() {
        assert!(run(&blocks(1, 4, 1.0, 0.0), &blocks(2, 30, 2.0, 0.0)).is_empty());
    }
}
