//! The engine: one runner per scenario, applying configs (at start and on reload),
//! runtime controls (pause, resume, rate override), status, and draining shutdown.
//!
//! A reload builds everything the new config needs first (target clients, drivers) and
//! only then swaps it in, so an invalid or unbuildable config changes nothing. Changed
//! scenarios get a new plan in place: their runner, connections and metric series stay.

pub mod clock;
pub mod guard;
pub mod runner;
pub mod visibility;

use crate::config::{Arrival, Config, ConfigErrors, OpKind, Scenario, Target};
use crate::drivers::{self, Driver, DriverError, TargetClient};
use crate::events::{EventKind, EventLog};
use crate::metrics::runtime::PROBE_EVERY;
use crate::metrics::{Metrics, ScenarioMetrics};
use crate::pg::writer::BufferedWriter;
use crate::schedule::{At, Schedule};
use crate::template::Fixture;
use crate::units::now_unix;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a runner needs to run a scenario; replaced whole on reload.
pub struct Plan {
    pub generation: u64,
    pub scenario: Scenario,
    pub schedule: Schedule,
    pub poisson: bool,
    /// `arrival: closed`: max_in_flight workers back to back instead of a clock.
    pub closed: bool,
    pub max_in_flight: usize,
    cumulative_weights: Vec<u32>,
    pub total_weight: u32,
    pub op_timeouts: Vec<Duration>,
    pub fixtures: Vec<Fixture>,
    pub driver: Arc<dyn Driver>,
    pub metrics: Arc<ScenarioMetrics>,
    /// The target has `trace: on`: each iteration gets a trace, marked sampled with
    /// this probability.
    pub trace: Option<f64>,
    /// Per op, its HTTP phase handles (HTTP ops only).
    pub phases: Vec<Option<crate::metrics::PhaseMetrics>>,
    /// Per op, its visibility probe (ops with `visibility:` only).
    pub probes: Vec<Option<Arc<visibility::Probe>>>,
    /// `soakd_visibility_pending` of the scenario, when an op has a probe.
    pub pending_gauge: Option<crate::metrics::IntGauge>,
}

impl Plan {
    /// The op for a uniform draw `r` in `0..total_weight`.
    pub fn pick_op(&self, r: u32) -> usize {
        self.cumulative_weights
            .partition_point(|&c| c <= r)
            .min(self.cumulative_weights.len().saturating_sub(1))
    }
}

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
    pub guard: guard::GuardCtl,
    events: Arc<EventLog>,
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

    /// Stops recording and returns what was recorded (microseconds).
    pub fn stop(&self) -> hdrhistogram::Histogram<u64> {
        self.on.store(false, Ordering::Release);
        self.hist.lock().clone()
    }
}

const NO_OVERRIDE: u64 = u64::MAX;

