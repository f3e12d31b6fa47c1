//! How far an op's latency wanders between two windows when nothing was deployed, from
//! its own history: the deploy's windows are laid again over the last day (before,
//! gap, after, each pair ending where the next begins), every pair without a deploy
//! in it gives one change, and a deploy's change is then judged against those as a new
//! observation against repeated ones — a Student-t prediction interval
//! ([`prediction_p`]). A half hour of blocks says how noisy one window is; only the
//! day says how far two windows drift apart, and on a shared machine that drift (a
//! neighbour's batch job, a cache warming, CPU frequency) is often larger than the
//! change a deploy makes.
//!
//! The change of a window pair is the median of the after window's per-block log
//! quantiles minus the before window's (relative to a control: the op's log quantile
//! minus the control's, per block, first) — robust to a block soakd itself disturbed,
//! and cheap to keep: a day of one op is 1,440 × 24 bytes.

use super::stats::prediction_p;
use serde::{Deserialize, Serialize};

/// Pairs of windows without a deploy needed before the drift is judged.
pub const MIN_PAIRS: usize = 6;

/// A block reduced to what the drift check keeps: its start and the natural logarithms
/// of its quantiles ([`super::block::QUANTILES`]), seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub t: f64,
    pub ln_q: [f32; 3],
}

impl Summary {
    pub fn of(b: &super::block::Block) -> Option<Summary> {
        let mut ln_q = [0f32; 3];
        for (x, q) in ln_q.iter_mut().zip(super::block::QUANTILES) {
            *x = b.quantile(q)?.max(1e-9).ln() as f32;
        }
        Some(Summary { t: b.t, ln_q })
    }
}

/// The windows of a deploy, as lengths (seconds): before, the gap between them (the
/// settling), after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub before: f64,
    pub gap: f64,
    pub after: f64,
}

impl Geometry {
    fn span(&self) -> f64 {
        self.before + self.gap + self.after
    }
}

/// What the drift check has for one op: the deploy's own change per quantile and the
/// changes of the pairs of windows before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub now: [f64; 3],
    pub past: Vec<[f64; 3]>,
    /// The history the pairs were laid over, seconds.
    pub history: f64,
}

/// A latency finding's drift evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCheck {
    /// Pairs of windows without a deploy.
    pub pairs: usize,
    /// Hours of history they were laid over.
    pub hours: f64,
    /// The 95 % prediction interval of a change between two windows without a deploy,
    /// as after / before − 1.
    pub interval: [f64; 2],
    /// The deploy's change as the drift check measures it (medians of block quantiles).
    pub change: f64,
    /// Its prediction p-value against the pairs, and after Holm's correction.
    pub p: f64,
    pub p_adjusted: f64,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The change between two windows' blocks (each `[ln p50, ln p95, ln p99]`): the
/// medians' difference per quantile. None when either has fewer than `min_blocks`.
pub fn change(before: &[[f64; 3]], after: &[[f64; 3]], min_blocks: usize) -> Option<[f64; 3]> {
    if before.len() < min_blocks.max(1) || after.len() < min_blocks.max(1) {
        return None;
    }
    let mut out = [0.0; 3];
    for (i, o) in out.iter_mut().enumerate() {
        let mut b: Vec<f64> = before.iter().map(|x| x[i]).collect();
        let mut a: Vec<f64> = after.iter().map(|x| x[i]).collect();
        *o = median(&mut a)? - median(&mut b)?;
    }
    Some(out)
}

/// The changes of the window pairs laid back from `end` over `series` (block starts
/// with their log quantiles, in time order) no further than `since`: pair k's after
/// window ends at `end − k·span`. A pair is skipped when a time in `marks` (deploys,
/// restarts) falls inside it or when either window has fewer than `min_blocks`.
pub fn past_changes(
    series: &[(f64, [f64; 3])],
    end: f64,
    since: f64,
    g: Geometry,
    min_blocks: usize,
    marks: &[f64],
) -> Vec<[f64; 3]> {
    let span = g.span();
    let mut out = Vec::new();
    if span <= 0.0 {
        return out;
    }
    let eps = 1e-6;
    let mut e = end;
    while e - span >= since - eps {
        let s = e - span;
        if !marks.iter().any(|m| *m >= s - eps && *m < e) {
            let pick = |from: f64, to: f64| -> Vec<[f64; 3]> {
                let lo = series.partition_point(|(t, _)| *t < from - eps);
                series[lo..]
                    .iter()
                    .take_while(|(t, _)| *t < to - eps)
                    .map(|(_, q)| *q)
                    .collect()
            };
            let before = pick(s, s + g.before);
            let after = pick(e - g.after, e);
            if let Some(c) = change(&before, &after, min_blocks) {
                out.push(c);
            }
        }
        e = s;
    }
    out
}

