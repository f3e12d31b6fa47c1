//! Rolling SLO evaluation: every scenario with an `slo:` is judged once a second over
//! `slo.window` (default 5 minutes) against the objectives it names — p50/p95/p99 from
//! the ops' HdrHistogram windows, the error rate from the counters, the buffered
//! writer's event E2E p95 from its histogram — and the error budget's burn rate over 5
//! minutes and 1 hour. Exported as `soakd_slo_ok`, `soakd_slo_burn_rate` and
//! `soakd_slo_breached_seconds_total` (`metrics::slo`) and shown by `/api/v1/status`.
//!
//! It runs on its own thread, off the load runtime, and reads only what the load already
//! records: the op windows through their cursors (`Window::since`, a copy of one slot
//! under the lock), counters and histogram buckets. Its own memory is fixed per
//! scenario: a rolling HdrHistogram window of the SLO's length and two rings of at most
//! [`RING_ENTRIES`] samples.

use crate::config::Slo;
use crate::engine::guard::{GuardEvent, GuardMachine};
use crate::engine::{Engine, ScenarioState};
use crate::events::EventKind;
use crate::metrics::scenario::OpCursors;
use crate::metrics::window::{quantile_secs, Window};
use crate::metrics::{HistSnap, Histogram, SloMetrics};
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Samples a ring keeps at most: its step is its span / this (at least one second).
pub const RING_ENTRIES: usize = 600;

/// The burn-rate windows (`soakd_slo_burn_rate{window}`), in the order of
/// `metrics::slo::BURN_WINDOWS`.
const BURN: [Duration; 2] = [Duration::from_secs(300), Duration::from_secs(3600)];

/// One objective as the status API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Objective {
    /// `p50`, `p95`, `p99`, `error_rate` or `e2e_p95`.
    pub name: &'static str,
    /// Seconds, or a ratio for `error_rate`.
    pub limit: f64,
    /// Over the window; None while nothing was measured.
    pub value: Option<f64>,
    pub ok: bool,
}

/// A scenario's rolling verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub ok: bool,
    pub window_seconds: f64,
    pub objectives: Vec<Objective>,
    /// Error ratio over 5 minutes / `slo.error_rate` (None without an error objective).
    pub burn_rate_5m: Option<f64>,
    pub burn_rate_1h: Option<f64>,
    pub breached_seconds: f64,
    /// The scenario's guard, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::engine::guard::GuardStatus>,
}

/// The latest verdicts by scenario, for the status API.
pub type SharedSlo = Arc<RwLock<BTreeMap<String, SloStatus>>>;

/// Samples of a cumulative value, one per `step`, covering `span`.
struct Ring<T> {
    step: Duration,
    entries: VecDeque<(Instant, T)>,
}

impl<T> Ring<T> {
    fn new(span: Duration) -> Ring<T> {
        Ring {
            step: (span / RING_ENTRIES as u32).max(Duration::from_secs(1)),
            entries: VecDeque::with_capacity(RING_ENTRIES + 2),
        }
    }

    /// Adds a sample if a step has passed since the last one.
    fn push(&mut self, now: Instant, v: T) {
        if self
            .entries
            .back()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) < self.step)
        {
            return;
        }
        self.entries.push_back((now, v));
        while self.entries.len() > RING_ENTRIES + 1 {
            self.entries.pop_front();
        }
    }

    /// The newest sample, and the one closest to `span` before it (the oldest while the
    /// ring is younger than that).
    fn ends(&self, span: Duration) -> Option<(&T, &T)> {
        let (now, last) = self.entries.back()?;
        let from = now.checked_sub(span);
        let first = self
            .entries
            .iter()
            .rev()
            .find(|(t, _)| from.is_some_and(|f| *t <= f))
            .or_else(|| self.entries.front())?;
        Some((&first.1, last))
    }
}

/// (completed, errors) so far.
type Counts = (u64, u64);

fn ratio((c0, e0): &Counts, (c1, e1): &Counts) -> Option<f64> {
    let done = c1.saturating_sub(*c0);
    (done > 0).then(|| e1.saturating_sub(*e0) as f64 / done as f64)
}

/// One scenario's state between ticks.
struct Tracker {
    slo: Slo,
    latency: Window,
    cursors: OpCursors,
    /// Over the SLO's window.
    counts: Ring<Counts>,
    /// Over the longest burn-rate window.
    burn: Ring<Counts>,
    e2e: Ring<HistSnap>,
    metrics: SloMetrics,
    last: Option<Instant>,
    breached: f64,
}

impl Tracker {
    fn new(slo: Slo, metrics: SloMetrics) -> Tracker {
        let w = slo.window();
        Tracker {
            slo,
            latency: Window::new(w),
            cursors: OpCursors::default(),
            counts: Ring::new(w),
            burn: Ring::new(BURN[1]),
            e2e: Ring::new(w),
            metrics,
            last: None,
            breached: 0.0,
        }
    }

