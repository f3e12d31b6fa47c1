//! The tests a before/after comparison runs on blocks: a block bootstrap of quantile
//! differences, the Mann–Whitney rank test (statrs) on the blocks' own quantiles, a
//! block permutation test and bootstrap of a pooled ratio (errors by kind, dropped
//! arrivals), and Holm's step-down correction of a family of p-values.

use super::block::{range, Block, Dense};
use rand::rngs::StdRng;
use rand::Rng;
use statrs::stats_tests::mannwhitneyu::{mannwhitneyu, MannWhitneyUMethod};
use statrs::stats_tests::Alternative;

/// A quantile's change between two windows.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileShift {
    pub q: f64,
    /// Of each window's blocks merged, seconds.
    pub before: f64,
    pub after: f64,
    /// after / before − 1.
    pub effect: f64,
    /// The block bootstrap's percentile interval of the effect, at `level`.
    pub ci: (f64, f64),
    /// Two-sided Mann–Whitney p-value of the blocks' own quantiles, its deviate
    /// deflated by their autocorrelation.
    pub p: f64,
}

/// Percentile `p` (0..1) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// Two-sided Mann–Whitney p-value (the normal approximation with ties and continuity
/// corrected, as scipy's); 1 when either side is empty or all values tie.
pub fn rank_test(before: &[f64], after: &[f64]) -> f64 {
    if before.is_empty() || after.is_empty() {
        return 1.0;
    }
    let first = before[0];
    if before.iter().chain(after).all(|v| *v == first) {
        return 1.0;
    }
    mannwhitneyu(
        before,
        after,
        MannWhitneyUMethod::Automatic,
        Alternative::TwoSided,
    )
    .map(|(_, p)| p)
    .unwrap_or(1.0)
}

/// The lag-1 autocorrelation of a window's block values about their own mean, pooled
/// over both windows; 0 with too few blocks or when negative.
pub fn lag1(before: &[f64], after: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for w in [before, after] {
        // A window whose blocks all read the same (one bucket) says nothing of how
        // they wander — and its mean's rounding would read as ρ ≈ 1.
        if w.len() < 3 || w.iter().all(|x| *x == w[0]) {
            continue;
        }
        let m = w.iter().sum::<f64>() / w.len() as f64;
        for i in 0..w.len() {
            den += (w[i] - m).powi(2);
            if i + 1 < w.len() {
                num += (w[i] - m) * (w[i + 1] - m);
            }
        }
    }
    if den <= 0.0 {
        0.0
    } else {
        (num / den).clamp(0.0, 0.9)
    }
}

/// How much autocorrelation `rho` inflates a mean's variance: (1 + ρ)/(1 − ρ), the AR(1)
/// long-run factor — minutes that wander together count as fewer independent ones.
pub fn inflation(rho: f64) -> f64 {
    (1.0 + rho) / (1.0 - rho)
}

/// A two-sided p-value with its normal deviate shrunk by √`factor` (an effective sample
/// size `factor` times smaller).
pub fn deflate(p: f64, factor: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    if factor <= 1.0 || !(0.0..1.0).contains(&p) {
        return p;
    }
    let Ok(n) = Normal::new(0.0, 1.0) else {
        return p;
    };
    let z = n.inverse_cdf(1.0 - p / 2.0) / factor.sqrt();
    (2.0 * (1.0 - n.cdf(z))).clamp(0.0, 1.0)
}

/// A control's blocks, each paired with the op's block at the same index (the same
/// period): what every environment-wide drift moves too.
#[derive(Clone, Copy)]
pub struct Paired<'a, 'b> {
    pub before: &'a [&'b Block],
    pub after: &'a [&'b Block],
}

