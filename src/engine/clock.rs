//! The open-model arrival clock: turns a rate into intended start times.
//!
//! The runner calls [`ArrivalClock::due`] once per timer tick (about every millisecond)
//! and gets every intended start time up to now, so 50,000 arrivals/s need one timer,
//! not 50,000. Intended times are exact (uniform gaps of 1/rate, or exponential gaps
//! for a Poisson process); how late each one actually starts is the schedule lag.

use rand::Rng;
use std::time::{Duration, Instant};

/// Arrivals later than this are not started: they are counted as dropped, so a stalled
/// generator shows up as drops and lag rather than a burst that hides the stall.
pub const MAX_LATE: Duration = Duration::from_secs(1);

pub struct ArrivalClock {
    poisson: bool,
    next: Option<Instant>,
    last_rate: f64,
}

/// What one call released.
#[derive(Debug, Default, PartialEq)]
pub struct Due {
    /// Arrivals that were too late to start (more than [`MAX_LATE`] behind).
    pub skipped: u64,
}

impl ArrivalClock {
    pub fn new(poisson: bool) -> Self {
        ArrivalClock {
            poisson,
            next: None,
            last_rate: 0.0,
        }
    }

    fn gap(&self, rate: f64) -> Duration {
        let mean = 1.0 / rate;
        let secs = if self.poisson {
            // Inverse transform of U in (0, 1]: never ln(0).
            let u: f64 = 1.0 - rand::rng().random::<f64>();
            -u.ln() * mean
        } else {
            mean
        };
        Duration::from_secs_f64(secs.min(86_400.0))
    }

    /// Pushes into `out` the intended start of every arrival due at or before `now` at
    /// `rate` per second, at most `limit` of them (the rest stay due for the next call).
    pub fn due(&mut self, now: Instant, rate: f64, limit: usize, out: &mut Vec<Instant>) -> Due {
        let mut d = Due::default();
        if rate <= 0.0 || !rate.is_finite() {
            // Paused or zero: the next arrival is decided when the rate comes back.
            self.next = None;
            self.last_rate = 0.0;
            return d;
        }
        let mut next = match self.next {
            None => now,
            Some(n) if rate > self.last_rate => {
                // A higher rate must not wait out a gap computed for a lower one.
                n.min(now + self.gap(rate))
            }
            Some(n) => n,
        };
        self.last_rate = rate;
        if let Some(late) = now.checked_duration_since(next) {
            if late > MAX_LATE {
                let behind = (late - MAX_LATE).as_secs_f64();
                let n = (behind * rate).floor();
                d.skipped = n as u64;
                next += Duration::from_secs_f64(n / rate);
            }
        }
        while next <= now && out.len() < limit {
            out.push(next);
            next += self.gap(rate);
        }
        self.next = Some(next);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_releases_exact_counts_per_tick() {
        let mut c = ArrivalClock::new(false);
        let t0 = Instant::now();
        let mut out = Vec::new();
        // 1000/s for one second in 1 ms ticks.
        for ms in 0..1000 {
            c.due(t0 + Duration::from_millis(ms), 1000.0, usize::MAX, &mut out);
        }
        assert!((999..=1001).contains(&out.len()), "{}", out.len());
        // Intended times are evenly spaced, independent of tick timing.
        let gap = out[501].duration_since(out[500]);
        assert!((gap.as_secs_f64() - 0.001).abs() < 1e-6);
    }

    #[test]
    fn batches_when_ticks_are_coarse() {
        let mut c = ArrivalClock::new(false);
        let t0 = Instant::now();
        let mut out = Vec::new();
        c.due(t0, 50_000.0, usize::MAX, &mut out);
        out.clear();
        c.due(
            t0 + Duration::from_millis(10),
            50_000.0,
            usize::MAX,
            &mut out,
        );
        assert!((499..=501).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn poisson_mean_rate() {
        let mut c = ArrivalClock::new(true);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for ms in 0..=10_000 {
            c.due(t0 + Duration::from_millis(ms), 500.0, usize::MAX, &mut out);
        }
        // 5000 expected; Poisson sd ~ 71.
        assert!((4700..=5300).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn far_behind_arrivals_are_skipped_not_burst() {
        let mut c = ArrivalClock::new(false);
        let t0 = Instant::now();
        let mut out = Vec::new();
        c.due(t0, 100.0, usize::MAX, &mut out);
        out.clear();
        // The runner stalled for 5 s.
        let d = c.due(t0 + Duration::from_secs(5), 100.0, usize::MAX, &mut out);
        assert!((399..=401).contains(&d.skipped), "{d:?}");
        assert!((99..=102).contains(&out.len()), "{}", out.len());
        assert!(out
            .iter()
            .all(|t| (t0 + Duration::from_secs(5)).duration_since(*t) <= MAX_LATE));
    }

    #[test]
    fn zero_rate_pauses_and_rate_increase_is_prompt() {
        let mut c = ArrivalClock::new(false);
        let t0 = Instant::now();
        let mut out = Vec::new();
        c.due(t0, 0.1, usize::MAX, &mut out); // next arrival in 10 s
        assert_eq!(out.len(), 1);
        out.clear();
        // The 10 s gap computed at 0.1/s is cut short: arrivals resume within 1 ms.
        c.due(
            t0 + Duration::from_millis(100),
            1000.0,
            usize::MAX,
            &mut out,
        );
        c.due(
            t0 + Duration::from_millis(110),
            1000.0,
            usize::MAX,
            &mut out,
        );
        assert!((9..=11).contains(&out.len()), "{}", out.len());
        out.clear();
        c.due(t0 + Duration::from_secs(1), 0.0, usize::MAX, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn limit_defers_the_rest() {
        let mut c = ArrivalClock::new(false);
        let t0 = Instant::now();
        let mut out = Vec::new();
        c.due(t0, 1000.0, usize::MAX, &mut out);
        out.clear();
        c.due(t0 + Duration::from_millis(100), 1000.0, 10, &mut out);
        assert_eq!(out.len(), 10);
        out.clear();
        c.due(
            t0 + Duration::from_millis(100),
            1000.0,
            usize::MAX,
            &mut out,
        );
        assert_eq!(out.len(), 90);
    }
}