    /// Takes what the scenario recorded since the last tick and judges the window.
    fn tick(
        &mut self,
        m: &crate::metrics::ScenarioMetrics,
        e2e: Option<&Histogram>,
        now: Instant,
    ) -> SloStatus {
        let latency = &self.latency;
        self.cursors.read(&m.ops, now, |d| latency.add_at(d, now));
        let completed: u64 = m.ops.iter().map(|o| o.requests.get()).sum();
        let errors: u64 = m.errors_by_kind().iter().map(|(_, n)| n).sum();
        self.counts.push(now, (completed, errors));
        self.burn.push(now, (completed, errors));
        if let Some(h) = e2e {
            self.e2e.push(now, HistSnap::of(h));
        }
        let lat = self.latency.snapshot_at(now);
        let window = self.slo.window();
        let error_ratio = self.counts.ends(window).and_then(|(a, b)| ratio(a, b));
        let e2e_p95 = self
            .e2e
            .ends(window)
            .and_then(|(a, b)| b.quantile_since(a, 0.95));
        let mut objectives = Vec::new();
        let mut check = |name, limit: Option<f64>, value: Option<f64>| {
            if let Some(limit) = limit {
                objectives.push(Objective {
                    name,
                    limit,
                    value,
                    ok: value.is_none_or(|v| v <= limit),
                });
            }
        };
        let secs = |d: Option<crate::units::Dur>| d.map(|d| d.0.as_secs_f64());
        check("p50", secs(self.slo.p50), quantile_secs(&lat, 0.5));
        check("p95", secs(self.slo.p95), quantile_secs(&lat, 0.95));
        check("p99", secs(self.slo.p99), quantile_secs(&lat, 0.99));
        check("error_rate", self.slo.error_rate.map(|r| r.0), error_ratio);
        check("e2e_p95", secs(self.slo.e2e_p95), e2e_p95);
        let ok = objectives.iter().all(|o| o.ok);
        let burn = |span: Duration| {
            let budget = self.slo.error_rate.map(|r| r.0)?;
            let r = self
                .burn
                .ends(span)
                .and_then(|(a, b)| ratio(a, b))
                .unwrap_or(0.0);
            Some(if budget > 0.0 {
                r / budget
            } else if r > 0.0 {
                f64::INFINITY
            } else {
                0.0
            })
        };
        let (b5, b1h) = (burn(BURN[0]), burn(BURN[1]));
        let dt = self
            .last
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last = Some(now);
        if !ok {
            self.breached += dt;
            self.metrics.breached_seconds.inc_by(dt);
        }
        self.metrics.ok.set(i64::from(ok));
        for (g, v) in self.metrics.burn_rate.iter().zip([b5, b1h]) {
            if let Some(v) = v {
                g.set(v);
            }
        }
        SloStatus {
            ok,
            window_seconds: window.as_secs_f64(),
            objectives,
            burn_rate_5m: b5,
            burn_rate_1h: b1h,
            breached_seconds: self.breached,
            guard: None,
        }
    }
}

/// Evaluates every scenario's SLO once per tick.
pub struct Evaluator {
    trackers: BTreeMap<String, Tracker>,
    guards: BTreeMap<String, GuardMachine>,
    shared: SharedSlo,
}

impl Evaluator {
    pub fn new(shared: SharedSlo) -> Evaluator {
        Evaluator {
            trackers: BTreeMap::new(),
            guards: BTreeMap::new(),
            shared,
        }
    }

    /// One pass over the engine's scenarios at `now`.
    pub fn tick(&mut self, engine: &Engine, now: Instant) {
        let states = engine.states();
        let mut out = BTreeMap::new();
        for st in &states {
            if let Some(status) = self.scenario(engine, st, now) {
                out.insert(st.name.clone(), status);
            }
        }
        // Scenarios a reload removed, or whose slo it removed.
        self.trackers.retain(|name, _| out.contains_key(name));
        self.guards
            .retain(|name, _| out.get(name).is_some_and(|s| s.guard.is_some()));
        *self.shared.write() = out;
    }

    fn scenario(&mut self, engine: &Engine, st: &ScenarioState, now: Instant) -> Option<SloStatus> {
        let plan = st.plan();
        let slo = plan.scenario.slo;
        if !slo.is_set() {
            return None;
        }
        let t = self
            .trackers
            .entry(st.name.clone())
            .or_insert_with(|| Tracker::new(slo, engine.metrics.slo.scenario(&st.name)));
        if t.slo != slo {
            // A reload changed the objectives or the window: start the window afresh.
            *t = Tracker::new(slo, engine.metrics.slo.scenario(&st.name));
        }
        let buffer = plan
            .scenario
            .buffer
            .as_ref()
            .map(|_| engine.metrics.buffers.writer(&st.name));
        let mut status = t.tick(&st.metrics(), buffer.as_ref().map(|b| &b.e2e), now);
        status.guard = self.guard(engine, st, plan.scenario.guard, status.ok);
        Some(status)
    }