/// Quantiles `qs` before and after, with a block bootstrap (`resamples`) interval of
/// each relative difference at `level`, and a rank test over the blocks' quantiles.
/// None for a quantile either window recorded nothing of.
///
/// With a `control` (blocks paired with the op's by index), the effect is relative to
/// it — (op after / op before) / (control after / control before) − 1, a difference in
/// differences — the bootstrap resamples pairs, and the rank test ranks each block's
/// log ratio of op to control: a drift that moves both (the machine, the network, a
/// shared neighbour) cancels.
pub fn quantile_shifts(
    before: &[&Block],
    after: &[&Block],
    control: Option<Paired>,
    qs: &[f64],
    resamples: usize,
    level: f64,
    rng: &mut StdRng,
) -> Vec<Option<QuantileShift>> {
    let all: Vec<&Block> = before.iter().chain(after).copied().collect();
    let Some((lo, hi)) = range(&all) else {
        return qs.iter().map(|_| None).collect();
    };
    let control =
        control.filter(|c| c.before.len() == before.len() && c.after.len() == after.len());
    let dc = control.and_then(|c| {
        let all: Vec<&Block> = c.before.iter().chain(c.after).copied().collect();
        let (lo, hi) = range(&all)?;
        Some((Dense::new(c.before, lo, hi), Dense::new(c.after, lo, hi)))
    });
    if control.is_some() && dc.is_none() {
        return qs.iter().map(|_| None).collect();
    }
    let (db, da) = (Dense::new(before, lo, hi), Dense::new(after, lo, hi));
    let ib: Vec<usize> = (0..db.len()).collect();
    let ia: Vec<usize> = (0..da.len()).collect();
    let (mut qb, mut qa) = (Vec::new(), Vec::new());
    db.quantiles(&ib, qs, &mut qb);
    da.quantiles(&ia, qs, &mut qa);
    // The control's own change per quantile (1 without one).
    let (mut cb, mut ca) = (Vec::new(), Vec::new());
    let drift = |cb: &[Option<f64>], ca: &[Option<f64>], k: usize| -> Option<f64> {
        match (cb.get(k).copied().flatten(), ca.get(k).copied().flatten()) {
            (Some(b), Some(a)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    };
    let mut base: Vec<Option<f64>> = qs.iter().map(|_| Some(1.0)).collect();
    if let Some((cdb, cda)) = &dc {
        cdb.quantiles(&ib, qs, &mut cb);
        cda.quantiles(&ia, qs, &mut ca);
        base = (0..qs.len()).map(|k| drift(&cb, &ca, k)).collect();
    }
    let mut effects: Vec<Vec<f64>> = qs.iter().map(|_| Vec::with_capacity(resamples)).collect();
    let (mut pb, mut pa) = (vec![0usize; db.len()], vec![0usize; da.len()]);
    let (mut rb, mut ra) = (Vec::new(), Vec::new());
    if !db.is_empty() && !da.is_empty() {
        for _ in 0..resamples {
            for x in pb.iter_mut() {
                *x = rng.random_range(0..db.len());
            }
            for x in pa.iter_mut() {
                *x = rng.random_range(0..da.len());
            }
            db.quantiles(&pb, qs, &mut rb);
            da.quantiles(&pa, qs, &mut ra);
            if let Some((cdb, cda)) = &dc {
                cdb.quantiles(&pb, qs, &mut cb);
                cda.quantiles(&pa, qs, &mut ca);
            }
            for (k, e) in effects.iter_mut().enumerate() {
                let d = if dc.is_some() {
                    drift(&cb, &ca, k)
                } else {
                    Some(1.0)
                };
                if let (Some(b), Some(a), Some(d)) = (rb[k], ra[k], d) {
                    e.push(a / b / d - 1.0);
                }
            }
        }
    }
    let tail = (1.0 - level) / 2.0;
    qs.iter()
        .enumerate()
        .map(|(k, q)| {
            let (b, a, d) = (qb[k]?, qa[k]?, base[k]?);
            let e = &mut effects[k];
            e.sort_by(f64::total_cmp);
            // Each block's quantile, or its log ratio to the control's.
            let own = |blocks: &[&Block], ctrl: Option<&[&Block]>| -> Vec<f64> {
                match ctrl {
                    None => blocks.iter().filter_map(|x| x.quantile(*q)).collect(),
                    Some(c) => blocks
                        .iter()
                        .zip(c)
                        .filter_map(|(x, y)| Some((x.quantile(*q)? / y.quantile(*q)?).ln()))
                        .collect(),
                }
            };
            // Blocks are the unit, but minutes wander together (a GC regime, a cache,
            // a neighbour): the rank test's deviate and the interval's width are
            // corrected by the blocks' own lag-1 autocorrelation.
            let (ob, oa) = (
                own(before, control.map(|c| c.before)),
                own(after, control.map(|c| c.after)),
            );
            let f = inflation(lag1(&ob, &oa));
            let effect = a / b / d - 1.0;
            let widen = |x: f64| effect + (x - effect) * f.sqrt();
            Some(QuantileShift {
                q: *q,
                before: b,
                after: a,
                effect,
                ci: (widen(percentile(e, tail)), widen(percentile(e, 1.0 - tail))),
                p: deflate(rank_test(&ob, &oa), f),
            })
        })
        .collect()
}

/// A pooled ratio's change between two windows (events over totals, summed per block).
#[derive(Debug, Clone, PartialEq)]
pub struct RatioShift {
    pub before: f64,
    pub after: f64,
    /// after − before (points of the ratio, as a fraction).
    pub effect: f64,
    /// The block bootstrap's percentile interval of the difference, at `level`.
    pub ci: (f64, f64),
    /// Two-sided block permutation p-value.
    pub p: f64,
}

fn pooled(blocks: &[(u64, u64)], pick: impl Iterator<Item = usize>) -> Option<f64> {
    let (mut e, mut n) = (0u64, 0u64);
    for k in pick {
        e += blocks[k].0;
        n += blocks[k].1;
    }
    (n > 0).then(|| e as f64 / n as f64)
}

/// `(events, total)` per block before and after: the pooled ratios, a block bootstrap
/// interval of their difference and a permutation test that the blocks' labels do not
/// matter (`resamples` each). None when either window has no total.
pub fn ratio_shift(
    before: &[(u64, u64)],
    after: &[(u64, u64)],
    resamples: usize,
    level: f64,
    rng: &mut StdRng,
) -> Option<RatioShift> {
    let b = pooled(before, 0..before.len())?;
    let a = pooled(after, 0..after.len())?;
    let observed = a - b;
    let mut diffs = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let rb = pooled(
            before,
            (0..before.len()).map(|_| rng.random_range(0..before.len())),
        );
        let ra = pooled(
            after,
            (0..after.len()).map(|_| rng.random_range(0..after.len())),
        );
        if let (Some(rb), Some(ra)) = (rb, ra) {
            diffs.push(ra - rb);
        }
    }
    diffs.sort_by(f64::total_cmp);
    // Permutation: the blocks of both windows, relabelled at random.
    let all: Vec<(u64, u64)> = before.iter().chain(after).copied().collect();
    let mut idx: Vec<usize> = (0..all.len()).collect();
    let mut extreme = 0usize;
    let p = if observed == 0.0 {
        1.0
    } else {
        for _ in 0..resamples {
            for i in (1..idx.len()).rev() {
                let j = rng.random_range(0..=i);
                idx.swap(i, j);
            }
            let (pb, pa) = idx.split_at(before.len());
            let d = match (
                pooled(&all, pb.iter().copied()),
                pooled(&all, pa.iter().copied()),
            ) {
                (Some(x), Some(y)) => y - x,
                _ => 0.0,
            };
            if d.abs() >= observed.abs() - 1e-15 {
                extreme += 1;
            }
        }
        (extreme + 1) as f64 / (resamples + 1) as f64
    };
    let tail = (1.0 - level) / 2.0;
    Some(RatioShift {
        before: b,
        after: a,
        effect: observed,
        ci: (percentile(&diffs, tail), percentile(&diffs, 1.0 - tail)),
        p,
    })
}

/// Holm's step-down adjusted p-values, in the order given: the family-wise error rate
/// stays at α when every adjusted p below α is called. (adjustp, the maintained crate
/// of p-value adjustments, has Bonferroni and the Benjamini procedures but not Holm.)
pub fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| ps[*a].total_cmp(&ps[*b]));
    let mut out = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * ps[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Two-sided p-value of a new run's value `y` against repeated runs' values `xs` (their
/// spread from run to run, each already holding its own sampling noise): Student's t
/// with k − 1 degrees of freedom on (y − mean) / (s·√(1 + 1/k)) — `y` outside the
/// prediction interval at level 1 − p. None with fewer than 2 runs; with no spread at
/// all, 1 when `y` is the runs' value and 0 otherwise.
pub fn prediction_p(xs: &[f64], y: f64) -> Option<f64> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let k = xs.len();
    if k < 2 || !y.is_finite() || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let m = xs.iter().sum::<f64>() / k as f64;
    let s = (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt();
    let scale = s * (1.0 + 1.0 / k as f64).sqrt();
    if scale <= f64::EPSILON * m.abs().max(1.0) {
        return Some(if (y - m).abs() <= f64::EPSILON * m.abs().max(1.0) {
            1.0
        } else {
            0.0
        });
    }
    let t = ((y - m) / scale).abs();
    let d = StudentsT::new(0.0, 1.0, (k - 1) as f64).ok()?;
    Some((2.0 * (1.0 - d.cdf(t))).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_new_run_is_judged_against_the_spread_of_repeated_runs() {
        // t = 3 / √(4/3) = 2.598 with 2 degrees of freedom, whose two-sided tail has a
        // closed form: 1 − t/√(t² + 2) = 0.121690.
        let p = prediction_p(&[9.0, 10.0, 11.0], 13.0).unwrap();
        assert!((p - 0.121690).abs() < 1e-5, "{p}");
        assert_eq!(prediction_p(&[10.0], 13.0), None);
        assert_eq!(prediction_p(&[0.0, 0.0], 0.0), Some(1.0));
        assert_eq!(prediction_p(&[0.0, 0.0], 0.01), Some(0.0));
        // Far outside a tight spread: tiny; inside: large.
        assert!(prediction_p(&[1.0, 1.02, 0.98, 1.01], 1.5).unwrap() < 1e-3);
        assert!(prediction_p(&[1.0, 1.5, 0.7, 1.2], 1.1).unwrap() > 0.5);
    }

    fn block(rng: &mut StdRng, n: usize, scale: f64) -> Block {
        let mut h = crate::metrics::window::new_hist::<u64>();
        for _ in 0..n {
            // Exponential latencies with a mean of 20 ms × scale.
            let u: f64 = rng.random_range(1e-9..1.0);
            let us = (-u.ln() * 20_000.0 * scale).max(1.0) as u64;
            h.record(us.min(crate::metrics::window::MAX_MICROS))
                .unwrap();
        }
        Block {
            hist: Block::hist_of(&h),
            requests: n as u64,
            ..Block::default()
        }
    }

    #[test]
    fn a_drift_the_control_shares_cancels_and_a_change_of_the_op_alone_shows() {
        let mut rng = StdRng::seed_from_u64(9);
        // The environment slows everything by 15 % after the deploy; the op itself does
        // not change — and then does, by 20 % more.
        let mk = |rng: &mut StdRng, scales: &[f64]| -> Vec<Block> {
            scales.iter().map(|s| block(rng, 1500, *s)).collect()
        };
        let before_env: Vec<f64> = (0..20).map(|i| 1.0 + 0.02 * (i % 3) as f64).collect();
        let after_env: Vec<f64> = before_env.iter().map(|s| s * 1.15).collect();
        let (ob, cb) = (mk(&mut rng, &before_env), mk(&mut rng, &before_env));
        let (oa, ca) = (mk(&mut rng, &after_env), mk(&mut rng, &after_env));
        let slower: Vec<f64> = after_env.iter().map(|s| s * 1.2).collect();
        let oa_slower = mk(&mut rng, &slower);
        fn r(v: &[Block]) -> Vec<&Block> {
            v.iter().collect()
        }
        let (cbr, car) = (r(&cb), r(&ca));
        let control = Paired {
            before: &cbr,
            after: &car,
        };
        let qs = [0.5, 0.95];
        // Alone, the drift is a 15 % change; against the control, none.
        let alone = quantile_shifts(&r(&ob), &r(&oa), None, &qs, 500, 0.95, &mut rng);
        let p50 = alone[0].clone().unwrap();
        assert!(p50.effect > 0.1 && p50.p < 0.001, "{p50:?}");
        let rel = quantile_shifts(&r(&ob), &r(&oa), Some(control), &qs, 500, 0.95, &mut rng);
        for x in rel.iter().flatten() {
            assert!(x.effect.abs() < 0.07 && x.p > 0.01, "{x:?}");
            assert!(x.ci.0 < 0.0 && x.ci.1 > 0.0, "{x:?}");
        }
        // The op's own 20 % shows through the drift, its raw quantiles reported.
        let rel = quantile_shifts(
            &r(&ob),
            &r(&oa_slower),
            Some(control),
            &qs,
            500,
            0.95,
            &mut rng,
        );
        for x in rel.iter().flatten() {
            assert!((x.effect - 0.2).abs() < 0.06 && x.p < 1e-4, "{x:?}");
            assert!(x.after / x.before > 1.3, "raw: {x:?}");
        }
        // A control not paired with the op block for block is not used.
        let short = Paired {
            before: &cbr[..5],
            after: &car,
        };
        let x = quantile_shifts(&r(&ob), &r(&oa), Some(short), &qs, 100, 0.95, &mut rng);
        assert!(x[0].clone().unwrap().effect > 0.1);
    }

    #[test]
    fn blocks_that_all_read_the_same_are_not_autocorrelated() {
        // Their mean rounds: deviations of 1e-18 once read as ρ = 0.9, deflating a
        // complete separation to p = 0.32.
        let same = [0.0200448440012309_f64; 10];
        assert_eq!(lag1(&same, &same), 0.0);
        let mk = |ms: f64| Block {
            hist: vec![(bucket_of_ms(ms), 90), (bucket_of_ms(ms * 1.5), 10)],
            requests: 100,
            ..Block::default()
        };
        let (b, a): (Vec<Block>, Vec<Block>) = (
            (0..10).map(|_| mk(20.0)).collect(),
            (0..10).map(|_| mk(30.0)).collect(),
        );
        let (rb, ra): (Vec<&Block>, Vec<&Block>) = (b.iter().collect(), a.iter().collect());
        let mut rng = StdRng::seed_from_u64(1);
        let x = quantile_shifts(&rb, &ra, None, &[0.5], 100, 0.95, &mut rng);
        let p = x[0].clone().unwrap().p;
        assert!(p < 1e-4, "{p}");
    }

    fn bucket_of_ms(ms: f64) -> i32 {
        crate::shift::block::bucket_of(ms / 1e3)
    }

    #[test]
    fn wandering_blocks_count_as_fewer() {
        // Independent: no correction. An AR(1) of 0.8: (1.8/0.2) = 9 times the variance.
        let mut rng = StdRng::seed_from_u64(5);
        let iid: Vec<f64> = (0..200).map(|_| rng.random::<f64>()).collect();
        assert!(lag1(&iid[..100], &iid[100..]) < 0.15);
        let mut x = 0.0;
        let ar: Vec<f64> = (0..400)
            .map(|_| {
                x = 0.8 * x + rng.random::<f64>() - 0.5;
                x
            })
            .collect();
        let r = lag1(&ar[..200], &ar[200..]);
        assert!((0.7..0.9).contains(&r), "{r}");
        assert!((inflation(0.8) - 9.0).abs() < 1e-9);
        // p = 0.01 (z 2.576) over a factor of 4 is z 1.288: p 0.198.
        assert!(
            (deflate(0.01, 4.0) - 0.1977).abs() < 0.001,
            "{}",
            deflate(0.01, 4.0)
        );
        assert_eq!(deflate(0.01, 1.0), 0.01);
    }

    #[test]
    fn holm_matches_r_p_adjust() {
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02
        let got = holm(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
    }

    fn r(v: &[Block]) -> Vec<&Block> {
        v.iter().collect()
    }

    #[test]
    fn a_ten_percent_shift_is_found_and_none_is_not() {
        let mut rng = StdRng::seed_from_u64(7);
        let before: Vec<Block> = (0..30).map(|_| block(&mut rng, 3000, 1.0)).collect();
        let same: Vec<Block> = (0..30).map(|_| block(&mut rng, 3000, 1.0)).collect();
        let slower: Vec<Block> = (0..30).map(|_| block(&mut rng, 3000, 1.1)).collect();
        let qs = [0.5, 0.95, 0.99];
        let s = quantile_shifts(&r(&before), &r(&slower), None, &qs, 500, 0.95, &mut rng);
        for x in s.iter().flatten() {
            assert!(x.ci.0 > 0.0 && x.p < 1e-4, "{x:?}");
            assert!((x.effect - 0.1).abs() < 0.04, "{x:?}");
        }
        let s = quantile_shifts(&r(&before), &r(&same), None, &qs, 500, 0.95, &mut rng);
        for x in s.iter().flatten() {
            assert!(x.effect.abs() < 0.04, "{x:?}");
            assert!(x.ci.0 <= x.effect && x.effect <= x.ci.1, "{x:?}");
        }
    }

    #[test]
    fn a_ratio_rising_from_a_tenth_to_half_a_percent_is_found() {
        let mut rng = StdRng::seed_from_u64(3);
        let draw = |rng: &mut StdRng, p: f64| -> (u64, u64) {
            let n = 3000u64;
            ((0..n).filter(|_| rng.random::<f64>() < p).count() as u64, n)
        };
        let before: Vec<_> = (0..30).map(|_| draw(&mut rng, 0.001)).collect();
        let after: Vec<_> = (0..30).map(|_| draw(&mut rng, 0.005)).collect();
        let same: Vec<_> = (0..30).map(|_| draw(&mut rng, 0.001)).collect();
        let s = ratio_shift(&before, &after, 1000, 0.95, &mut rng).unwrap();
        assert!(s.p < 0.01 && s.ci.0 > 0.0, "{s:?}");
        assert!((s.effect - 0.004).abs() < 0.001, "{s:?}");
        let s = ratio_shift(&before, &same, 1000, 0.95, &mut rng).unwrap();
        assert!(s.effect.abs() < 0.001, "{s:?}");
        assert!(ratio_shift(&[], &same, 10, 0.95, &mut rng).is_none());
    }
}
