//! From a fitted trend to a verdict: `growing`, `shrinking`, `flat`, `bounded` (rose to
//! a plateau, which it names) or `insufficient`, with the evidence behind it.
//!
//! `growing` only when the 95 % interval lies wholly above zero *and* the estimate is
//! above the material threshold; a statistically sure growth of 0.01 %/day is noise an
//! SRE should not be paged for. Series whose level can be zero (an error ratio, dead
//! tuples) are judged on absolute change per day instead of relative.

use crate::soak::trend::{fit, Fit};
use serde::Serialize;

const DAY: f64 = 86_400.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Growing,
    Shrinking,
    Flat,
    Bounded,
    Insufficient,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Growing => "growing",
            Verdict::Shrinking => "shrinking",
            Verdict::Flat => "flat",
            Verdict::Bounded => "bounded",
            Verdict::Insufficient => "insufficient",
        }
    }
}

/// How a series is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Material growth per day relative to the level (0.005 = 0.5 %/day).
    Relative(f64),
    /// Material growth per day in the series' own unit (for levels that can be zero).
    Absolute(f64),
}

/// A trend per day: estimate and 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerDay {
    pub estimate: f64,
    pub lower: f64,
    pub upper: f64,
}

/// The fitted line over the judged span: its value at the first and the last point
/// (Unix seconds). Its interval is the band pivoting at the span's middle with the
/// `absolute` bounds' slopes ([`TrendLine::band`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrendLine {
    pub t0: f64,
    pub t1: f64,
    pub start: f64,
    pub end: f64,
}

impl TrendLine {
    /// The interval as a band: every line through the span's middle with a slope
    /// within the `absolute` bounds — the lowest and the highest of them at the start,
    /// the middle and the end (a bow tie: the level is sure in the middle, the slope
    /// is what is unsure).
    pub fn band(&self, abs: &PerDay) -> (Edge, Edge) {
        let (tm, vm) = ((self.t0 + self.t1) / 2.0, (self.start + self.end) / 2.0);
        let at = |slope_per_day: f64, t: f64| vm + slope_per_day / DAY * (t - tm);
        (
            vec![
                (self.t0, at(abs.upper, self.t0)),
                (tm, vm),
                (self.t1, at(abs.lower, self.t1)),
            ],
            vec![
                (self.t0, at(abs.lower, self.t0)),
                (tm, vm),
                (self.t1, at(abs.upper, self.t1)),
            ],
        )
    }
}

/// One edge of a band: `(t, value)` at the start, the middle and the end.
pub type Edge = Vec<(f64, f64)>;

/// The judgement of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// In the series' unit per day.
    pub absolute: Option<PerDay>,
    /// Relative to the level per day (0.01 = 1 %/day); None for absolute series or a
    /// level of zero.
    pub relative: Option<PerDay>,
    /// The level it settled at (`bounded`).
    pub plateau: Option<f64>,
    /// The period averaged away, seconds.
    pub period: Option<f64>,
    /// The longest period the window could tell from a trend, seconds.
    pub resolvable_period: Option<f64>,
    /// Points fitted.
    pub points: usize,
    /// The evidence in one sentence.
    pub reason: String,
    /// The fitted line (None without a fit).
    pub line: Option<TrendLine>,
}

/// The 99.9 % lower bound per day, in the chosen scale (the confirmation of `growing`).
fn lower_999(f: &Fit, scale: f64) -> f64 {
    f.lower_999 * DAY / scale
}

/// The 99.9 % upper bound per day (the confirmation of `shrinking`).
fn upper_999(f: &Fit, scale: f64) -> f64 {
    f.upper_999 * DAY / scale
}