    /// Ticks the scenario's guard with its verdict and carries out what it decides.
    fn guard(
        &mut self,
        engine: &Engine,
        st: &ScenarioState,
        cfg: Option<crate::config::Guard>,
        ok: bool,
    ) -> Option<crate::engine::guard::GuardStatus> {
        let Some(cfg) = cfg else {
            if self.guards.remove(&st.name).is_some() {
                // A reload removed the guard: nothing holds the rate down any more.
                st.guard.clear();
                engine.metrics.guard.set_factor(&st.name, 1.0);
            }
            return None;
        };
        let m = self.guards.entry(st.name.clone()).or_insert_with(|| {
            engine.metrics.guard.scenario(&st.name);
            GuardMachine::new(cfg)
        });
        if m.cfg != cfg {
            // A reload changed it: start afresh, from the full rate.
            *m = GuardMachine::new(cfg);
            st.guard.clear();
        }
        let base = st
            .rate_override()
            .or_else(|| st.current().1.map(|a| a.rate))
            .unwrap_or(0.0);
        if let Some(e) = m.tick(crate::units::now_unix(), ok, base, &st.guard) {
            let status = m.status();
            let what = match e {
                GuardEvent::StepDown => format!(
                    "guard: SLO broken for {}, rate stepped down to {:.0}% ({})",
                    crate::units::format_duration(cfg.after),
                    status.factor * 100.0,
                    crate::units::format_rate(st.guard.apply(base))
                ),
                GuardEvent::Pause => format!(
                    "guard: SLO broken for {}, scenario paused",
                    crate::units::format_duration(cfg.after)
                ),
                GuardEvent::Recover => format!(
                    "guard: SLO held, rate back up to {:.0}%",
                    status.factor * 100.0
                ),
                GuardEvent::Resume => "guard: SLO held, scenario resumed".to_string(),
                GuardEvent::Suspend => {
                    "guard: a capacity search drives the scenario; guard suspended, its steps undone"
                        .to_string()
                }
                GuardEvent::Revert => "guard: reverted".to_string(),
            };
            tracing::warn!(scenario = %st.name, action = e.as_str(), "{what}");
            engine.events.push(EventKind::Guard, Some(&st.name), what);
            engine.metrics.guard.count(&st.name, e.as_str());
        }
        let status = m.status();
        engine
            .metrics
            .guard
            .set_factor(&st.name, if status.suspended { 1.0 } else { status.factor });
        Some(status)
    }
}

/// The evaluator's thread; dropping it stops the thread.
pub struct SloThread {
    stop: Option<std::sync::mpsc::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Drop for SloThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// Starts evaluating `engine`'s SLOs every second into `shared`, until the engine or the
/// returned handle is dropped.
pub fn spawn(engine: &Arc<Engine>, shared: SharedSlo) -> std::io::Result<SloThread> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let weak = Arc::downgrade(engine);
    let join = std::thread::Builder::new()
        .name("soakd-slo".into())
        .spawn(move || {
            let mut ev = Evaluator::new(shared);
            // Until the handle is dropped (the channel disconnects).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(Duration::from_secs(1))
            {
                let Some(engine) = weak.upgrade() else { break };
                ev.tick(&engine, Instant::now());
            }
        })?;
    Ok(SloThread {
        stop: Some(tx),
        join: Some(join),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_its_span_in_bounded_steps() {
        let t0 = Instant::now();
        let mut r: Ring<u64> = Ring::new(Duration::from_secs(3600));
        assert_eq!(r.step, Duration::from_secs(6));
        for s in 0..10_000u64 {
            r.push(t0 + Duration::from_secs(s), s);
        }
        assert!(r.entries.len() <= RING_ENTRIES + 1);
        // The newest sample and the one an hour (or the nearest step more) before it.
        let (a, b) = r.ends(Duration::from_secs(3600)).unwrap();
        assert_eq!(*b, 9_996);
        assert!((6_390..=6_396).contains(a), "{a}");
        // Younger than the span: from the oldest.
        let mut y: Ring<u64> = Ring::new(Duration::from_secs(10));
        y.push(t0, 1);
        y.push(t0 + Duration::from_secs(3), 4);
        assert_eq!(y.ends(Duration::from_secs(10)), Some((&1, &4)));
    }

    #[test]
    fn the_error_ratio_is_of_what_finished_in_the_window() {
        assert_eq!(ratio(&(100, 1), &(300, 21)), Some(0.1));
        assert_eq!(ratio(&(100, 1), &(100, 1)), None);
    }
}
