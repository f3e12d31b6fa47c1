//! A `follow:` stage's shared side: its config, the rate its reader sets and what the
//! reader last saw. The schedule reads the rate with one atomic load per tick; the
//! reader (`engine::follow`) queries Prometheus every `every` and sets it through
//! [`next_rate`]: the query's value × `factor` within `min`..`max`, moved by at most
//! `max_step` per read; a failed read holds the last rate (`on_error: hold`) or moves
//! toward `fallback` (`on_error: fallback`), by `max_step` as well — so a Prometheus
//! outage never stops or spikes the load.

use crate::units::format_rate;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The largest move per read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// A share of the current rate (at least 1/s, so a rate at 0 can grow).
    Share(f64),
    /// Operations per second.
    Rate(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Hold,
    Fallback,
}

/// `follow:` as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowSpec {
    /// The Prometheus server's URL.
    pub prometheus: String,
    pub query: String,
    pub factor: f64,
    pub min: f64,
    pub max: f64,
    pub every: Duration,
    pub max_step: Option<Step>,
    pub on_error: OnError,
    /// The rate on error with `on_error: fallback`, and before the first read.
    pub fallback: Option<f64>,
}

impl FollowSpec {
    /// The rate before the first read: `fallback`, else `min`.
    pub fn initial(&self) -> f64 {
        self.fallback.unwrap_or(self.min).clamp(self.min, self.max)
    }

    pub fn describe(&self) -> String {
        let factor = if self.factor == 1.0 {
            String::new()
        } else {
            format!(" × {}", self.factor)
        };
        format!(
            "follow `{}`{factor} within {}..{}",
            self.query,
            format_rate(self.min),
            format_rate(self.max)
        )
    }
}

/// What the reader last saw (`/api/v1/status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// The query's value at the last good read, before `factor` and the bounds.
    pub value: Option<f64>,
    /// Unix seconds of the last good read.
    pub read_at: Option<f64>,
    /// Why the last read failed, while it keeps failing.
    pub error: Option<String>,
    pub errors: u64,
}

/// A `follow:` stage's live side: the rate its reader sets.
pub struct Follow {
    pub spec: FollowSpec,
    rate: AtomicU64,
    status: Mutex<Status>,
    started: AtomicBool,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Follow({:?}, {})", self.spec, self.rate())
    }
}

/// Two stages are the same when their configs are: the rate read is state, not config.
impl PartialEq for Follow {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Follow {
    pub fn new(spec: FollowSpec) -> Arc<Follow> {
        let rate = spec.initial();
        Arc::new(Follow {
            spec,
            rate: AtomicU64::new(rate.to_bits()),
            status: Mutex::new(Status::default()),
            started: AtomicBool::new(false),
        })
    }

    /// The rate now (for the whole fleet; a shard scales it).
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// Sets the rate (the reader, after a read).
    pub fn set(&self, rate: f64) {
        self.rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// The first call is true: the reader is started once.
    pub fn claim(&self) -> bool {
        !self.started.swap(true, Ordering::AcqRel)
    }

    /// A good read of `value` at `at` (Unix seconds); true when reads had been failing.
    pub fn read_ok(&self, value: f64, at: f64) -> bool {
        let mut st = self.status.lock();
        st.value = Some(value);
        st.read_at = Some(at);
        st.error.take().is_some()
    }

    /// A failed read; true when it is the first of a run of failures.
    pub fn read_failed(&self, error: String) -> bool {
        let mut st = self.status.lock();
        st.errors += 1;
        st.error.replace(error).is_none()
    }
}

/// The rate after a read: the value × `factor` within `min`..`max` (or, on a failed
/// read, the last rate or the fallback), at most `max_step` from `current`.
pub fn next_rate(spec: &FollowSpec, current: f64, read: Option<f64>) -> f64 {
    let want = match (read, spec.on_error) {
        (Some(v), _) => v * spec.factor,
        (None, OnError::Hold) => current,
        (None, OnError::Fallback) => spec.fallback.unwrap_or(current),
    }
    .clamp(spec.min, spec.max);
    let limit = match spec.max_step {
        None => f64::INFINITY,
        Some(Step::Rate(r)) => r,
        Some(Step::Share(s)) => s * current.max(1.0),
    };
    current + (want - current).clamp(-limit, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FollowSpec {
        FollowSpec {
            prometheus: "http://127.0.0.1:1".into(),
            query: "sum(rate(x[1m]))".into(),
            factor: 0.5,
            min: 5.0,
            max: 200.0,
            every: Duration::from_secs(1),
            max_step: None,
            on_error: OnError::Hold,
            fallback: None,
        }
    }

    #[test]
    fn the_rate_is_the_value_times_the_factor_within_the_bounds() {
        let s = spec();
        assert_eq!(next_rate(&s, 5.0, Some(100.0)), 50.0);
        assert_eq!(next_rate(&s, 50.0, Some(1e6)), 200.0, "max");
        assert_eq!(next_rate(&s, 50.0, Some(0.0)), 5.0, "min");
        assert_eq!(s.initial(), 5.0, "min before the first read");
    }

    #[test]
    fn a_step_is_bounded_and_a_failed_read_holds_or_falls_back_as_gently() {
        let mut s = spec();
        s.max_step = Some(Step::Share(0.25));
        assert_eq!(next_rate(&s, 40.0, Some(1000.0)), 50.0, "+25 % of 40");
        assert_eq!(next_rate(&s, 40.0, Some(0.0)), 30.0, "−25 % of 40");
        s.max_step = Some(Step::Rate(3.0));
        assert_eq!(next_rate(&s, 40.0, Some(1000.0)), 43.0);
        // Hold: a failed read keeps the rate.
        assert_eq!(next_rate(&s, 43.0, None), 43.0);
        // Fallback: toward it, by the step.
        s.on_error = OnError::Fallback;
        s.fallback = Some(10.0);
        assert_eq!(next_rate(&s, 43.0, None), 40.0);
        assert_eq!(s.initial(), 10.0, "the fallback before the first read");
        // A share of a rate near 0 still moves (at least 1/s's share).
        s.max_step = Some(Step::Share(0.5));
        s.min = 0.0;
        assert_eq!(next_rate(&s, 0.0, Some(100.0)), 0.5);
    }

    #[test]
    fn equal_specs_are_equal_stages_whatever_they_read() {
        let a = Follow::new(spec());
        let b = Follow::new(spec());
        b.set(77.0);
        assert_eq!(*a, *b);
        let mut other = spec();
        other.factor = 2.0;
        assert_ne!(*a, *Follow::new(other));
    }
}
