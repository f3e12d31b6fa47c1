//! The [`Engine`] itself: the scenarios running now, the target clients and writers they
//! share, the readers' accessors, and the draining shutdown. Applying a config lives in
//! `apply.rs`; what each scenario keeps, in `state.rs`.

use super::state::ScenarioState;
use super::status::{ReloadState, ScenarioStatus};
use crate::config::{Config, ConfigErrors, Target};
use crate::drivers::{DriverError, TargetClient};
use crate::events::EventLog;
use crate::metrics::runtime::PROBE_EVERY;
use crate::metrics::{Metrics, PoolStats};
use crate::pg::writer::BufferedWriter;
use crate::units::now_unix;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Re-reads the config (from its file) for a reload.
pub type Loader = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// A running scenario: its state and the switch that stops its runner.
pub(super) struct Handle {
    pub(super) state: Arc<ScenarioState>,
    pub(super) stop: watch::Sender<bool>,
}

impl Handle {
    /// Stops the runner's clock; its operations finish on their own.
    pub(super) fn stop(&self) {
        self.state.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
    }
}

pub(super) struct Inner {
    pub(super) config: Arc<Config>,
    pub(super) clients: HashMap<String, (Target, TargetClient)>,
    /// Buffered writers by scenario; they outlive plan swaps so a reload loses nothing.
    pub(super) buffers: HashMap<String, Arc<BufferedWriter>>,
    pub(super) scenarios: Vec<Handle>,
    /// Removed scenarios whose operations have not all finished.
    pub(super) draining: Vec<Handle>,
    pub(super) generation: u64,
}

pub struct Engine {
    pub metrics: Arc<Metrics>,
    /// Stage changes, overrides, pauses, reloads, search levels.
    pub events: Arc<EventLog>,
    pub(super) last_reload: Mutex<ReloadState>,
    pub(super) rt: tokio::runtime::Handle,
    pub(super) inner: Mutex<Inner>,
    pub(super) loader: Option<Loader>,
    started: Instant,
    shutting_down: AtomicBool,
    /// Divides every scenario's rate: shard i of n runs 1/n of the load.
    pub(super) shard_divisor: f64,
    /// The loaded fixtures' bytes (area `fixtures`), set by every apply.
    pub(super) fixture_bytes: Arc<AtomicU64>,
    /// `follow:` stages' readers, kept across reloads.
    pub(super) followers: super::follow::Followers,
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

/// Samples every scenario's started count once a second, for the achieved rate, until
/// the engine is dropped.
fn spawn_rate_sampler(engine: &Arc<Engine>) {
    let weak = Arc::downgrade(engine);
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
            followers: super::follow::Followers::default(),
        });
        engine.metrics.memory.register("events", &engine.events);
        engine
            .metrics
            .memory
            .register("fixtures", &engine.fixture_bytes);
        engine.apply(config)?;
        engine.metrics.config.reload_successful.set(1);
        engine.metrics.config.reload_timestamp.set(now_unix());
        spawn_rate_sampler(&engine);
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
    pub fn pg_stats(&self, target: &str) -> Option<Arc<dyn PoolStats>> {
        self.inner
            .lock()
            .clients
            .get(target)
            .and_then(|(_, c)| c.pg_conns())
            .map(|c| c as Arc<dyn PoolStats>)
    }

    pub fn status(&self) -> Vec<ScenarioStatus> {
        self.states().iter().map(|s| s.status()).collect()
    }

    /// Stops every arrival clock and waits up to `grace` for in-flight operations.
    /// Returns how many were still running when it gave up.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.shutting_down.store(true, Ordering::Relaxed);
        let states: Vec<Arc<ScenarioState>> = {
            let mut inner = self.inner.lock();
            let mut hs: Vec<Handle> = std::mem::take(&mut inner.scenarios);
            hs.append(&mut inner.draining);
            hs.into_iter()
                .map(|h| {
                    h.stop();
                    h.state
                })
                .collect()
        };
        let deadline = Instant::now() + grace;
        // Runners, operations in flight and visibility probes still polling: each
        // scenario's task tracker empties when the last of them ends.
        let all = futures::future::join_all(states.iter().map(|s| s.drained()));
        let _ = tokio::time::timeout_at(deadline.into(), all).await;
        let left = states.iter().map(|s| s.busy()).sum();
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
