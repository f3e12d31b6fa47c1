//! The trend of one series over its window: a Theil–Sen slope with a 95 % interval
//! that survives autocorrelation.
//!
//! The estimator is Sen's (1968): the median of the slopes between every pair of
//! points, fitted on at most [`MAX_FIT_POINTS`] points (bucket means). Its interval is
//! Sen's rank interval with the variance of Kendall's S widened by Hamed and Rao's
//! (1998) effective-sample-size factor, computed from the autocorrelations of the ranks
//! of the detrended series — as pymannkendall's `hamed_rao_modification_test` does, but
//! over the contiguous run of significant positive lags from lag 1 rather than every
//! significant lag: a detrended series always has negative long-lag autocorrelations,
//! which cancelled hour-long wander and made the judge cry wolf twice a month on the
//! benchmark's rough noise (docs/BENCHMARKS.md). Sen's plain interval assumes
//! independent points and is several times too narrow on memory series, whose points
//! follow each other; it would cry wolf.
//!
//! A periodic pattern (a garbage collector's sawtooth, connection churn) biases any slope
//! fitted over a window that does not hold whole cycles. When the detrended series has
//! a dominant period that the window holds at least [`MIN_CYCLES`] times, the points are
//! first averaged over whole periods (or, with fewer than 8 of them, over the period that
//! starts at each point: a moving average one period wide), which cancels the pattern. A period longer than a
//! third of the window cannot be told from a trend: [`Fit::resolvable_period`] says the
//! longest one each fit could tell apart.
//!
//! Looked for first: robust-rs (0.1.0, a first release) has Theil–Sen without an
//! interval; u-analytics and mann_kendall have the Mann–Kendall test without the
//! autocorrelation correction. None gives the corrected interval this needs.

/// Points fitted at most (bucket means beyond): ~125,000 pairwise slopes.
pub const MAX_FIT_POINTS: usize = 500;
/// Points a period is looked for in at most: finer than the fit, so a period of a few
/// points (a 15 min sawtooth at one point a minute) is not blurred by the buckets.
pub const MAX_PERIOD_POINTS: usize = 2000;
/// A period is cancelled only when the window holds this many of its cycles.
pub const MIN_CYCLES: f64 = 3.0;
/// Whole-period means are fitted when there are at least this many; fewer cycles are
/// cancelled by a moving average instead.
const MIN_PERIOD_MEANS: usize = 8;
/// z for a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;
/// z for a two-sided 99.9 % interval: the confirmation a `growing` verdict also needs,
/// because a series is judged again every minute on a window that barely moved, and a
/// 95 % bound alone crosses zero by chance a few times a month.
const Z_999: f64 = 3.290_526_731_491_926;

/// A fitted trend; slopes are per second of the points' time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub slope: f64,
    pub lower: f64,
    pub upper: f64,
    /// The 99.9 % interval's bounds (the confirmation of a verdict).
    pub lower_999: f64,
    pub upper_999: f64,
    /// The fitted line's value at the window's start and end.
    pub start_level: f64,
    pub end_level: f64,
    /// The median of the points (what a relative trend is relative to).
    pub level: f64,
    /// Points fitted (after averaging).
    pub points: usize,
    /// The period averaged away, seconds, if one was found.
    pub period: Option<f64>,
    /// Hamed–Rao's n/n* (1 for independent points).
    pub variance_factor: f64,
    /// The longest period this window can tell from a trend, seconds.
    pub resolvable_period: f64,
}

