//! What the engine keeps per scenario while it runs: [`ScenarioState`] (the plan in force,
//! pause and override, the counters the runner bumps, the tasks of its operations) and
//! [`Capture`] (the on-demand latency histogram a capacity level reads).
//!
//! Everything here is shared by the runner, its operations, the control API and the
//! readers (status, history, SLO, search); the hot path only touches atomics.

use super::guard::GuardCtl;
use super::plan::Plan;
use crate::events::{EventKind, EventLog};
use crate::metrics::ScenarioMetrics;
use crate::schedule::At;
use parking_lot::{Mutex, RwLock};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::task::TaskTracker;

/// Started counts kept for the achieved rate: one a second, a minute of them.
const RATE_SAMPLES: usize = 61;

/// Live state of one scenario, shared by its runner, its operations and the server.
pub struct ScenarioState {
    pub name: String,
    plan: RwLock<Arc<Plan>>,
    pub generation: AtomicU64,
    pub paused: AtomicBool,
    /// f64 bits of the override rate; `NO_OVERRIDE` when none.
    override_rate: AtomicU64,
    pub in_flight: AtomicUsize,
    pub started: AtomicU64,
    pub dropped: AtomicU64,
    /// Visibility probes running (at most the scenario's `max_pending`).
    pub pending: AtomicUsize,
    pub seq: AtomicU64,
    pub draining: AtomicBool,
    current: Mutex<(f64, Option<At>)>,
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// Latency of every operation finished while a capacity level measures.
    pub capture: Capture,
    /// The scenario's guardrail (`guard:`): a factor or a pause on the rate.
    pub guard: GuardCtl,
    /// Every operation task (its write and its visibility probe): retirement and
    /// shutdown close it and wait for it to empty, instead of polling `in_flight`.
    pub(super) tasks: TaskTracker,
    events: Arc<EventLog>,
}

const NO_OVERRIDE: u64 = u64::MAX;

impl ScenarioState {
    /// Seconds so far per HTTP phase (`phases::NAMES`), over the scenario's HTTP ops.
    pub fn phase_sums(&self) -> [f64; 5] {
        self.plan()
            .phases
            .iter()
            .flatten()
            .fold([0.0; 5], |mut acc, p| {
                for (a, s) in acc.iter_mut().zip(p.sums()) {
                    *a += s;
                }
                acc
            })
    }

