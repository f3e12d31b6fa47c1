//! Applying a config, at start and on reload: build everything first (target clients,
//! writers, plans), then swap it in under one lock, so an unbuildable config changes
//! nothing. Which scenarios get a new plan is [`ConfigDiff`]'s answer.

use super::core::{ApplyError, Engine, Handle, Inner};
use super::diff::{ApplySummary, Change, ConfigDiff};
use super::plan::{self, Plan};
use super::runner;
use super::state::ScenarioState;
use super::status::ReloadState;
use crate::config::{Config, ConfigError, ConfigErrors, Target, TargetKind};
use crate::drivers::TargetClient;
use crate::events::EventKind;
use crate::pg::writer::BufferedWriter;
use crate::units::now_unix;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

type Clients = HashMap<String, (Target, TargetClient)>;
type Writers = HashMap<String, Arc<BufferedWriter>>;

impl Engine {
    /// Applies `cfg`: everything is built before anything is swapped in.
    pub fn apply(&self, mut cfg: Config) -> Result<ApplySummary, ApplyError> {
        // Clients, writers and their tasks belong to the load runtime, whichever thread
        // asked for the reload.
        let _rt = self.rt.enter();
        // `follow:` stages the reload leaves as they were keep their reader and rate.
        self.followers.prepare(&mut cfg);
        let mut inner = self.inner.lock();
        let diff = ConfigDiff::new(&inner.config, &cfg);
        // 1-3 build (may fail: nothing has changed yet).
        let clients = self.clients_for(&inner, &cfg)?;
        let (buffers, new_writers) = self.writers_for(&inner, &cfg, &clients);
        let generation = inner.generation + 1;
        if cfg.fixtures != inner.config.fixtures || generation == 1 {
            let bytes = cfg.fixtures.iter().map(|f| f.memory_bytes()).sum();
            self.fixture_bytes.store(bytes, Ordering::Relaxed);
        }
        let plans = cfg
            .scenarios
            .iter()
            .filter(|sc| diff.scenario(&sc.name) != Some(&Change::Unchanged))
            .map(|sc| {
                let buffer = buffers.get(&sc.name).cloned();
                plan::build(
                    &self.metrics,
                    &cfg,
                    sc,
                    &clients,
                    buffer,
                    generation,
                    self.shard_divisor,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        // 4. Swap in. Nothing below can fail.
        self.swap_writers(&mut inner, buffers, &new_writers);
        inner.generation = generation;
        self.install(&mut inner, plans, &clients, generation);
        self.retire_removed(&mut inner, &cfg);
        self.forget_pools(&inner, &clients);
        self.followers
            .commit(&cfg, &self.metrics.follow, &self.events);
        inner.clients = clients;
        inner.config = Arc::new(cfg);
        Ok(ApplySummary::from(&diff))
    }

    /// 1. Target clients: those whose config did not change are kept (their pools too).
    fn clients_for(&self, inner: &Inner, cfg: &Config) -> Result<Clients, ApplyError> {
        let mut clients = HashMap::new();
        for t in &cfg.targets {
            let client = match inner.clients.get(&t.name) {
                Some((old, c)) if old == t => c.clone(),
                _ => TargetClient::new(t, &self.metrics)?,
            };
            clients.insert(t.name.clone(), (t.clone(), client));
        }
        Ok(clients)
    }

    /// 2. Buffered writers: kept while their pool and settings stay the same. New ones are
    ///    created here but started only when swapped in.
    fn writers_for(
        &self,
        inner: &Inner,
        cfg: &Config,
        clients: &Clients,
    ) -> (Writers, Vec<Arc<BufferedWriter>>) {
        let mut buffers = Writers::new();
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

    /// Starts the new writers; writers no longer used flush what they hold, in the
    /// background.
    fn swap_writers(
        &self,
        inner: &mut Inner,
        buffers: Writers,
        new_writers: &[Arc<BufferedWriter>],
    ) {
        for w in new_writers {
            w.run();
        }
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
        clients: &Clients,
        generation: u64,
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
                h.state.set_plan(plan, generation);
            } else {
                let state = Arc::new(ScenarioState::new(plan, generation, self.events.clone()));
                let (stop, rx) = watch::channel(false);
                // The runner is one of the scenario's tracked tasks: draining waits for it.
                state.tasks.spawn(runner::run(state.clone(), rx));
                inner.scenarios.push(Handle { state, stop });
            }
        }
    }

    /// Removed scenarios stop their clocks and drain; their series go when the last
    /// operation ends. The rest are put in the file's order, for status listings.
    fn retire_removed(&self, inner: &mut Inner, cfg: &Config) {
        let keep: Vec<&str> = cfg.scenarios.iter().map(|s| s.name.as_str()).collect();
        let (stay, gone): (Vec<Handle>, Vec<Handle>) = std::mem::take(&mut inner.scenarios)
            .into_iter()
            .partition(|h| keep.contains(&h.state.name.as_str()));
        inner.scenarios = stay;
        for h in gone {
            h.stop();
            let state = h.state.clone();
            let metrics = self.metrics.clone();
            self.rt.spawn(async move {
                state.drained().await;
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
        inner.draining.retain(|h| !h.state.tasks.is_empty());
        inner
            .scenarios
            .sort_by_key(|h| keep.iter().position(|n| *n == h.state.name));
    }

    /// Pool series of postgres targets that are gone.
    fn forget_pools(&self, inner: &Inner, clients: &Clients) {
        for (name, (t, _)) in &inner.clients {
            if !clients.contains_key(name) && matches!(t.kind, TargetKind::Postgres(_)) {
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
                errors: vec![ConfigError {
                    path: String::new(),
                    message: "this config was not loaded from a file, so it cannot be reloaded"
                        .into(),
                    pos: None,
                }],
            }));
        };
        let result = loader().map_err(ApplyError::from).and_then(|cfg| {
            for w in &cfg.warnings {
                tracing::warn!("config: {w}");
            }
            let old_listen = self.config().listen;
            if cfg.listen != old_listen {
                tracing::warn!(old = %old_listen, new = %cfg.listen, "listen address changes take effect at restart");
            }
            self.apply(cfg)
        });
        let errors = self.record_reload(&result);
        *self.last_reload.lock() = ReloadState {
            successful: errors.is_empty(),
            at_ms: crate::events::now_ms(),
            errors,
        };
        result
    }

    /// The reload's series, log lines and event; returns its errors (none when it took).
    fn record_reload(&self, result: &Result<ApplySummary, ApplyError>) -> Vec<String> {
        let errors: Vec<String> = match result {
            Ok(s) => {
                self.metrics.config.reload_successful.set(1);
                self.metrics.config.reload_timestamp.set(now_unix());
                tracing::info!(added = ?s.added, changed = ?s.why, removed = ?s.removed, "config reloaded");
                self.events.push(
                    EventKind::Reload,
                    None,
                    format!("config reloaded: {}", s.describe()),
                );
                return vec![];
            }
            Err(ApplyError::Invalid(errs)) => {
                for e in &errs.errors {
                    tracing::error!(source = %errs.source_name, "config reload rejected: {e}");
                }
                errs.errors.iter().map(|e| e.to_string()).collect()
            }
            Err(e) => {
                tracing::error!("config reload rejected: {e}");
                vec![e.to_string()]
            }
        };
        self.metrics.config.reload_successful.set(0);
        let n = errors.len();
        self.events.push(
            EventKind::ReloadFailed,
            None,
            format!(
                "reload rejected ({n} error{}): {}",
                if n == 1 { "" } else { "s" },
                errors.first().map_or("", String::as_str)
            ),
        );
        errors
    }
}