impl ScenarioState {
    pub fn plan(&self) -> Arc<Plan> {
        self.plan.read().clone()
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

    fn publish(&self, rate: f64, at: At) {
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

    fn sample(&self, now: Instant) {
        let mut s = self.samples.lock();
        s.push_back((now, self.started.load(Ordering::Relaxed)));
        while s.len() > 61 {
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

    pub fn status(&self) -> ScenarioStatus {
        let plan = self.plan();
        let (rate, at) = *self.current.lock();
        let q = plan.metrics.window_quantiles(&[0.5, 0.95, 0.99]);
        let requests_total: u64 = plan.metrics.ops.iter().map(|o| o.requests.get()).sum();
        ScenarioStatus {
            name: self.name.clone(),
            target: plan.scenario.target.clone(),
            state: if self.draining.load(Ordering::Relaxed) {
                "draining"
            } else if self.paused.load(Ordering::Relaxed) {
                "paused"
            } else if self.guard.paused() {
                "paused by guard"
            } else {
                "running"
            },
            stage: at
                .map(|a| plan.schedule.describe_at(&a))
                .unwrap_or_else(|| "starting".into()),
            stage_remaining_seconds: at.and_then(|a| a.remaining).map(|d| d.as_secs_f64()),
            target_rate: rate,
            rate_override: self.rate_override(),
            achieved_rate: self.achieved_rate(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_in_flight: plan.max_in_flight,
            started_total: self.started.load(Ordering::Relaxed),
            requests_total,
            dropped_total: self.dropped.load(Ordering::Relaxed),
            latency_seconds: Latency {
                p50: q[0],
                p95: q[1],
                p99: q[2],
            },
            errors: plan.metrics.errors_by_kind().into_iter().collect(),
            visibility: plan.pending_gauge.as_ref().map(|_| {
                let probes = plan.probes.iter().flatten();
                let q = crate::metrics::window::merged_quantiles(
                    probes.clone().map(|p| &*p.metrics.window),
                    &[0.5, 0.95, 0.99],
                );
                VisibilityStatus {
                    pending: self.pending.load(Ordering::Relaxed),
                    max_pending: plan.scenario.max_pending,
                    visible_total: probes.clone().map(|p| p.metrics.seconds.count()).sum(),
                    polls_total: probes.map(|p| p.metrics.polls.get()).sum(),
                    latency_seconds: Latency {
                        p50: q[0],
                        p95: q[1],
                        p99: q[2],
                    },
                }
            }),
            ops: plan
                .scenario
                .ops
                .iter()
                .map(|o| OpStatus {
                    name: o.name.clone(),
                    weight: o.weight,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ScenarioStatus {
    pub name: String,
    pub target: String,
    pub state: &'static str,
    pub stage: String,
    pub stage_remaining_seconds: Option<f64>,
    pub target_rate: f64,
    pub rate_override: Option<f64>,
    pub achieved_rate: f64,
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub started_total: u64,
    pub requests_total: u64,
    pub dropped_total: u64,
    /// Over the rolling quantile window, all ops merged; null when nothing finished.
    pub latency_seconds: Latency,
    pub errors: BTreeMap<String, u64>,
    /// Scenarios with visibility ops: their probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<VisibilityStatus>,
    pub ops: Vec<OpStatus>,
}

/// A scenario's visibility probes now.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct VisibilityStatus {
    pub pending: usize,
    pub max_pending: usize,
    /// Writes seen visible, and polls sent, since the start.
    pub visible_total: u64,
    pub polls_total: u64,
    /// Write to visible over the rolling quantile window, all visibility ops merged.
    pub latency_seconds: Latency,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct OpStatus {
    pub name: String,
    pub weight: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// What a successful apply changed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ApplySummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

struct Handle {
    state: Arc<ScenarioState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

struct Inner {
    config: Arc<Config>,
    clients: HashMap<String, (Target, TargetClient)>,
    /// Buffered writers by scenario; they outlive plan swaps so a reload loses nothing.
    buffers: HashMap<String, Arc<BufferedWriter>>,
    scenarios: Vec<Handle>,
    draining: Vec<Handle>,
    generation: u64,
}

pub type Loader = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// How the last reload went, for the page's header and the status API.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadState {
    pub successful: bool,
    /// Unix milliseconds of the last load or reload attempt.
    pub at_ms: i64,
    /// Every error of the last attempt, when it was rejected.
    pub errors: Vec<String>,
}

pub struct Engine {
    pub metrics: Arc<Metrics>,
    /// Stage changes, overrides, pauses, reloads, search levels.
    pub events: Arc<EventLog>,
    last_reload: Mutex<ReloadState>,
    rt: tokio::runtime::Handle,
    inner: Mutex<Inner>,
    loader: Option<Loader>,
    started: Instant,
    shutting_down: AtomicBool,
    /// Divides every scenario's rate: shard i of n runs 1/n of the load.
    shard_divisor: f64,
    /// The loaded fixtures' bytes (area `fixtures`), set by every apply.
    fixture_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// Measures how late the runtime polls a task whose timer fired
/// (`soakd_runtime_delay_seconds`), every [`PROBE_EVERY`], until the engine is dropped.
fn spawn_delay_probe(engine: &Arc<Engine>) {
    let weak = Arc::downgrade(engine);
    let delay = engine.metrics.runtime.delay.clone();
    engine.rt.spawn(async move {
        while weak.strong_count() > 0 {
            let due = tokio::time::Instant::now() + PROBE_EVERY;
            tokio::time::sleep_until(due).await;
            delay.observe(due.elapsed().as_secs_f64());
        }
    });
}

impl Engine {
    /// Starts every scenario of `config` on the current Tokio runtime. `loader` re-reads
    /// the config on reload (None: reload is refused).
    pub fn start(
        config: Config,
        metrics: Arc<Metrics>,
        loader: Option<Loader>,
        shard_divisor: f64,
    ) -> Result<Arc<Engine>, ApplyError> {
        let events = Arc::new(EventLog::new(config.dashboard.max_events));
        let engine = Arc::new(Engine {
            metrics,
            events,
            last_reload: Mutex::new(ReloadState {
                successful: true,
                at_ms: crate::events::now_ms(),
                errors: vec![],
            }),
            rt: tokio::runtime::Handle::current(),
            inner: Mutex::new(Inner {
                config: Arc::new(Config {
                    scenarios: vec![],
                    ..config.clone()
                }),
                clients: HashMap::new(),
                buffers: HashMap::new(),
                scenarios: vec![],
                draining: vec![],
                generation: 0,
            }),
            loader,
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            shard_divisor: shard_divisor.max(1.0),
            fixture_bytes: Arc::default(),
        });
        engine.metrics.memory.register("events", &engine.events);
        engine
            .metrics
            .memory
            .register("fixtures", &engine.fixture_bytes);
        engine.apply(config)?;
        engine.metrics.config.reload_successful.set(1);
        engine.metrics.config.reload_timestamp.set(now_unix());
        // Samples start counts once a second for achieved-rate figures.
        let weak = Arc::downgrade(&engine);
        engine.rt.spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                let Some(e) = weak.upgrade() else { break };
                let now = Instant::now();
                for s in e.states() {
                    s.sample(now);
                }
            }
        });
        spawn_delay_probe(&engine);
        Ok(engine)
    }

    pub fn config(&self) -> Arc<Config> {
        self.inner.lock().config.clone()
    }

    /// The n of `--shard i/n` (1 unsharded): the schedule's rates are divided by it.
    pub fn shard_divisor(&self) -> f64 {
        self.shard_divisor
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn last_reload(&self) -> ReloadState {
        self.last_reload.lock().clone()
    }

    /// Names of the postgres targets now configured.
    pub fn postgres_targets(&self) -> Vec<String> {
        self.inner
            .lock()
            .clients
            .iter()
            .filter(|(_, (_, c))| c.pg_conns().is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    pub fn states(&self) -> Vec<Arc<ScenarioState>> {
        self.inner
            .lock()
            .scenarios
            .iter()
            .map(|h| h.state.clone())
            .collect()
    }

    pub fn scenario(&self, name: &str) -> Option<Arc<ScenarioState>> {
        self.inner
            .lock()
            .scenarios
            .iter()
            .find(|h| h.state.name == name)
            .map(|h| h.state.clone())
    }

    /// The pool sizes of a postgres target.
    pub fn pg_stats(&self, target: &str) -> Option<Arc<dyn crate::metrics::PoolStats>> {
        self.inner
            .lock()
            .clients
            .get(target)
            .and_then(|(_, c)| c.pg_conns())
            .map(|c| c as Arc<dyn crate::metrics::PoolStats>)
    }

    pub fn status(&self) -> Vec<ScenarioStatus> {
        self.states().iter().map(|s| s.status()).collect()
    }

    fn build_plan(
        &self,
        cfg: &Config,
        sc: &Scenario,
        clients: &HashMap<String, (Target, TargetClient)>,
        buffer: Option<Arc<BufferedWriter>>,
        generation: u64,
    ) -> Result<Arc<Plan>, ApplyError> {
        let (target, client) = clients.get(&sc.target).ok_or_else(|| DriverError::Build {
            target: sc.target.clone(),
            message: "no such target".into(),
        })?;
        let driver = drivers::build(target, client, &sc.ops, buffer, sc.timeout)?;
        let names: Vec<&str> = sc.ops.iter().map(|o| o.name.as_str()).collect();
        let metrics = Arc::new(self.metrics.scenarios.scenario(&sc.name, &names));
        metrics.max_in_flight.set(sc.max_in_flight as i64);
        let mut acc = 0u32;
        let cumulative_weights = sc
            .ops
            .iter()
            .map(|o| {
                acc += o.weight;
                acc
            })
            .collect();
        let probes = visibility::probes(&sc.name, &sc.ops, clients, &self.metrics.visibility)?;
        let pending_gauge = probes
            .iter()
            .any(Option::is_some)
            .then(|| self.metrics.visibility.pending(&sc.name));
        let mut schedule = sc.schedule.clone();
        if self.shard_divisor > 1.0 {
            scale_schedule(&mut schedule, 1.0 / self.shard_divisor);
        }
        Ok(Arc::new(Plan {
            generation,
            scenario: sc.clone(),
            schedule,
            poisson: sc.arrival == Arrival::Poisson,
            closed: sc.arrival == Arrival::Closed,
            max_in_flight: sc.max_in_flight,
            cumulative_weights,
            total_weight: acc.max(1),
            op_timeouts: sc
                .ops
                .iter()
                .map(|o| o.timeout.unwrap_or(sc.timeout))
                .collect(),
            fixtures: cfg.fixtures.clone(),
            driver,
            metrics,
            trace: target.kind.trace_sampled(),
            phases: sc
                .ops
                .iter()
                .map(|o| {
                    matches!(o.kind, OpKind::Http(_))
                        .then(|| self.metrics.http.op(&sc.name, &o.name))
                })
                .collect(),
            probes,
            pending_gauge,
        }))
    }

    /// Applies `cfg`: everything is built before anything is swapped in.
    pub fn apply(&self, cfg: Config) -> Result<ApplySummary, ApplyError> {
        // Clients, writers and their tasks belong to the load runtime, whichever thread
        // asked for the reload.
        let _rt = self.rt.enter();
        let mut inner = self.inner.lock();
        // 1-3 build (may fail: nothing has changed yet).
        let clients = self.clients_for(&inner, &cfg)?;
        let (buffers, new_writers) = self.writers_for(&inner, &cfg, &clients);
        let generation = inner.generation + 1;
        let mut summary = ApplySummary::default();
        let plans = self.plans_for(&inner, &cfg, &clients, &buffers, generation, &mut summary)?;
        // 4. Swap in. Nothing below can fail.
        self.swap_writers(&mut inner, buffers, &new_writers);
        inner.generation = generation;
        self.install(&mut inner, plans, &clients, generation, &mut summary);
        self.retire_removed(&mut inner, &cfg, &mut summary);
        self.forget_pools(&inner, &clients);
        inner.clients = clients;
        inner.config = Arc::new(cfg);
        Ok(summary)
    }

    /// 1. Target clients: those whose config did not change are kept (their pools too).
    fn clients_for(
        &self,
        inner: &Inner,
        cfg: &Config,
    ) -> Result<HashMap<String, (Target, TargetClient)>, ApplyError> {
        let mut clients = HashMap::new();
        for t in &cfg.targets {
            match inner.clients.get(&t.name) {
                Some((old, c)) if old == t => {
                    clients.insert(t.name.clone(), (t.clone(), c.clone()));
                }
                _ => {
                    clients.insert(
                        t.name.clone(),
                        (t.clone(), TargetClient::new(t, &self.metrics)?),
                    );
                }
            }
        }
        Ok(clients)
    }

    /// 2. Buffered writers: kept while their pool and settings stay the same. New ones are
    ///    created here but started only when swapped in.
    fn writers_for(
        &self,
        inner: &Inner,
        cfg: &Config,
        clients: &HashMap<String, (Target, TargetClient)>,
    ) -> (
        HashMap<String, Arc<BufferedWriter>>,
        Vec<Arc<BufferedWriter>>,
    ) {
        let mut buffers: HashMap<String, Arc<BufferedWriter>> = HashMap::new();
        let mut new_writers: Vec<Arc<BufferedWriter>> = Vec::new();
        for sc in &cfg.scenarios {
            let (Some(bc), Some(conns)) = (
                &sc.buffer,
                clients.get(&sc.target).and_then(|(_, c)| c.pg_conns()),
            ) else {
                continue;
            };
            let keep = inner.buffers.get(&sc.name).filter(|w| {
                w.cfg == *bc
                    && inner
                        .clients
                        .get(&sc.target)
                        .and_then(|(_, c)| c.pg_conns())
                        // The same pool: the target did not change.
                        .is_some_and(|p| Arc::ptr_eq(&p, &conns))
            });
            let w = match keep {
                Some(w) => w.clone(),
                None => {
                    let w = BufferedWriter::create(
                        &sc.name,
                        bc.clone(),
                        conns.clone(),
                        self.metrics.buffers.writer(&sc.name),
                    );
                    new_writers.push(w.clone());
                    w
                }
            };
            buffers.insert(sc.name.clone(), w);
        }
        (buffers, new_writers)
    }

    /// 3. Plans for new and changed scenarios; unchanged ones are listed in `summary`.
    fn plans_for(
        &self,
        inner: &Inner,
        cfg: &Config,
        clients: &HashMap<String, (Target, TargetClient)>,
        buffers: &HashMap<String, Arc<BufferedWriter>>,
        generation: u64,
        summary: &mut ApplySummary,
    ) -> Result<Vec<Arc<Plan>>, ApplyError> {
        let mut plans = Vec::new();
        let fixtures_changed = cfg.fixtures != inner.config.fixtures;
        if fixtures_changed || generation == 1 {
            let bytes = cfg.fixtures.iter().map(|f| f.memory_bytes()).sum();
            self.fixture_bytes.store(bytes, Ordering::Relaxed);
        }
        for sc in &cfg.scenarios {
            let existing = inner.scenarios.iter().find(|h| h.state.name == sc.name);
            // The scenario's target and the targets its visibility probes poll.
            let used = std::iter::once(&sc.target).chain(
                sc.ops
                    .iter()
                    .filter_map(|o| o.visibility.as_ref().map(|v| &v.target)),
            );
            let target_changed = existing.is_some_and(|h| {
                let p = h.state.plan();
                p.scenario.target != sc.target
                    || used.into_iter().any(|t| {
                        inner.clients.get(t).map(|(t, _)| t) != clients.get(t).map(|(t, _)| t)
                    })
            });
            let buffer = buffers.get(&sc.name).cloned();
            let buffer_changed = match (inner.buffers.get(&sc.name), &buffer) {
                (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                (None, None) => false,
                _ => true,
            };
            match existing {
                Some(h)
                    if h.state.plan().scenario == *sc
                        && !target_changed
                        && !fixtures_changed
                        && !buffer_changed =>
                {
                    summary.unchanged.push(sc.name.clone());
                }
                _ => plans.push(self.build_plan(cfg, sc, clients, buffer, generation)?),
            }
        }
        Ok(plans)
    }

    /// Starts the new writers; writers no longer used flush what they hold, in the
    /// background.
    fn swap_writers(
        &self,
        inner: &mut Inner,
        buffers: HashMap<String, Arc<BufferedWriter>>,
        new_writers: &[Arc<BufferedWriter>],
    ) {
        for w in new_writers {
            w.run();
        }
        // Writers no longer used flush what they hold, in the background.
        for (name, w) in inner.buffers.drain() {
            if !buffers.get(&name).is_some_and(|n| Arc::ptr_eq(n, &w)) {
                self.rt.spawn(async move {
                    let left = w.drain(Instant::now() + Duration::from_secs(30)).await;
                    if left > 0 {
                        tracing::error!(scenario = %w.scenario, entries = left, "retired buffer could not flush everything");
                    }
                });
            }
        }
        inner.buffers = buffers;
    }

    /// Swaps each plan into its scenario (same runner, same series) or starts a runner
    /// for a new one.
    fn install(
        &self,
        inner: &mut Inner,
        plans: Vec<Arc<Plan>>,
        clients: &HashMap<String, (Target, TargetClient)>,
        generation: u64,
        summary: &mut ApplySummary,
    ) {
        for plan in plans {
            let name = plan.scenario.name.clone();
            if let Some((t, _)) = clients.get(&plan.scenario.target) {
                self.metrics
                    .scenarios
                    .set_scenario_info(&name, &t.name, t.kind.type_name());
            }
            if let Some(h) = inner.scenarios.iter().find(|h| h.state.name == name) {
                let old = h.state.plan();
                plan.metrics.inherit_errors(&old.metrics);
                let gone: Vec<String> = old
                    .scenario
                    .ops
                    .iter()
                    .filter(|o| !plan.scenario.ops.iter().any(|n| n.name == o.name))
                    .map(|o| o.name.clone())
                    .collect();
                self.metrics.scenarios.remove(&name, &gone, false);
                self.metrics.http.remove(&name, &gone, false);
                self.metrics.visibility.remove(&name, &gone, false);
                *h.state.plan.write() = plan;
                h.state.generation.store(generation, Ordering::Release);
                summary.changed.push(name);
            } else {
                let state = Arc::new(ScenarioState {
                    name: name.clone(),
                    plan: RwLock::new(plan),
                    generation: AtomicU64::new(generation),
                    paused: AtomicBool::new(false),
                    guard: Default::default(),
                    override_rate: AtomicU64::new(NO_OVERRIDE),
                    in_flight: AtomicUsize::new(0),
                    started: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                    pending: AtomicUsize::new(0),
                    seq: AtomicU64::new(0),
                    draining: AtomicBool::new(false),
                    current: Mutex::new((0.0, None)),
                    samples: Mutex::new(VecDeque::new()),
                    capture: Capture::default(),
                    events: self.events.clone(),
                });
                let (stop, rx) = watch::channel(false);
                let task = self.rt.spawn(runner::run(state.clone(), rx));
                inner.scenarios.push(Handle { state, stop, task });
                summary.added.push(name);
            }
        }
    }

    /// Removed scenarios stop their clocks and drain; their series go when empty. The rest
    /// are put in the file's order, for status listings.
    fn retire_removed(&self, inner: &mut Inner, cfg: &Config, summary: &mut ApplySummary) {
        let keep: Vec<String> = cfg.scenarios.iter().map(|s| s.name.clone()).collect();
        let (stay, gone): (Vec<Handle>, Vec<Handle>) = std::mem::take(&mut inner.scenarios)
            .into_iter()
            .partition(|h| keep.contains(&h.state.name));
        inner.scenarios = stay;
        for h in gone {
            summary.removed.push(h.state.name.clone());
            h.state.draining.store(true, Ordering::Relaxed);
            let _ = h.stop.send(true);
            let state = h.state.clone();
            let metrics = self.metrics.clone();
            self.rt.spawn(async move {
                while state.in_flight.load(Ordering::Acquire)
                    + state.pending.load(Ordering::Acquire)
                    > 0
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let ops: Vec<String> = state
                    .plan()
                    .scenario
                    .ops
                    .iter()
                    .map(|o| o.name.clone())
                    .collect();
                metrics.scenarios.remove(&state.name, &ops, true);
                metrics.http.remove(&state.name, &ops, true);
                metrics.visibility.remove(&state.name, &ops, true);
            });
            inner.draining.push(h);
        }
        inner
            .draining
            .retain(|h| h.state.in_flight.load(Ordering::Acquire) > 0);
        // Reorder to match the file, for status listings.
        inner
            .scenarios
            .sort_by_key(|h| keep.iter().position(|n| *n == h.state.name));
    }

    /// Pool series of postgres targets that are gone.
    fn forget_pools(&self, inner: &Inner, clients: &HashMap<String, (Target, TargetClient)>) {
        for (name, (t, _)) in &inner.clients {
            if !clients.contains_key(name)
                && matches!(t.kind, crate::config::TargetKind::Postgres(_))
            {
                self.metrics.pools.forget(name);
            }
        }
    }

    /// Re-reads the config file and applies it; on any error the running config stays
    /// and `soakd_config_last_reload_successful` goes to 0.
    pub fn reload(&self) -> Result<ApplySummary, ApplyError> {
        let Some(loader) = &self.loader else {
            return Err(ApplyError::Invalid(ConfigErrors {
                source_name: "(embedded config)".into(),
                errors: vec![crate::config::ConfigError {
                    path: String::new(),
                    message: "this config was not loaded from a file, so it cannot be reloaded"
                        .into(),
                    pos: None,
                }],
            }));
        };
        let result = loader()
            .map_err(ApplyError::from)
            .and_then(|cfg| {
                let old_listen = self.config().listen;
                if cfg.listen != old_listen {
                    tracing::warn!(old = %old_listen, new = %cfg.listen, "listen address changes take effect at restart");
                }
                self.apply(cfg)
            });
        let errors: Vec<String> = match &result {
            Ok(s) => {
                self.metrics.config.reload_successful.set(1);
                self.metrics.config.reload_timestamp.set(now_unix());
                tracing::info!(added = ?s.added, changed = ?s.changed, removed = ?s.removed, "config reloaded");
                let mut what = Vec::new();
                for (label, names) in [
                    ("added", &s.added),
                    ("changed", &s.changed),
                    ("removed", &s.removed),
                ] {
                    if !names.is_empty() {
                        what.push(format!("{label} {}", names.join(", ")));
                    }
                }
                if what.is_empty() {
                    what.push("nothing changed".into());
                }
                self.events.push(
                    EventKind::Reload,
                    None,
                    format!("config reloaded: {}", what.join("; ")),
                );
                vec![]
            }
            Err(ApplyError::Invalid(errs)) => {
                self.metrics.config.reload_successful.set(0);
                for e in &errs.errors {
                    tracing::error!(source = %errs.source_name, "config reload rejected: {e}");
                }
                errs.errors.iter().map(|e| e.to_string()).collect()
            }
            Err(e) => {
                self.metrics.config.reload_successful.set(0);
                tracing::error!("config reload rejected: {e}");
                vec![e.to_string()]
            }
        };
        if !errors.is_empty() {
            let n = errors.len();
            self.events.push(
                EventKind::ReloadFailed,
                None,
                format!(
                    "reload rejected ({n} error{}): {}",
                    if n == 1 { "" } else { "s" },
                    errors[0]
                ),
            );
        }
        *self.last_reload.lock() = ReloadState {
            successful: errors.is_empty(),
            at_ms: crate::events::now_ms(),
            errors,
        };
        result
    }

    /// Stops every arrival clock and waits up to `grace` for in-flight operations.
    /// Returns how many were still running when it gave up.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.shutting_down.store(true, Ordering::Relaxed);
        let (states, tasks): (Vec<_>, Vec<_>) = {
            let mut inner = self.inner.lock();
            let mut hs: Vec<Handle> = std::mem::take(&mut inner.scenarios);
            hs.append(&mut inner.draining);
            hs.into_iter()
                .map(|h| {
                    h.state.draining.store(true, Ordering::Relaxed);
                    let _ = h.stop.send(true);
                    (h.state, h.task)
                })
                .unzip()
        };
        for t in tasks {
            let _ = t.await;
        }
        let deadline = Instant::now() + grace;
        // Operations in flight and visibility probes still polling.
        let left = loop {
            let left: usize = states
                .iter()
                .map(|s| s.in_flight.load(Ordering::Acquire) + s.pending.load(Ordering::Acquire))
                .sum();
            if left == 0 || Instant::now() >= deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // Everything accepted into a buffer is committed before exit, within the grace
        // period (at least one second, so an exhausted grace still tries once).
        let buffers: Vec<Arc<BufferedWriter>> =
            self.inner.lock().buffers.values().cloned().collect();
        for w in buffers {
            let until = deadline.max(Instant::now() + Duration::from_secs(1));
            let unflushed = w.drain(until).await;
            if unflushed > 0 {
                tracing::error!(scenario = %w.scenario, entries = unflushed, "buffer not fully flushed before exit");
            } else {
                tracing::info!(scenario = %w.scenario, "buffer flushed");
            }
        }
        left
    }
}

fn scale_schedule(s: &mut Schedule, f: f64) {
    use crate::schedule::Stage;
    for st in &mut s.stages {
        match st {
            Stage::Hold { rate, .. } => *rate *= f,
            Stage::Ramp { from, to, .. } => {
                *from *= f;
                *to *= f;
            }
            Stage::Levels { rates, .. } => rates.iter_mut().for_each(|r| *r *= f),
            Stage::Daily { points, .. } => points.iter_mut().for_each(|p| p.1 *= f),
        }
    }
}
