//! Schedules: pure functions from elapsed time (and, for daily profiles, the time of
//! day) to a target rate. No clocks, no I/O: the engine asks, these answer. A `follow:`
//! stage reads the rate its reader last set (`follow`), one atomic load.

pub mod follow;

use crate::units::{format_duration, format_rate};
use follow::Follow;
use std::sync::Arc;
use std::time::Duration;

const DAY: f64 = 86_400.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// A constant rate, for a while or (without `dur`) forever.
    Hold { rate: f64, dur: Option<Duration> },
    /// Linear from `from` to `to` over `over`.
    Ramp { from: f64, to: f64, over: Duration },
    /// Each rate held `each`, in order; the whole list `times` times (None: forever).
    Levels {
        rates: Vec<f64>,
        each: Duration,
        times: Option<u32>,
    },
    /// Rate by time of day (seconds after midnight, UTC plus `offset`), linear between
    /// points and wrapping round midnight; for `dur` or forever.
    Daily {
        points: Vec<(f64, f64)>,
        dur: Option<Duration>,
    },
    /// The rate a signal sets (`follow`), × `scale` (a shard's share); for `dur`
    /// or forever.
    Follow {
        follow: Arc<Follow>,
        scale: f64,
        dur: Option<Duration>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub stages: Vec<Stage>,
    /// Start again from the first stage after the last one ends.
    pub repeat: bool,
}

/// Where a schedule is at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct At {
    pub rate: f64,
    pub stage: usize,
    /// For `levels`: which level (0-based) within the list.
    pub level: Option<usize>,
    /// Time left in the current stage (None: it does not end).
    pub remaining: Option<Duration>,
}

impl Stage {
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Stage::Hold { dur, .. } | Stage::Daily { dur, .. } | Stage::Follow { dur, .. } => *dur,
            Stage::Ramp { over, .. } => Some(*over),
            Stage::Levels { rates, each, times } => {
                times.map(|n| each.saturating_mul(n.saturating_mul(rates.len() as u32)))
            }
        }
    }

    /// Rate at `t` into this stage; `tod` is seconds after midnight.
    fn at(&self, t: f64, tod: f64) -> (f64, Option<usize>) {
        match self {
            Stage::Hold { rate, .. } => (*rate, None),
            Stage::Ramp { from, to, over } => {
                let len = over.as_secs_f64();
                let f = if len > 0.0 {
                    (t / len).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                (from + (to - from) * f, None)
            }
            Stage::Levels { rates, each, .. } => {
                let each = each.as_secs_f64().max(1e-9);
                let i = ((t / each) as usize) % rates.len().max(1);
                (rates.get(i).copied().unwrap_or(0.0), Some(i))
            }
            Stage::Daily { points, .. } => (daily_rate(points, tod), None),
            Stage::Follow { follow, scale, .. } => (follow.rate() * scale, None),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Stage::Hold { rate, dur } => match dur {
                Some(d) => format!("hold {} for {}", format_rate(*rate), format_duration(*d)),
                None => format!("hold {}", format_rate(*rate)),
            },
            Stage::Ramp { from, to, over } => format!(
                "ramp {} -> {} over {}",
                format_rate(*from),
                format_rate(*to),
                format_duration(*over)
            ),
            Stage::Levels { rates, each, times } => {
                let list: Vec<String> = rates.iter().map(|r| format_rate(*r)).collect();
                let times = match times {
                    Some(1) => String::new(),
                    Some(n) => format!(", {n} times"),
                    None => ", forever".to_string(),
                };
                format!(
                    "levels [{}] each {}{times}",
                    list.join(", "),
                    format_duration(*each)
                )
            }
            Stage::Daily { points, .. } => {
                let list: Vec<String> = points
                    .iter()
                    .map(|(s, r)| {
                        let s = *s as u64;
                        format!("{:02}:{:02} {}", s / 3600, (s % 3600) / 60, format_rate(*r))
                    })
                    .collect();
                format!("daily profile [{}]", list.join(", "))
            }
            Stage::Follow {
                follow, scale, dur, ..
            } => {
                let share = if *scale == 1.0 {
                    String::new()
                } else {
                    format!(", this shard's share {scale:.3}")
                };
                let dur = dur
                    .map(|d| format!(" for {}", format_duration(d)))
                    .unwrap_or_default();
                format!("{}{share}{dur}", follow.spec.describe())
            }
        }
    }
}

/// Linear interpolation round a 24 h clock. `points` are sorted by time of day.
pub fn daily_rate(points: &[(f64, f64)], tod: f64) -> f64 {
    match points {
        [] => 0.0,
        [(_, r)] => *r,
        _ => {
            let tod = tod.rem_euclid(DAY);
            let n = points.len();
            // The segment [p_i, p_{i+1}) containing tod; the last wraps to the first.
            let i = points.iter().rposition(|(t, _)| *t <= tod).unwrap_or(n - 1);
            let (t0, r0) = points[i];
            let (mut t1, r1) = points[(i + 1) % n];
            let mut x = tod;
            if t1 <= t0 {
                t1 += DAY;
            }
            if x < t0 {
                x += DAY;
            }
            let span = t1 - t0;
            if span <= 0.0 {
                return r0;
            }
            r0 + (r1 - r0) * ((x - t0) / span)
        }
    }
}