    pub(super) fn new(plan: Arc<Plan>, generation: u64, events: Arc<EventLog>) -> ScenarioState {
        ScenarioState {
            name: plan.scenario.name.clone(),
            plan: RwLock::new(plan),
            generation: AtomicU64::new(generation),
            paused: AtomicBool::new(false),
            override_rate: AtomicU64::new(NO_OVERRIDE),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            current: Mutex::new((0.0, None)),
            samples: Mutex::new(VecDeque::with_capacity(RATE_SAMPLES + 1)),
            capture: Capture::default(),
            guard: GuardCtl::default(),
            tasks: TaskTracker::new(),
            events,
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        self.plan.read().clone()
    }

    /// Swaps in a new plan; the runner sees `generation` change on its next tick.
    pub(super) fn set_plan(&self, plan: Arc<Plan>, generation: u64) {
        *self.plan.write() = plan;
        self.generation.store(generation, Ordering::Release);
    }

    pub fn metrics(&self) -> Arc<ScenarioMetrics> {
        self.plan.read().metrics.clone()
    }

    pub fn rate_override(&self) -> Option<f64> {
        match self.override_rate.load(Ordering::Relaxed) {
            NO_OVERRIDE => None,
            bits => Some(f64::from_bits(bits)),
        }
    }

    /// The rate to offer now, given the schedule's: 0 while paused (by the control API
    /// or the guard), else the override or the schedule's, as the guard lets it through.
    pub fn effective_rate(&self, schedule_rate: f64) -> f64 {
        if self.paused.load(Ordering::Relaxed) {
            return 0.0;
        }
        self.guard
            .apply(self.rate_override().unwrap_or(schedule_rate))
    }

    pub fn set_rate_override(&self, rate: Option<f64>) {
        self.override_rate.store(
            rate.map(f64::to_bits).unwrap_or(NO_OVERRIDE),
            Ordering::Relaxed,
        );
    }

    /// The runner's report of where the schedule is: the target rate series, and an event
    /// when the stage (or the level within one) moved.
    pub(super) fn publish(&self, rate: f64, at: At) {
        let mut cur = self.current.lock();
        if cur.0 != rate {
            self.plan.read().metrics.target_rate.set(rate);
        }
        // A new stage (or level within one) goes to the event log; the compare is all
        // a tick pays when nothing changed.
        let moved = cur
            .1
            .is_none_or(|old| old.stage != at.stage || old.level != at.level);
        *cur = (rate, Some(at));
        drop(cur);
        if moved {
            let stage = self.plan.read().schedule.describe_at(&at);
            self.events.push(EventKind::Stage, Some(&self.name), stage);
        }
    }

    /// The rate asked for now and where the schedule is.
    pub fn current(&self) -> (f64, Option<At>) {
        *self.current.lock()
    }

    /// Records the started count at `now` (once a second, by the engine).
    pub(super) fn sample(&self, now: Instant) {
        let mut s = self.samples.lock();
        s.push_back((now, self.started.load(Ordering::Relaxed)));
        while s.len() > RATE_SAMPLES {
            s.pop_front();
        }
    }

    /// Operations started per second over the last ~10 s.
    pub fn achieved_rate(&self) -> f64 {
        let s = self.samples.lock();
        let Some(&(t1, n1)) = s.back() else {
            return 0.0;
        };
        let start = s
            .iter()
            .find(|(t, _)| t1.duration_since(*t) <= Duration::from_millis(10_500))
            .copied();
        match start {
            Some((t0, n0)) if t1 > t0 => (n1 - n0) as f64 / t1.duration_since(t0).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Operations in flight plus visibility probes still polling.
    pub fn busy(&self) -> usize {
        self.in_flight.load(Ordering::Acquire) + self.pending.load(Ordering::Acquire)
    }

    /// Waits until every operation task this scenario started has ended. Only
    /// meaningful once the runner has stopped (no new tasks); the tracker is closed here.
    pub async fn drained(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// An on-demand HdrHistogram of operation latency: off (one relaxed load per
/// operation) until a capacity level opens its measurement window.
pub struct Capture {
    on: AtomicBool,
    hist: Mutex<hdrhistogram::Histogram<u64>>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            on: AtomicBool::new(false),
            hist: Mutex::new(crate::metrics::window::new_hist()),
        }
    }
}

impl Capture {
    /// Clears and starts recording.
    pub fn start(&self) {
        self.hist.lock().reset();
        self.on.store(true, Ordering::Release);
    }

    pub fn record(&self, latency: Duration) {
        if self.on.load(Ordering::Relaxed) {
            let us = (latency.as_micros() as u64).clamp(1, crate::metrics::window::MAX_MICROS);
            self.hist.lock().saturating_record(us);
        }
    }

    /// What was recorded since the start or the last take (microseconds), recording
    /// on: the fresh histogram is made outside the lock, so the hot path waits only
    /// for a swap.
    pub fn take(&self) -> hdrhistogram::Histogram<u64> {
        let mut fresh = crate::metrics::window::new_hist();
        std::mem::swap(&mut *self.hist.lock(), &mut fresh);
        fresh
    }

    /// Stops recording and returns what was recorded (microseconds).
    pub fn stop(&self) -> hdrhistogram::Histogram<u64> {
        self.on.store(false, Ordering::Release);
        self.hist.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capture_taken_goes_on_recording_from_empty() {
        let c = Capture::default();
        c.start();
        c.record(Duration::from_millis(3));
        let first = c.take();
        c.record(Duration::from_millis(5));
        c.record(Duration::from_millis(5));
        let rest = c.stop();
        assert_eq!((first.len(), rest.len()), (1, 2));
    }

    #[test]
    fn capture_records_only_between_start_and_stop() {
        let c = Capture::default();
        c.record(Duration::from_millis(5));
        c.start();
        c.record(Duration::from_millis(10));
        c.record(Duration::from_millis(20));
        let h = c.stop();
        c.record(Duration::from_millis(30));
        assert_eq!(h.len(), 2);
        assert!(h.max() >= 19_900 && h.max() <= 20_100, "{}", h.max());
        // A new window starts empty.
        c.start();
        assert_eq!(c.stop().len(), 0);
    }
}