fn per_day(f: &Fit, scale: f64) -> PerDay {
    PerDay {
        estimate: f.slope * DAY / scale,
        lower: f.lower * DAY / scale,
        upper: f.upper * DAY / scale,
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", x * 100.0)
}

/// Judges points `(t, y)` (seconds; the window after warmup and the last restart).
pub fn judge(points: &[(f64, f64)], threshold: Threshold) -> Judgement {
    let insufficient = |reason: String| Judgement {
        verdict: Verdict::Insufficient,
        absolute: None,
        relative: None,
        plateau: None,
        period: None,
        resolvable_period: None,
        points: points.len(),
        reason,
        line: None,
    };
    let Some(f) = fit(points) else {
        return insufficient(format!(
            "{} points after warmup; at least 8 are needed",
            points.len()
        ));
    };
    let absolute = per_day(&f, 1.0);
    let (chosen, limit, show, scale): (PerDay, f64, fn(f64) -> String, f64) = match threshold {
        Threshold::Relative(g) => {
            if f.level <= 0.0 {
                return insufficient("its level is zero; a relative trend has no meaning".into());
            }
            (per_day(&f, f.level), g, pct, f.level)
        }
        Threshold::Absolute(g) => (absolute, g, |x| format!("{x:.4}"), 1.0),
    };
    let relative = matches!(threshold, Threshold::Relative(_)).then_some(chosen);
    let interval = format!(
        "{}/day ({} to {})",
        show(chosen.estimate),
        show(chosen.lower),
        show(chosen.upper)
    );
    let confirmed_up = lower_999(&f, scale) > 0.0;
    let confirmed_down = upper_999(&f, scale) < 0.0;
    let mut verdict = if chosen.lower > 0.0 && chosen.estimate > limit && confirmed_up {
        Verdict::Growing
    } else if chosen.upper < 0.0 && -chosen.estimate > limit && confirmed_down {
        Verdict::Shrinking
    } else {
        Verdict::Flat
    };
    let mut plateau = None;
    if matches!(verdict, Verdict::Growing | Verdict::Flat) {
        if let Some(level) = settled(points, threshold, limit) {
            verdict = Verdict::Bounded;
            plateau = Some(level);
        }
    }
    let reason = match verdict {
        Verdict::Growing => format!(
            "growing {interval}: the interval is above zero and the estimate above the threshold of {}/day",
            show(limit)
        ),
        Verdict::Shrinking => format!("shrinking {interval}"),
        Verdict::Bounded => format!(
            "rose {interval} and then held at {:.4} over the last third of the window",
            plateau.unwrap_or(f64::NAN)
        ),
        _ if chosen.lower > 0.0 && chosen.estimate <= limit => format!(
            "flat: {interval} is above zero but below the threshold of {}/day",
            show(limit)
        ),
        _ if chosen.lower > 0.0 => format!(
            "flat: {interval} is above zero, but its 99.9 % interval is not yet (a trend seen again every minute must be sure before it is called)"
        ),
        _ => format!("flat: {interval} includes zero"),
    };
    Judgement {
        verdict,
        absolute: Some(absolute),
        relative,
        plateau,
        period: f.period,
        resolvable_period: Some(f.resolvable_period),
        points: f.points,
        reason,
        line: span(points).map(|(t0, t1)| TrendLine {
            t0,
            t1,
            start: f.start_level,
            end: f.end_level,
        }),
    }
}

/// The first and last finite point's time.
fn span(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let first = points.iter().find(finite)?.0;
    let last = points.iter().rev().find(finite).map_or(first, |p| p.0);
    Some((first, last))
}

/// The level of the window's last third when it holds flat there (no material trend
/// in its own interval) after the series rose to it: its median stands above the median
/// of the window's first sixth by more than 3 robust standard deviations of the tail's
/// noise (and, for a relative series, by more than 1 % of the level). A bound reached,
/// not a leak. Medians, not a slope of the head: a rise that is a step or a ramp reads
/// the same, wherever it falls in the head.
fn settled(points: &[(f64, f64)], threshold: Threshold, limit: f64) -> Option<f64> {
    let n = points.len();
    let tail = &points[n - n / 3..];
    let first = &points[..(n / 6).max(1)];
    let values = |p: &[(f64, f64)]| {
        let mut v: Vec<f64> = p.iter().map(|x| x.1).collect();
        v.sort_unstable_by(f64::total_cmp);
        v
    };
    let (tv, fv) = (values(tail), values(first));
    let (t_mid, f_mid) = (*tv.get(tv.len() / 2)?, *fv.get(fv.len() / 2)?);
    let rise = t_mid - f_mid;
    if rise <= 0.0 {
        return None;
    }
    let mut dev: Vec<f64> = tv.iter().map(|v| (v - t_mid).abs()).collect();
    dev.sort_unstable_by(f64::total_cmp);
    let sd = 1.4826 * dev.get(dev.len() / 2).copied().unwrap_or(0.0);
    let ft = fit(tail)?;
    let (scale, material) = match threshold {
        Threshold::Relative(_) if ft.level > 0.0 => (ft.level, rise > 0.01 * ft.level),
        Threshold::Relative(_) => return None,
        Threshold::Absolute(_) => (1.0, true),
    };
    let t = per_day(&ft, scale);
    let tail_flat = t.lower <= 0.0 || t.estimate <= limit;
    (tail_flat && material && rise > 3.0 * sd).then_some(ft.level)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize, step: f64, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| (i as f64 * step, f(i as f64 * step)))
            .collect()
    }

    #[test]
    fn a_leak_is_growing_and_says_how_fast() {
        // 1 %/day on 100 MiB, one point a minute for a day.
        let p = line(1440, 60.0, |t| 100e6 * (1.0 + 0.01 * t / DAY));
        let j = judge(&p, Threshold::Relative(0.005));
        assert_eq!(j.verdict, Verdict::Growing, "{j:?}");
        let r = j.relative.unwrap();
        assert!((r.estimate - 0.01).abs() < 0.001, "{r:?}");
        assert!(j.reason.starts_with("growing 1.00 %/day"), "{}", j.reason);
    }

    #[test]
    fn below_the_threshold_is_flat_and_says_so() {
        let p = line(1440, 60.0, |t| 100e6 * (1.0 + 0.001 * t / DAY));
        let j = judge(&p, Threshold::Relative(0.005));
        assert_eq!(j.verdict, Verdict::Flat, "{j:?}");
        assert!(j.reason.contains("below the threshold"), "{}", j.reason);
    }

    #[test]
    fn a_rise_to_a_plateau_is_bounded_and_names_it() {
        // A cache filling to 200 MiB over the first quarter, then holding.
        let p = line(1440, 60.0, |t| 100e6 + 100e6 * (t / (DAY / 4.0)).min(1.0));
        let j = judge(&p, Threshold::Relative(0.005));
        assert_eq!(j.verdict, Verdict::Bounded, "{j:?}");
        assert!((j.plateau.unwrap() - 200e6).abs() < 1e6, "{j:?}");
    }

    /// A step-like rise early in the window (a process filling a cache in 20 s, then
    /// holding), judged long after: bounded, wherever the rise falls in the head.
    #[test]
    fn an_early_step_to_a_bound_is_bounded_however_late_it_is_judged() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for n in [70, 120, 181, 300] {
            let p: Vec<(f64, f64)> = (0..n)
                .map(|i| {
                    let rise = (i as f64 - 12.0).clamp(0.0, 20.0);
                    let noise = rng.random_range(-4096.0..4096.0);
                    (i as f64, 10e6 + 1.048e6 * rise + noise)
                })
                .collect();
            let j = judge(&p, Threshold::Relative(0.005));
            assert_eq!(j.verdict, Verdict::Bounded, "{n} points: {j:?}");
        }
    }

    #[test]
    fn a_shrinking_series_and_an_absolute_one() {
        let p = line(100, 60.0, |t| 1000.0 - t / 60.0);
        assert_eq!(
            judge(&p, Threshold::Relative(0.01)).verdict,
            Verdict::Shrinking
        );
        // An error ratio from 0 to 0.01 over a day: absolute +0.01/day.
        let p = line(1440, 60.0, |t| 0.01 * t / DAY);
        let j = judge(&p, Threshold::Absolute(0.001));
        assert_eq!(j.verdict, Verdict::Growing, "{j:?}");
        assert!(j.relative.is_none());
        // A relative judgement of a zero level is refused, not divided by zero.
        let z = line(100, 60.0, |_| 0.0);
        assert_eq!(
            judge(&z, Threshold::Relative(0.01)).verdict,
            Verdict::Insufficient
        );
        assert_eq!(
            judge(&p[..5], Threshold::Absolute(0.001)).verdict,
            Verdict::Insufficient
        );
    }
}