impl Schedule {
    /// The same schedule with every rate multiplied by `f` (shard i of n runs `1/n`).
    pub fn scaled(&self, f: f64) -> Schedule {
        let mut s = self.clone();
        for st in &mut s.stages {
            match st {
                Stage::Hold { rate, .. } => *rate *= f,
                Stage::Ramp { from, to, .. } => {
                    *from *= f;
                    *to *= f;
                }
                Stage::Levels { rates, .. } => rates.iter_mut().for_each(|r| *r *= f),
                Stage::Daily { points, .. } => points.iter_mut().for_each(|p| p.1 *= f),
                Stage::Follow { scale, .. } => *scale *= f,
            }
        }
        s
    }

    pub fn constant(rate: f64) -> Schedule {
        Schedule {
            stages: vec![Stage::Hold { rate, dur: None }],
            repeat: false,
        }
    }

    /// Total length of one pass, when every stage ends.
    pub fn period(&self) -> Option<Duration> {
        self.stages
            .iter()
            .try_fold(Duration::ZERO, |acc, s| s.duration().map(|d| acc + d))
    }

    /// The rate `elapsed` after the schedule started; `tod` is seconds after midnight
    /// (only daily stages read it). After the last stage of a schedule that does not
    /// repeat, the last stage's final rate holds.
    pub fn at(&self, elapsed: Duration, tod: f64) -> At {
        let mut t = elapsed.as_secs_f64();
        if self.repeat {
            if let Some(p) = self.period().filter(|p| !p.is_zero()) {
                t %= p.as_secs_f64();
            }
        }
        for (i, stage) in self.stages.iter().enumerate() {
            match stage.duration() {
                Some(d) if t >= d.as_secs_f64() => t -= d.as_secs_f64(),
                d => {
                    let (rate, level) = stage.at(t, tod);
                    let remaining =
                        d.map(|d| Duration::from_secs_f64((d.as_secs_f64() - t).max(0.0)));
                    return At {
                        rate,
                        stage: i,
                        level,
                        remaining,
                    };
                }
            }
        }
        match self.stages.last() {
            Some(last) => {
                let end = last.duration().map(|d| d.as_secs_f64()).unwrap_or(0.0);
                // Just inside the end so that levels report their last level.
                let (rate, level) = last.at((end - 1e-9).max(0.0), tod);
                At {
                    rate,
                    stage: self.stages.len() - 1,
                    level,
                    remaining: None,
                }
            }
            None => At {
                rate: 0.0,
                stage: 0,
                level: None,
                remaining: None,
            },
        }
    }

    /// Human description of where the schedule is, for the status API.
    pub fn describe_at(&self, at: &At) -> String {
        let Some(stage) = self.stages.get(at.stage) else {
            return "idle".into();
        };
        let head = format!("stage {}/{}", at.stage + 1, self.stages.len());
        match (stage, at.level) {
            (Stage::Levels { rates, .. }, Some(l)) => format!(
                "{head}: level {}/{} at {}",
                l + 1,
                rates.len(),
                format_rate(at.rate)
            ),
            (s @ Stage::Follow { follow, .. }, _) => {
                let st = follow.status();
                let now = match (&st.error, st.value) {
                    (Some(e), _) => format!("reads failing: {e}"),
                    (None, Some(v)) => format!("last read {v:.6}"),
                    (None, None) => "not read yet".to_string(),
                };
                format!("{head}: {} — {now}", s.describe())
            }
            (s, _) => format!("{head}: {}", s.describe()),
        }
    }