/// The drift evidence for quantile `i` of `d`, without the Holm adjustment (set
/// `p_adjusted` from the family). None with fewer than [`MIN_PAIRS`] pairs.
pub fn check(d: &Drift, i: usize) -> Option<DriftCheck> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let xs: Vec<f64> = d.past.iter().map(|c| c[i]).collect();
    let k = xs.len();
    if k < MIN_PAIRS {
        return None;
    }
    let y = d.now[i];
    let p = prediction_p(&xs, y)?;
    let m = xs.iter().sum::<f64>() / k as f64;
    let s = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (k - 1) as f64)
        .ok()?
        .inverse_cdf(0.975);
    let half = t * s * (1.0 + 1.0 / k as f64).sqrt();
    Some(DriftCheck {
        pairs: k,
        hours: d.history / 3600.0,
        interval: [(m - half).exp() - 1.0, (m + half).exp() - 1.0],
        change: y.exp() - 1.0,
        p,
        p_adjusted: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, level: impl Fn(usize) -> f64) -> Vec<(f64, [f64; 3])> {
        (0..n)
            .map(|i| {
                let l = level(i);
                (i as f64 * 60.0, [l, l + 1.0, l + 1.5])
            })
            .collect()
    }

    #[test]
    fn pairs_are_laid_back_from_the_end_and_skip_deploys() {
        // 100 blocks of a minute; windows of 10, a gap of 2: a 22-minute span, so four
        // pairs fit back from minute 100 (ending at 100, 78, 56, 34; the fifth would
        // start at minute −10).
        let s = series(100, |i| if i % 22 < 10 { 0.0 } else { 0.1 });
        let g = Geometry {
            before: 600.0,
            gap: 120.0,
            after: 600.0,
        };
        let c = past_changes(&s, 6000.0, 0.0, g, 5, &[]);
        assert_eq!(c.len(), 4);
        // A deploy inside the second pair (minutes 56–78) takes it out.
        let c2 = past_changes(&s, 6000.0, 0.0, g, 5, &[60.0 * 60.0]);
        assert_eq!(c2.len(), 3);
        // Too few blocks in a window: not a pair.
        assert!(past_changes(&s, 6000.0, 0.0, g, 11, &[]).is_empty());
    }

    #[test]
    fn a_change_inside_the_usual_wander_is_not_outside_the_interval() {
        // Pairs that moved ±10 %: a deploy's +8 % lies well inside, +60 % far outside.
        let past: Vec<[f64; 3]> = (0..20)
            .map(|k| {
                let x = if k % 2 == 0 { 0.1 } else { -0.1 };
                [x, x, x]
            })
            .collect();
        let d = Drift {
            now: [0.08f64.ln_1p(); 3],
            past: past.clone(),
            history: 86_400.0,
        };
        let c = check(&d, 1).unwrap();
        assert!(c.p > 0.3, "{c:?}");
        assert!(c.interval[0] < -0.15 && c.interval[1] > 0.15, "{c:?}");
        assert!((c.change - 0.08).abs() < 1e-9);
        let d = Drift {
            now: [0.6f64.ln_1p(); 3],
            past,
            history: 86_400.0,
        };
        assert!(check(&d, 1).unwrap().p < 1e-3);
        // Too few pairs: no check.
        let d = Drift {
            now: [0.0; 3],
            past: vec![[0.0; 3]; MIN_PAIRS - 1],
            history: 3600.0,
        };
        assert!(check(&d, 0).is_none());
    }

    #[test]
    fn the_change_is_the_difference_of_the_medians() {
        let b = [[0.0, 1.0, 2.0], [0.2, 1.0, 2.0], [9.0, 1.0, 2.0]];
        let a = [[0.5, 1.5, 2.0], [0.5, 1.5, 2.0], [0.5, 1.5, 2.0]];
        let c = change(&b, &a, 3).unwrap();
        assert!((c[0] - 0.3).abs() < 1e-12 && (c[1] - 0.5).abs() < 1e-12 && c[2] == 0.0);
        assert!(change(&b, &a, 4).is_none());
    }
}
