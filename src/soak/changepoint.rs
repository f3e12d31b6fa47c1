//! Level shifts, found online behind a confirmation delay, so a change point once
//! reported never moves or disappears.
//!
//! At each new point the detector looks back: a split `c` with at least [`CONFIRM`]
//! points after it and [`REFERENCE`] points before it (all after the previous change
//! point) is a change when the medians of the two sides differ by more than
//! [`K`] standard errors — the noise's robust scale (the MAD of the reference side
//! around its median), inflated for autocorrelation by the AR(1) long-run factor
//! (1 + ρ)/(1 − ρ) of the reference side, and by 1.25 for medians — and by more than
//! [`MIN_SHIFT`] of the level. The split chosen is the one with the largest statistic;
//! its uncertainty is the span of splits whose statistic is within 20 % of it.
//!
//! Why not BOCPD (the `changepoint` crate): its segments are independent draws, so the
//! autocorrelated noise of memory and latency series reads as a stream of changes, and
//! its most probable segmentation is revised as data arrive (a reported change would
//! move). The windowed test keeps the autocorrelation in its threshold and, once
//! confirmed, never looks behind the change again.

use serde::Serialize;

/// Points a change must hold for before it is reported (the confirmation delay).
pub const CONFIRM: usize = 15;
/// Points before a change that describe the old level.
pub const REFERENCE: usize = 60;
/// Standard errors a shift must exceed.
pub const K: f64 = 5.0;
/// And relative to the level, at least this much (a 1 % step is not news).
pub const MIN_SHIFT: f64 = 0.03;
/// Change points kept per series (the newest).
pub const MAX_KEPT: usize = 20;

/// A confirmed level shift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangePoint {
    /// Unix seconds of the first point at the new level.
    pub t: f64,
    /// Seconds either side of `t` the change may lie.
    pub uncertainty: f64,
    pub before: f64,
    pub after: f64,
    /// (after − before) / before; None when before is 0.
    pub relative: Option<f64>,
    /// The latest event of soakd's log before the change within its uncertainty.
    pub cause: Option<String>,
}

/// One series' detector state: where the current segment starts.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    /// Points before this time belong to earlier segments.
    segment_start: f64,
    /// The latest split already looked at (splits after it are new since the last step).
    checked: f64,
    pub found: Vec<ChangePoint>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// MAD-based standard deviation and lag-1 autocorrelation of `v` around its median.
fn scale_and_rho(v: &[f64]) -> (f64, f64, f64) {
    let m = median(&mut v.to_vec());
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    let sd = 1.4826 * median(&mut dev);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let d: Vec<f64> = v.iter().map(|x| x - mean).collect();
    let c0: f64 = d.iter().map(|x| x * x).sum();
    let c1: f64 = d.windows(2).map(|w| w[0] * w[1]).sum();
    let rho = if c0 > 0.0 {
        (c1 / c0).clamp(0.0, 0.9)
    } else {
        0.0
    };
    (m, sd, rho)
}

