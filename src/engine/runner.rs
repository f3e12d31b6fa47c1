//! One scenario's runner: a timer tick drives the arrival clock; each released arrival
//! starts an operation if the in-flight cap allows, else counts a dropped iteration.
//! Latency is measured from the intended start; schedule lag is recorded apart.

use super::clock::ArrivalClock;
use super::plan::Plan;
use super::state::ScenarioState;
use crate::drivers::{kind, OpError};
use crate::template::{IterVars, TraceContext};
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Notify};

/// How often the clock releases arrivals.
pub const TICK: Duration = Duration::from_millis(1);

/// Arrivals due within this much of now are released on this tick, a little early,
/// rather than on the next one, late: the timer's 1 ms granularity then shows as
/// ±0.5 ms of jitter instead of up to 1 ms of lateness added to every operation.
pub const EARLY: Duration = Duration::from_micros(500);

fn time_of_day_utc() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() % 86_400.0)
        .unwrap_or(0.0)
}

/// Runs until `stop` turns true. In-flight operations are left to finish on their own;
/// the engine waits for them.
pub async fn run(state: Arc<ScenarioState>, stop: watch::Receiver<bool>) {
    if state.plan().closed {
        return run_closed(state, stop).await;
    }
    run_open(state, stop).await
}

async fn run_open(state: Arc<ScenarioState>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut plan = state.plan();
    let mut generation = plan.generation;
    let mut schedule_start = Instant::now();
    let mut clock = ArrivalClock::new(plan.poisson);
    let mut due = Vec::with_capacity(1024);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
        if state.generation.load(Ordering::Acquire) != generation {
            let new = state.plan();
            if new.closed {
                // A reload switched the arrival model: hand over to the closed loop.
                return Box::pin(run_closed(state, stop)).await;
            }
            if new.schedule != plan.schedule {
                schedule_start = Instant::now();
            }
            if new.poisson != plan.poisson {
                clock = ArrivalClock::new(new.poisson);
            }
            generation = new.generation;
            plan = new;
        }
        let now = Instant::now();
        let at = plan
            .schedule
            .at(now.duration_since(schedule_start), time_of_day_utc());
        let rate = state.effective_rate(at.rate);
        state.publish(rate, at);
        // Bound one tick's work; anything beyond stays due for the next tick.
        let limit = ((rate * 0.25) as usize).max(1024);
        due.clear();
        let d = clock.due(now + EARLY, rate, limit, &mut due);
        if d.skipped > 0 {
            state.metrics().dropped.inc_by(d.skipped);
            state.dropped.fetch_add(d.skipped, Ordering::Relaxed);
        }
        for &intended in &due {
            launch(&state, &plan, intended);
        }
    }
}

fn launch(state: &Arc<ScenarioState>, plan: &Arc<Plan>, intended: Instant) {
    let op = plan.pick_op(rand::rng().random_range(0..plan.total_weight));
    let probe = plan.probes.get(op).is_some_and(Option::is_some);
    // Only this task increments in_flight and pending, so load-then-add cannot
    // overshoot the caps. A visibility op also needs a pending slot: its probe
    // outlives the write.
    if state.in_flight.load(Ordering::Acquire) >= plan.max_in_flight
        || (probe && state.pending.load(Ordering::Acquire) >= plan.scenario.max_pending)
    {
        state.dropped.fetch_add(1, Ordering::Relaxed);
        plan.metrics.dropped.inc();
        return;
    }
    if probe {
        state.pending.fetch_add(1, Ordering::AcqRel);
        if let Some(g) = &plan.pending_gauge {
            g.inc();
        }
    }
    state.in_flight.fetch_add(1, Ordering::AcqRel);
    state.started.fetch_add(1, Ordering::Relaxed);
    plan.metrics.in_flight.inc();
    let task_state = state.clone();
    let plan = plan.clone();
    state.tasks.spawn(async move {
        let state = task_state;
        let actual = Instant::now();
        plan.metrics
            .lag
            .observe(actual.saturating_duration_since(intended).as_secs_f64());
        // Late: measure from the intended start (coordinated omission corrected).
        // Released early by up to EARLY: measure from the actual start.
        execute(&state, &plan, intended.min(actual), op).await;
    });
}

