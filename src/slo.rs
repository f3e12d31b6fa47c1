//! Rolling SLO evaluation: every scenario with an `slo:` is judged once a second over
//! `slo.window` (default 5 minutes) against the objectives it names — p50/p95/p99 from
//! the ops' HdrHistogram windows, the error rate from the counters, the buffered
//! writer's event E2E p95 from its histogram — and the error budget's burn rate over 5
//! minutes and 1 hour. Exported as `soakd_slo_ok`, `soakd_slo_burn_rate` and
//! `soakd_slo_breached_seconds_total` (`metrics::slo`) and shown by `/api/v1/status`.
//!
//! With `verdicts.prometheus` the values are every shard's instead: the verdicts thread
//! ([`spawn_fleet`]) asks Prometheus for them every `verdicts.interval`, and the
//! evaluator judges from them while they are fresh, from this process's own otherwise
//! (saying why in the status).
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
use crate::promql::{Prom, SloTotals};
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

/// Where an SLO verdict's values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// This process's own operations.
    Local,
    /// Every shard's, summed by Prometheus (`verdicts.prometheus`).
    Prometheus,
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
    /// Where the values come from.
    pub source: Source,
    /// With `verdicts.prometheus`: the shards whose series were summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// With `verdicts.prometheus`, while its sums cannot be had: why (the values are then
    /// this process's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus_error: Option<String>,
    /// The scenario's guard, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<crate::engine::guard::GuardStatus>,
}

/// The latest verdicts by scenario, for the status API.
pub type SharedSlo = Arc<RwLock<BTreeMap<String, SloStatus>>>;

/// Every shard's SLO values from Prometheus (`verdicts.prometheus`) by scenario: the
/// verdicts thread's newest answer, or why it has none.
pub type SharedFleet = Arc<RwLock<BTreeMap<String, FleetSlo>>>;

#[derive(Debug, Clone)]
pub struct FleetSlo {
    /// When it was asked.
    pub at: Instant,
    pub result: Result<SloTotals, String>,
}

/// How long one scenario's SLO queries may take together.
const FLEET_QUERY_BUDGET: Duration = Duration::from_secs(10);

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
        fleet: Option<&SloTotals>,
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
        // Every shard's values when Prometheus has them; this process's own otherwise
        // (kept up to date either way, so a lost Prometheus costs no window).
        let (latency, error_ratio, e2e_p95) = match fleet {
            Some(f) => (f.latency, f.error_ratio, f.e2e_p95),
            None => (
                [0.5, 0.95, 0.99].map(|q| quantile_secs(&lat, q)),
                self.counts.ends(window).and_then(|(a, b)| ratio(a, b)),
                self.e2e
                    .ends(window)
                    .and_then(|(a, b)| b.quantile_since(a, 0.95)),
            ),
        };
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
        check("p50", secs(self.slo.p50), latency[0]);
        check("p95", secs(self.slo.p95), latency[1]);
        check("p99", secs(self.slo.p99), latency[2]);
        check("error_rate", self.slo.error_rate.map(|r| r.0), error_ratio);
        check("e2e_p95", secs(self.slo.e2e_p95), e2e_p95);
        let ok = objectives.iter().all(|o| o.ok);
        let burn = |i: usize| {
            let budget = self.slo.error_rate.map(|r| r.0)?;
            let r = match fleet {
                Some(f) => f.burn_ratios[i],
                None => self.burn.ends(BURN[i]).and_then(|(a, b)| ratio(a, b)),
            }
            .unwrap_or(0.0);
            Some(if budget > 0.0 {
                r / budget
            } else if r > 0.0 {
                f64::INFINITY
            } else {
                0.0
            })
        };
        let (b5, b1h) = (burn(0), burn(1));
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
            source: if fleet.is_some() {
                Source::Prometheus
            } else {
                Source::Local
            },
            shards: fleet.map(|f| f.instances),
            prometheus_error: None,
            guard: None,
        }
    }
}

/// Evaluates every scenario's SLO once per tick.
pub struct Evaluator {
    trackers: BTreeMap<String, Tracker>,
    guards: BTreeMap<String, GuardMachine>,
    shared: SharedSlo,
    fleet: Option<FleetView>,
}

/// Every shard's SLO values from Prometheus, by scenario, as the verdicts thread left
/// them, and how old an answer may be before the evaluator stops trusting it.
struct FleetView {
    shared: SharedFleet,
    max_age: Duration,
}

impl Evaluator {
    pub fn new(shared: SharedSlo) -> Evaluator {
        Evaluator {
            trackers: BTreeMap::new(),
            guards: BTreeMap::new(),
            shared,
            fleet: None,
        }
    }