/// Fits `(t, y)` points (t in seconds, ascending; non-finite values skipped). None with
/// fewer than 8 points or no spread in time.
pub fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(t, y)| t.is_finite() && y.is_finite())
        .collect();
    if pts.len() < 8 {
        return None;
    }
    let span = pts[pts.len() - 1].0 - pts[0].0;
    if span <= 0.0 {
        return None;
    }
    let level = median(&mut pts.iter().map(|p| p.1).collect::<Vec<_>>());
    // The period is looked for on the detrended raw points (bucketed to the fit's size).
    let coarse = bucket_means(&pts, MAX_FIT_POINTS);
    let first = sen(&coarse)?;
    let fine = bucket_means(&pts, MAX_PERIOD_POINTS);
    let residuals: Vec<f64> = fine.iter().map(|(t, y)| y - first * t).collect();
    let step = span / (fine.len().max(2) - 1) as f64;
    let period = dominant_period(&residuals).map(|lags| lags * step);
    let fitted = match period {
        Some(p) if span / p >= MIN_CYCLES => {
            // Whole-period means when there are enough of them (they are nearly
            // independent: the benchmark's sawtooth series cry wolf far less on them);
            // with fewer cycles, a moving average one period wide keeps enough points.
            let means = period_means(&pts, p);
            if means.len() >= MIN_PERIOD_MEANS {
                means
            } else {
                bucket_means(&moving_means(&pts, p), MAX_FIT_POINTS)
            }
        }
        _ => coarse,
    };
    if fitted.len() < 4 {
        return None;
    }
    let SenFit {
        slope,
        lower,
        upper,
        lower_999,
        upper_999,
        factor,
    } = sen_interval(&fitted)?;
    let t0 = pts[0].0;
    let t1 = pts[pts.len() - 1].0;
    let intercept = median(
        &mut fitted
            .iter()
            .map(|(t, y)| y - slope * t)
            .collect::<Vec<_>>(),
    );
    Some(Fit {
        slope,
        lower,
        upper,
        lower_999,
        upper_999,
        start_level: intercept + slope * t0,
        end_level: intercept + slope * t1,
        level,
        points: fitted.len(),
        period: period.filter(|p| span / p >= MIN_CYCLES),
        variance_factor: factor,
        resolvable_period: span / MIN_CYCLES,
    })
}

/// Means of consecutive points in at most `max` buckets of equal time.
pub fn bucket_means(pts: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if pts.len() <= max {
        return pts.to_vec();
    }
    let (t0, t1) = (pts[0].0, pts[pts.len() - 1].0);
    let width = (t1 - t0) / max as f64;
    group_means(pts, |t| (((t - t0) / width) as usize).min(max - 1))
}

/// Means over whole periods from the first point (a last partial period is dropped).
fn period_means(pts: &[(f64, f64)], period: f64) -> Vec<(f64, f64)> {
    let t0 = pts[0].0;
    let whole = ((pts[pts.len() - 1].0 - t0) / period).floor() as usize;
    let inside: Vec<(f64, f64)> = pts
        .iter()
        .copied()
        .filter(|(t, _)| (((t - t0) / period) as usize) < whole)
        .collect();
    group_means(&inside, |t| ((t - t0) / period) as usize)
}

/// The mean over one period starting at each point (while a whole period follows it),
/// placed at the period's middle: a pattern of that period cancels in every mean, and the
/// series keeps its resolution (the means follow each other closely; Hamed–Rao's factor
/// widens the interval for it).
fn moving_means(pts: &[(f64, f64)], period: f64) -> Vec<(f64, f64)> {
    let end = pts[pts.len() - 1].0;
    let mut out = Vec::new();
    let (mut j, mut sum) = (0usize, 0.0);
    for i in 0..pts.len() {
        let t = pts[i].0;
        if t + period > end {
            break;
        }
        while j < pts.len() && pts[j].0 < t + period {
            sum += pts[j].1;
            j += 1;
        }
        let n = (j - i) as f64;
        if n > 0.0 {
            out.push((t + period / 2.0, sum / n));
        }
        sum -= pts[i].1;
    }
    out
}

fn group_means(pts: &[(f64, f64)], key: impl Fn(f64) -> usize) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let (mut cur, mut st, mut sy, mut n) = (usize::MAX, 0.0, 0.0, 0.0);
    for &(t, y) in pts {
        let k = key(t);
        if k != cur && n > 0.0 {
            out.push((st / n, sy / n));
            (st, sy, n) = (0.0, 0.0, 0.0);
        }
        cur = k;
        st += t;
        sy += y;
        n += 1.0;
    }
    if n > 0.0 {
        out.push((st / n, sy / n));
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len() % 2 == 1 {
        m
    } else {
        let below = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (m + below) / 2.0
    }
}

fn pair_slopes(pts: &[(f64, f64)]) -> Vec<f64> {
    let mut s = Vec::with_capacity(pts.len() * (pts.len() - 1) / 2);
    for i in 0..pts.len() {
        for j in i + 1..pts.len() {
            let dt = pts[j].0 - pts[i].0;
            if dt > 0.0 {
                s.push((pts[j].1 - pts[i].1) / dt);
            }
        }
    }
    s
}

/// Sen's slope alone.
fn sen(pts: &[(f64, f64)]) -> Option<f64> {
    let mut s = pair_slopes(pts);
    (!s.is_empty()).then(|| median(&mut s))
}

struct SenFit {
    slope: f64,
    lower: f64,
    upper: f64,
    lower_999: f64,
    upper_999: f64,
    factor: f64,
}

/// The k-th smallest (0-based) of `v`, which it reorders.
fn kth(v: &mut [f64], k: usize) -> f64 {
    let k = k.min(v.len() - 1);
    *v.select_nth_unstable_by(k, f64::total_cmp).1
}