/// Runs one iteration of op `op` under its timeout and records it as started at
/// `start`. The caller has counted it in flight (and, for a visibility op, pending);
/// this uncounts it: in flight when the write returns, pending when its probe ends.
async fn execute(state: &ScenarioState, plan: &Plan, start: Instant, op: usize) {
    let seq = state.seq.fetch_add(1, Ordering::Relaxed);
    let trace = plan.trace.map(TraceContext::random);
    let mut vars = IterVars::new(&plan.fixtures, seq).with_trace(trace);
    let timeout = plan.op_timeouts[op];
    let result = match tokio::time::timeout(timeout, plan.driver.execute(op, &mut vars)).await {
        Ok(r) => r,
        Err(_) => Err(OpError::new(
            kind::TIMEOUT,
            format!(
                "no answer within {}",
                crate::units::format_duration(timeout)
            ),
        )),
    };
    let latency = Instant::now().saturating_duration_since(start);
    let om = &plan.metrics.ops[op];
    om.requests.inc();
    if let Some(Some(pm)) = plan.phases.get(op) {
        if !vars.phases.is_empty() {
            pm.observe(&vars.phases);
        }
    }
    observe(&om.duration, latency, trace);
    om.window.record(latency);
    state.capture.record(latency);
    let written = result.is_ok();
    if let Err(e) = result {
        plan.metrics.record_error(op, &e.kind);
        tracing::debug!(scenario = %plan.metrics.scenario, op = %om.op, kind = %e.kind, detail = %e.detail, "operation failed");
    }
    plan.metrics.in_flight.dec();
    state.in_flight.fetch_sub(1, Ordering::AcqRel);
    let Some(Some(probe)) = plan.probes.get(op) else {
        return;
    };
    if written {
        vars.bind_write();
        match probe.run(&mut vars, start, timeout).await {
            Ok(lat) => {
                observe(&probe.metrics.seconds, lat, trace);
                probe.metrics.window.record(lat);
            }
            Err(e) => {
                plan.metrics.record_error(op, &e.kind);
                tracing::debug!(scenario = %plan.metrics.scenario, op = %om.op, kind = %e.kind, detail = %e.detail, "write not visible");
            }
        }
    }
    if let Some(g) = &plan.pending_gauge {
        g.dec();
    }
    state.pending.fetch_sub(1, Ordering::AcqRel);
}

/// Observes `d` in `h`; a sampled trace (one the tracing backend keeps) may become the
/// bucket's exemplar.
fn observe(h: &crate::metrics::Histogram, d: Duration, trace: Option<TraceContext>) {
    match trace {
        Some(t) if t.sampled => h.observe_traced(d.as_secs_f64(), t.trace_id),
        _ => h.observe(d.as_secs_f64()),
    }
}

/// The closed model's on/off switch for its workers: a worker that finds it off waits to
/// be woken, instead of polling.
#[derive(Default)]
struct Switch {
    on: AtomicBool,
    halt: AtomicBool,
    wake: Notify,
}

impl Switch {
    fn set(&self, on: bool) {
        if self.on.swap(on, Ordering::AcqRel) != on && on {
            self.wake.notify_waiters();
        }
    }

    fn halt(&self) {
        self.halt.store(true, Ordering::Release);
        self.wake.notify_waiters();
    }

    /// Whether to run another iteration: true at once while on, false once halted;
    /// while off, waits for either.
    async fn go(&self) -> bool {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            // Registered before the flags are read, so a change between the two wakes it.
            woken.as_mut().enable();
            if self.halt.load(Ordering::Acquire) {
                return false;
            }
            if self.on.load(Ordering::Acquire) {
                return true;
            }
            woken.await;
        }
    }
}

/// The closed model (`arrival: closed`): `max_in_flight` workers each run iterations
/// back to back, as pgbench and wrk do. There is no intended start, so no schedule lag
/// and no coordinated-omission correction: latency is service time, and throughput is
/// what the target allows. The schedule only switches the workers on (rate > 0) and off
/// (0, or paused).
async fn run_closed(state: Arc<ScenarioState>, mut stop: watch::Receiver<bool>) {
    loop {
        let plan = state.plan();
        if !plan.closed {
            return Box::pin(run_open(state, stop)).await;
        }
        let generation = plan.generation;
        let switch = Arc::new(Switch::default());
        for _ in 0..plan.max_in_flight {
            state
                .tasks
                .spawn(worker(state.clone(), plan.clone(), switch.clone()));
        }
        let start = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let restart = loop {
            tokio::select! {
                _ = ticker.tick() => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break false;
                    }
                }
            }
            if state.generation.load(Ordering::Acquire) != generation {
                break true;
            }
            let at = plan.schedule.at(start.elapsed(), time_of_day_utc());
            let rate = state.effective_rate(at.rate);
            state.publish(rate, at);
            switch.set(rate > 0.0);
        };
        // Workers finish the iteration they are in; the engine waits for its tasks.
        switch.halt();
        if !restart {
            return;
        }
    }
}

async fn worker(state: Arc<ScenarioState>, plan: Arc<Plan>, switch: Arc<Switch>) {
    while switch.go().await {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state.started.fetch_add(1, Ordering::Relaxed);
        plan.metrics.in_flight.inc();
        // The closed model has no probes (the config refuses them): no pending slot.
        let op = plan.pick_op(rand::rng().random_range(0..plan.total_weight));
        execute(&state, &plan, Instant::now(), op).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_worker_wakes_when_switched_on_and_ends_when_halted() {
        let s = Arc::new(Switch::default());
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { s.go().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "off: the worker waits");
        s.set(true);
        assert!(waiting.await.unwrap(), "switched on: it runs");
        assert!(s.go().await, "still on: no wait");
        s.set(false);
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { s.go().await }
        });
        tokio::task::yield_now().await;
        s.halt();
        assert!(!waiting.await.unwrap(), "halted while off: it ends");
    }
}