    /// Judges from every shard's values in `fleet` while they are fresh (asked every
    /// `interval`).
    pub fn with_fleet(mut self, fleet: SharedFleet, interval: Duration) -> Evaluator {
        self.fleet = Some(FleetView {
            shared: fleet,
            max_age: interval * 3 + FLEET_QUERY_BUDGET,
        });
        self
    }

    /// Every shard's values for `name`, or why they cannot be used now (None, None
    /// without `verdicts.prometheus`).
    fn fleet_of(&self, name: &str, now: Instant) -> (Option<SloTotals>, Option<String>) {
        let Some(f) = &self.fleet else {
            return (None, None);
        };
        let shared = f.shared.read();
        match shared.get(name) {
            None => (None, Some("no answer from Prometheus yet".into())),
            Some(a) if now.saturating_duration_since(a.at) > f.max_age => (
                None,
                Some(format!(
                    "the newest answer from Prometheus is {:.0}s old",
                    now.saturating_duration_since(a.at).as_secs_f64()
                )),
            ),
            Some(FleetSlo { result: Ok(t), .. }) => (Some(t.clone()), None),
            Some(FleetSlo { result: Err(e), .. }) => (None, Some(e.clone())),
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
        let (fleet, fleet_error) = self.fleet_of(&st.name, now);
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
        let mut status = t.tick(
            &st.metrics(),
            buffer.as_ref().map(|b| &b.e2e),
            fleet.as_ref(),
            now,
        );
        status.prometheus_error = fleet_error;
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
/// returned handle is dropped; with `fleet` (filled by [`spawn_fleet`] every `interval`)
/// from every shard's values while they are fresh.
pub fn spawn(
    engine: &Arc<Engine>,
    shared: SharedSlo,
    fleet: Option<(SharedFleet, Duration)>,
) -> std::io::Result<SloThread> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let weak = Arc::downgrade(engine);
    let join = std::thread::Builder::new()
        .name("soakd-slo".into())
        .spawn(move || {
            let mut ev = Evaluator::new(shared);
            if let Some((f, interval)) = fleet {
                ev = ev.with_fleet(f, interval);
            }
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

/// The verdicts thread; dropping it stops the thread after its current query (it is not
/// waited for: a Prometheus that does not answer must not hold up a shutdown).
pub struct FleetThread {
    _stop: std::sync::mpsc::Sender<()>,
}

/// Asks `prom` for every SLO scenario's values over every shard, every `interval`, into
/// `fleet`, on its own thread (`soakd-verdicts`, with its own small runtime: off the load
/// runtime and off the SLO thread, which a slow Prometheus must not delay), until the
/// engine or the returned handle is dropped.
pub fn spawn_fleet(
    engine: &Arc<Engine>,
    prom: Prom,
    interval: Duration,
    fleet: SharedFleet,
) -> std::io::Result<FleetThread> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let weak = Arc::downgrade(engine);
    std::thread::Builder::new()
        .name("soakd-verdicts".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("verdicts: cannot start a runtime ({e}); SLOs are judged from this process only");
                    return;
                }
            };
            // Scenarios whose last answer was an error: logged once per change.
            let mut failing: BTreeMap<String, bool> = BTreeMap::new();
            loop {
                let Some(engine) = weak.upgrade() else { break };
                let wanted: Vec<(String, Duration)> = engine
                    .states()
                    .iter()
                    .filter_map(|st| {
                        let slo = st.plan().scenario.slo;
                        slo.is_set().then(|| (st.name.clone(), slo.window()))
                    })
                    .collect();
                drop(engine);
                let mut out = BTreeMap::new();
                for (name, window) in wanted {
                    if let Err(std::sync::mpsc::TryRecvError::Disconnected) = rx.try_recv() {
                        return;
                    }
                    let asked = rt.block_on(async {
                        tokio::time::timeout(
                            FLEET_QUERY_BUDGET,
                            prom.slo(&name, window, crate::units::now_unix()),
                        )
                        .await
                    });
                    let result = match asked {
                        Ok(Ok(t)) => Ok(t),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err(format!(
                            "Prometheus at {} did not answer within {}s",
                            prom.url(),
                            FLEET_QUERY_BUDGET.as_secs()
                        )),
                    };
                    let was = failing.insert(name.clone(), result.is_err());
                    match &result {
                        Err(e) if was != Some(true) => tracing::warn!(scenario = %name, "SLO over every shard unavailable, judging from this process: {e}"),
                        Ok(_) if was == Some(true) => tracing::info!(scenario = %name, "SLO over every shard available again"),
                        _ => {}
                    }
                    out.insert(
                        name,
                        FleetSlo {
                            at: Instant::now(),
                            result,
                        },
                    );
                }
                failing.retain(|n, _| out.contains_key(n));
                *fleet.write() = out;
                if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) =
                    rx.recv_timeout(interval)
                {
                    break;
                }
            }
        })?;
    Ok(FleetThread { _stop: tx })
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