/// Sen's slope, its 95 % and 99.9 % intervals with Hamed–Rao's variance factor, and the
/// factor. Only five order statistics of the pairwise slopes are needed, so they are
/// selected, not sorted.
fn sen_interval(pts: &[(f64, f64)]) -> Option<SenFit> {
    let mut slopes = pair_slopes(pts);
    if slopes.is_empty() {
        return None;
    }
    let slope = median(&mut slopes);
    let m = slopes.len() as f64;
    let n = pts.len() as f64;
    let ys: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let var_s = kendall_variance(&ys);
    let detrended: Vec<f64> = pts.iter().map(|(t, y)| y - slope * t).collect();
    let factor = hamed_rao_factor(&ranks(&detrended), n);
    // Gilbert (1987): the (N - C)/2-th and (N + C)/2 + 1-th ordered slopes (1-based).
    let mut bounds = |z: f64| {
        let c = z * (var_s * factor).sqrt();
        let lo = ((m - c) / 2.0).floor().max(1.0) as usize;
        let hi = ((m + c) / 2.0 + 1.0).ceil().min(m) as usize;
        (kth(&mut slopes, lo - 1), kth(&mut slopes, hi - 1))
    };
    let (lower, upper) = bounds(Z_95);
    let (lower_999, upper_999) = bounds(Z_999);
    Some(SenFit {
        slope,
        lower,
        upper,
        lower_999,
        upper_999,
        factor,
    })
}

/// Var(S) of Kendall's S with the correction for tied values.
fn kendall_variance(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    let mut sorted = ys.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i = j;
    }
    (n * (n - 1.0) * (2.0 * n + 5.0) - ties) / 18.0
}

/// Average ranks (1-based), ties sharing the mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_unstable_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && v[idx[j]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j + 1) as f64 / 2.0;
        for &k in &idx[i..j] {
            r[k] = mean;
        }
        i = j;
    }
    r
}

/// The sample autocorrelation at lags 0..=max_lag.
fn acf(v: &[f64], max_lag: usize) -> Vec<f64> {
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let d: Vec<f64> = v.iter().map(|x| x - mean).collect();
    let c0: f64 = d.iter().map(|x| x * x).sum();
    if c0 <= 0.0 {
        return vec![0.0; max_lag + 1];
    }
    (0..=max_lag.min(n - 1))
        .map(|k| (0..n - k).map(|i| d[i] * d[i + k]).sum::<f64>() / c0)
        .collect()
}

/// Hamed and Rao's n/n*: 1 + 2/(n(n-1)(n-2)) Σ (n-i)(n-i-1)(n-i-2) ρ(i) over the
/// lags from 1 up to the first whose autocorrelation of the ranks is not significantly
/// positive; never below 1.
fn hamed_rao_factor(r: &[f64], n: f64) -> f64 {
    let nn = r.len();
    if nn < 4 {
        return 1.0;
    }
    let rho = acf(r, nn - 1);
    let bound = Z_95 / n.sqrt();
    let mut sum = 0.0;
    for (i, &p) in rho.iter().enumerate().skip(1) {
        if p <= bound {
            break;
        }
        let i = i as f64;
        sum += (n - i) * (n - i - 1.0) * (n - i - 2.0) * p;
    }
    (1.0 + 2.0 * sum / (n * (n - 1.0) * (n - 2.0))).max(1.0)
}