impl Detector {
    /// Looks for a change in `pts` (time order, the series' whole ring); returns one
    /// newly confirmed, which is also kept. `events` are (Unix seconds, message) in
    /// time order, for the cause.
    pub fn step(&mut self, pts: &[(f64, f64)], events: &[(f64, String)]) -> Option<ChangePoint> {
        let from = pts.partition_point(|p| p.0 < self.segment_start);
        let seg = &pts[from..];
        if seg.len() < REFERENCE + CONFIRM {
            return None;
        }
        // Candidate splits: the first point after the split is at index c; the after side
        // holds at least CONFIRM points, and either at most 2 × CONFIRM or the split is
        // new since the last step (which may be a minute of 1 s points ago).
        let n = seg.len();
        let unchecked = seg.partition_point(|p| p.0 <= self.checked);
        let lo = (n - 2 * CONFIRM).min(unchecked).max(REFERENCE);
        let hi = n - CONFIRM;
        // Splits too recent to confirm are looked at too: while one of them is the best,
        // the change is not yet where it will be, so nothing is reported.
        let newest = n - 3;
        if lo > hi {
            return None;
        }
        // Where: the split that best separates the span into two means (binary
        // segmentation's statistic), which places a clean step exactly; medians, robust
        // as they are, would not move for the few points of the new level they absorb.
        let base = lo - REFERENCE;
        let mut prefix = Vec::with_capacity(n - base + 1);
        prefix.push(0.0);
        for p in &seg[base..] {
            prefix.push(prefix[prefix.len() - 1] + p.1);
        }
        let total = prefix[n - base];
        let scores: Vec<(usize, f64)> = (lo..=newest)
            .map(|c| {
                let (nb, na) = ((c - base) as f64, (n - c) as f64);
                let sb = prefix[c - base];
                let (mb, ma) = (sb / nb, (total - sb) / na);
                (c, (ma - mb).abs() * (nb * na / (nb + na)).sqrt())
            })
            .collect();
        let (c, top) = scores.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
        if c > hi {
            // The best split has fewer than CONFIRM points after it: wait for them.
            return None;
        }
        self.checked = seg[hi].0;
        // Whether: the medians either side, against the noise of the old level.
        let reference: Vec<f64> = seg[c - REFERENCE..c].iter().map(|p| p.1).collect();
        let (before, sd, rho) = scale_and_rho(&reference);
        let after = median(&mut seg[c..].iter().map(|p| p.1).collect::<Vec<_>>());
        let inflation = (1.0 + rho) / (1.0 - rho);
        let se = 1.25 * sd * (inflation * (1.0 / REFERENCE as f64 + 1.0 / (n - c) as f64)).sqrt();
        let shift = after - before;
        let significant = if se > 0.0 {
            shift.abs() / se > K
        } else {
            shift != 0.0
        };
        let material = if before != 0.0 {
            shift.abs() > MIN_SHIFT * before.abs()
        } else {
            shift != 0.0
        };
        if !(significant && material) {
            return None;
        }
        let near: Vec<usize> = scores
            .iter()
            .filter(|(_, s)| *s >= 0.9 * top)
            .map(|(i, _)| *i)
            .collect();
        let (first, last) = (
            near.iter().min().copied().unwrap_or(c),
            near.iter().max().copied().unwrap_or(c),
        );
        let t = seg[c].0;
        let step = if n > 1 {
            (seg[n - 1].0 - seg[0].0) / (n - 1) as f64
        } else {
            0.0
        };
        let uncertainty = ((seg[last].0 - seg[first].0) / 2.0).max(step);
        let cause = events
            .iter()
            .rev()
            .find(|(te, _)| *te <= t + uncertainty && *te >= t - uncertainty - step)
            .map(|(_, m)| m.clone());
        let cp = ChangePoint {
            t,
            uncertainty,
            before,
            after,
            relative: (before != 0.0).then(|| (after - before) / before.abs()),
            cause,
        };
        self.segment_start = t;
        self.checked = t;
        if self.found.len() == MAX_KEPT {
            self.found.remove(0);
        }
        self.found.push(cp.clone());
        Some(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn noise(rng: &mut StdRng, sd: f64) -> f64 {
        (0..12).map(|_| rng.random::<f64>()).sum::<f64>() * sd - 6.0 * sd
    }

    /// Feeds points one at a time, as the soak thread does.
    fn run(series: &[(f64, f64)], events: &[(f64, String)]) -> Vec<ChangePoint> {
        let mut d = Detector::default();
        for i in 1..=series.len() {
            d.step(&series[..i], events);
        }
        d.found
    }

    #[test]
    fn a_ten_percent_step_in_three_percent_noise_is_found_within_30_points_and_named() {
        let mut rng = StdRng::seed_from_u64(3);
        let s: Vec<(f64, f64)> = (0..300)
            .map(|i| {
                let level = if i >= 200 { 110.0 } else { 100.0 };
                (i as f64 * 60.0, level * (1.0 + noise(&mut rng, 0.03)))
            })
            .collect();
        let events = vec![
            (100.0 * 60.0, "stage api: 2/3".to_string()),
            (
                199.5 * 60.0,
                "config reloaded: changed api (schedule)".to_string(),
            ),
        ];
        let mut d = Detector::default();
        let mut found_at = None;
        for i in 1..=s.len() {
            if d.step(&s[..i], &events).is_some() && found_at.is_none() {
                found_at = Some(i - 1);
            }
        }
        let cps = d.found;
        assert_eq!(cps.len(), 1, "{cps:?}");
        let cp = &cps[0];
        assert!(
            (cp.t - 200.0 * 60.0).abs() <= cp.uncertainty + 60.0,
            "{cp:?}"
        );
        assert!((cp.relative.unwrap() - 0.1).abs() < 0.04, "{cp:?}");
        assert!(found_at.unwrap() <= 230, "found at {found_at:?}");
        assert_eq!(
            cp.cause.as_deref(),
            Some("config reloaded: changed api (schedule)")
        );
    }

    #[test]
    fn noise_alone_and_autocorrelated_noise_give_no_change() {
        let mut rng = StdRng::seed_from_u64(5);
        let flat: Vec<(f64, f64)> = (0..2000)
            .map(|i| (i as f64, 100.0 * (1.0 + noise(&mut rng, 0.03))))
            .collect();
        assert!(run(&flat, &[]).is_empty());
        let mut y = 0.0;
        let ar: Vec<(f64, f64)> = (0..2000)
            .map(|i| {
                y = 0.8 * y + noise(&mut rng, 0.01);
                (i as f64, 100.0 * (1.0 + y))
            })
            .collect();
        assert!(run(&ar, &[]).is_empty(), "{:?}", run(&ar, &[]));
    }

    #[test]
    fn a_change_once_reported_stays_and_no_cause_is_none() {
        let s: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                (
                    i as f64,
                    if i >= 100 { 150.0 } else { 100.0 } + (i % 3) as f64,
                )
            })
            .collect();
        let mut d = Detector::default();
        let mut seen = Vec::new();
        for i in 1..=s.len() {
            d.step(&s[..i], &[]);
            if let Some(first) = d.found.first() {
                seen.push(first.clone());
            }
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "it moved");
        assert_eq!(d.found.len(), 1);
        assert_eq!(d.found[0].cause, None);
        assert_eq!(d.found[0].t, 100.0);
    }
}