    /// One line per stage with its start and end offsets: what `check-config` prints.
    pub fn timeline(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut t = Duration::ZERO;
        for s in &self.stages {
            let start = format_duration(t);
            match s.duration() {
                Some(d) => {
                    t += d;
                    out.push(format!(
                        "{start:>8} .. {:<8} {}",
                        format_duration(t),
                        s.describe()
                    ));
                }
                None => out.push(format!("{start:>8} .. {:<8} {}", "forever", s.describe())),
            }
        }
        match (self.repeat, self.period()) {
            (true, Some(p)) => out.push(format!("then repeats every {}", format_duration(p))),
            (false, Some(_)) => out.push(format!(
                "then holds {}",
                format_rate(self.at(t + Duration::from_secs(1), 0.0).rate)
            )),
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn scaled_multiplies_every_rate_and_keeps_the_shape() {
        let secs = s;
        let s = Schedule {
            stages: vec![
                Stage::Hold {
                    rate: 10.0,
                    dur: Some(secs(5)),
                },
                Stage::Ramp {
                    from: 2.0,
                    to: 4.0,
                    over: secs(10),
                },
                Stage::Levels {
                    rates: vec![6.0, 8.0],
                    each: secs(3),
                    times: Some(1),
                },
            ],
            repeat: true,
        };
        let half = s.scaled(0.5);
        assert_eq!(half.repeat, s.repeat);
        for t in [0, 4, 5, 10, 15, 16, 19] {
            let (a, b) = (s.at(secs(t), 0.0), half.at(secs(t), 0.0));
            assert!(
                (a.rate * 0.5 - b.rate).abs() < 1e-9,
                "at {t}s: {a:?} vs {b:?}"
            );
            assert_eq!((a.stage, a.level), (b.stage, b.level));
        }
    }

    #[test]
    fn hold_then_ramp_then_levels() {
        let sch = Schedule {
            stages: vec![
                Stage::Hold {
                    rate: 10.0,
                    dur: Some(s(60)),
                },
                Stage::Ramp {
                    from: 10.0,
                    to: 110.0,
                    over: s(100),
                },
                Stage::Levels {
                    rates: vec![50.0, 100.0, 200.0],
                    each: s(30),
                    times: Some(1),
                },
            ],
            repeat: false,
        };
        assert_eq!(sch.at(s(0), 0.0).rate, 10.0);
        assert_eq!(sch.at(s(59), 0.0).rate, 10.0);
        assert!((sch.at(s(60), 0.0).rate - 10.0).abs() < 1e-9);
        assert!((sch.at(s(110), 0.0).rate - 60.0).abs() < 1e-9);
        let at = sch.at(s(165), 0.0);
        assert_eq!((at.rate, at.stage, at.level), (50.0, 2, Some(0)));
        assert_eq!(at.remaining, Some(s(85)));
        assert_eq!(sch.at(s(195), 0.0).rate, 100.0);
        assert_eq!(sch.at(s(225), 0.0).rate, 200.0);
        // After the end the last rate holds.
        let end = sch.at(s(10_000), 0.0);
        assert_eq!((end.rate, end.level), (200.0, Some(2)));
        assert_eq!(sch.period(), Some(s(250)));
    }

    #[test]
    fn repeat_cycles() {
        let sch = Schedule {
            stages: vec![
                Stage::Hold {
                    rate: 1.0,
                    dur: Some(s(10)),
                },
                Stage::Hold {
                    rate: 2.0,
                    dur: Some(s(10)),
                },
            ],
            repeat: true,
        };
        assert_eq!(sch.at(s(5), 0.0).rate, 1.0);
        assert_eq!(sch.at(s(15), 0.0).rate, 2.0);
        assert_eq!(sch.at(s(25), 0.0).rate, 1.0);
        assert_eq!(sch.at(s(20 * 1000 + 15), 0.0).rate, 2.0);
    }

    #[test]
    fn levels_forever() {
        let st = Stage::Levels {
            rates: vec![1.0, 2.0],
            each: s(5),
            times: None,
        };
        assert_eq!(st.duration(), None);
        let sch = Schedule {
            stages: vec![st],
            repeat: false,
        };
        assert_eq!(sch.at(s(12), 0.0).rate, 1.0);
        assert_eq!(sch.at(s(17), 0.0).rate, 2.0);
    }

    #[test]
    fn daily_interpolates_and_wraps() {
        let pts = vec![(0.0, 100.0), (6.0 * 3600.0, 100.0), (12.0 * 3600.0, 500.0)];
        assert_eq!(daily_rate(&pts, 3.0 * 3600.0), 100.0);
        assert!((daily_rate(&pts, 9.0 * 3600.0) - 300.0).abs() < 1e-9);
        // 12:00 -> 24:00 wraps back to 100.
        assert!((daily_rate(&pts, 18.0 * 3600.0) - 300.0).abs() < 1e-9);
        assert!((daily_rate(&pts, DAY + 9.0 * 3600.0) - 300.0).abs() < 1e-9);
        // Points that do not start at midnight wrap the other way.
        let pts = vec![(6.0 * 3600.0, 0.0), (18.0 * 3600.0, 120.0)];
        assert!((daily_rate(&pts, 0.0) - 60.0).abs() < 1e-9);
        assert_eq!(daily_rate(&[(0.0, 7.0)], 123.0), 7.0);
    }

    #[test]
    fn describe_and_timeline() {
        let sch = Schedule {
            stages: vec![
                Stage::Ramp {
                    from: 0.0,
                    to: 100.0,
                    over: s(60),
                },
                Stage::Levels {
                    rates: vec![100.0, 200.0],
                    each: s(300),
                    times: Some(1),
                },
            ],
            repeat: true,
        };
        let at = sch.at(s(400), 0.0);
        assert_eq!(sch.describe_at(&at), "stage 2/2: level 2/2 at 200/s");
        let tl = sch.timeline();
        assert_eq!(tl.len(), 3);
        assert!(tl[0].contains("ramp 0/s -> 100/s over 1m"), "{tl:?}");
        assert!(tl[2].contains("repeats every 11m"), "{tl:?}");
    }
}