/// The lag (fractional: the peak refined by a parabola through its neighbours) of the
/// highest autocorrelation peak after the first fall below zero, when it stands clearly
/// above noise (ρ > 0.3 and above 2/√n): the series' dominant period, in points.
fn dominant_period(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n < 12 {
        return None;
    }
    let rho = acf(v, n / 2);
    let first_neg = rho.iter().position(|&p| p < 0.0)?;
    let (lag, &peak) = rho
        .iter()
        .enumerate()
        .skip(first_neg)
        .filter(|(k, _)| *k + 1 < rho.len() && *k > 0)
        .filter(|(k, p)| **p >= rho[*k - 1] && **p >= rho[*k + 1])
        .max_by(|a, b| a.1.total_cmp(b.1))?;
    if !(peak > 0.3 && peak > 2.0 / (n as f64).sqrt()) {
        return None;
    }
    let (a, b, c) = (rho[lag - 1], peak, rho[lag + 1]);
    let curve = a - 2.0 * b + c;
    let shift = if curve < 0.0 {
        (0.5 * (a - c) / curve).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    Some(lag as f64 + shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn noise(rng: &mut StdRng, sd: f64) -> f64 {
        // A sum of uniforms: near-normal, no extra dependency for a test.
        (0..12).map(|_| rng.random::<f64>()).sum::<f64>() * sd - 6.0 * sd
    }

    /// Hour-long wander (24 blocks of 20 points at random levels, detrended) has strong
    /// short-lag correlation and, as every detrended series, negative long lags. Summed
    /// over every significant lag, those cancel and the interval stays too narrow (the
    /// benchmark's rough noise cried wolf twice a month); the contiguous run from lag 1
    /// keeps the wander's whole weight.
    #[test]
    fn wander_widens_the_interval_by_its_short_lags_only() {
        let mut rng = StdRng::seed_from_u64(11);
        let levels: Vec<f64> = (0..24).map(|_| rng.random_range(-1.0..1.0)).collect();
        let v: Vec<f64> = (0..480)
            .map(|i| levels[i / 20] + 0.1 * rng.random_range(-1.0..1.0))
            .collect();
        let r = ranks(&v);
        let n = r.len() as f64;
        let contiguous = hamed_rao_factor(&r, n);
        // The 1998 paper's sum over every significant lag, for comparison.
        let rho = acf(&r, r.len() - 1);
        let bound = Z_95 / n.sqrt();
        let every: f64 = rho
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, p)| p.abs() > bound)
            .map(|(i, p)| {
                let i = i as f64;
                (n - i) * (n - i - 1.0) * (n - i - 2.0) * p
            })
            .sum();
        let every = (1.0 + 2.0 * every / (n * (n - 1.0) * (n - 2.0))).max(1.0);
        assert!(
            contiguous > 1.5 * every && contiguous > 12.0,
            "contiguous {contiguous:.2}, every lag {every:.2}"
        );
    }

    #[test]
    fn a_clean_line_is_found_exactly() {
        let pts: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, 5.0 + 2.0 * i as f64)).collect();
        let f = fit(&pts).unwrap();
        assert_eq!(f.slope, 2.0);
        assert!(f.lower <= 2.0 && f.upper >= 2.0);
        assert!((f.start_level - 5.0).abs() < 1e-9 && (f.end_level - 203.0).abs() < 1e-9);
        assert_eq!(f.points, 100);
    }

    #[test]
    fn the_interval_covers_zero_on_noise_and_not_on_a_leak() {
        let mut rng = StdRng::seed_from_u64(7);
        let flat: Vec<(f64, f64)> = (0..600)
            .map(|i| (i as f64, 100.0 + noise(&mut rng, 1.0)))
            .collect();
        let f = fit(&flat).unwrap();
        assert!(f.lower < 0.0 && f.upper > 0.0, "{f:?}");
        let leak: Vec<(f64, f64)> = (0..600)
            .map(|i| (i as f64, 100.0 + 0.01 * i as f64 + noise(&mut rng, 1.0)))
            .collect();
        let f = fit(&leak).unwrap();
        assert!(f.lower > 0.0, "{f:?}");
        assert!((f.slope - 0.01).abs() < 0.003, "{f:?}");
        assert_eq!(f.points, MAX_FIT_POINTS);
    }

    /// A random walk has no trend, but its points follow each other: the plain interval
    /// excludes zero far more often than 5 %; the corrected one is wide.
    #[test]
    fn autocorrelation_widens_the_interval() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut y = 0.0;
        let mut ar = Vec::new();
        for i in 0..300 {
            y = 0.9 * y + noise(&mut rng, 1.0);
            ar.push((i as f64, y));
        }
        let f = fit(&ar).unwrap();
        assert!(f.variance_factor > 3.0, "{f:?}");
    }

    /// 40 units of sawtooth with a 15 s period over 4 minutes at 1 s: averaged over
    /// whole periods, no trend is left.
    #[test]
    fn a_sawtooth_is_averaged_over_its_period() {
        let pts: Vec<(f64, f64)> = (10..250)
            .map(|i| {
                let t = i as f64;
                (t, 100.0 + 40.0 * ((t % 15.0) / 15.0))
            })
            .collect();
        let f = fit(&pts).unwrap();
        let p = f.period.expect("a period");
        assert!((p - 15.0).abs() < 1.01, "{f:?}");
        assert!(f.lower <= 0.0 && f.upper >= 0.0, "{f:?}");
        assert!(f.slope.abs() < 0.01, "{f:?}");
    }

    #[test]
    fn too_few_points_is_none() {
        assert!(fit(&[(0.0, 1.0), (1.0, 2.0)]).is_none());
        assert!(fit(&[(1.0, 1.0); 20]).is_none());
    }
}
