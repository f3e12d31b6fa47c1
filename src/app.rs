//! Wiring: a daemon is an engine plus its admin server; it runs until a signal (or a
//! fixed duration) and then drains. `main.rs` and the integration tests both use this.

use crate::capacity::controller::{self, Progress, ProgressCell, SearchState, SharedProgress};
use crate::capacity::store::Store;
use crate::config::search::{ResultsConfig, SearchConfig};
use crate::config::Config;
use crate::engine::{ApplyError, Engine, Loader};
use crate::history::History;
use crate::metrics::Metrics;
use crate::server::{self, AdminThread, AppState, SharedStore};
use futures::StreamExt;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("cannot start the history sampler thread: {0}")]
    Sampler(std::io::Error),
    #[error("cannot start the SLO evaluator thread: {0}")]
    Slo(std::io::Error),
    #[error("cannot start the soak thread: {0}")]
    Soak(std::io::Error),
    #[error("shard {index}/{count} with verdicts.prometheus and a search follows shard 0's search: set verdicts.leader to shard 0's admin URL (e.g. http://soakd-0.soakd:9477)")]
    NoLeader { index: u32, count: u32 },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Why a daemon stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `--duration` elapsed.
    DurationElapsed,
    /// `--exit-after-search`, and the search finished.
    SearchComplete,
    SearchFailed,
    Sigint,
    Sigterm,
    /// The signal stream ended (the process cannot watch signals any more).
    SignalsClosed,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::DurationElapsed => "duration elapsed",
            StopReason::SearchComplete => "capacity search complete",
            StopReason::SearchFailed => "capacity search failed",
            StopReason::Sigint => "SIGINT",
            StopReason::Sigterm => "SIGTERM",
            StopReason::SignalsClosed => "signal stream closed",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or("expected i/n, e.g. 0/2")?;
        let index: u32 = i.trim().parse().map_err(|_| "i must be a number")?;
        let count: u32 = n.trim().parse().map_err(|_| "n must be a number")?;
        if count == 0 || index >= count {
            return Err("need 0 <= i < n".into());
        }
        Ok(Shard { index, count })
    }
}

#[derive(Default)]
pub struct Options {
    /// Overrides the config's listen address.
    pub listen: Option<SocketAddr>,
    pub shard: Option<Shard>,
    /// The config file, shown in the page's header (None: embedded, as in `demo`).
    pub config_path: Option<std::path::PathBuf>,
    /// Use these metrics instead of a new registry (the demo shares one with its
    /// target's buffered writer, so the page shows that writer).
    pub metrics: Option<Arc<Metrics>>,
}

pub struct Daemon {
    pub engine: Arc<Engine>,
    /// The dashboard's history (None with `dashboard: {enabled: false}`).
    pub history: Option<Arc<History>>,
    sampler: Option<crate::history::SamplerThread>,
    slo_thread: Option<crate::slo::SloThread>,
    /// With `verdicts.prometheus`: the thread asking it for every shard's SLO values.
    _fleet_thread: Option<crate::slo::FleetThread>,
    /// Observing and judging the system under test (shard 0 only).
    _soak_thread: Option<crate::soak::thread::SoakThread>,
    /// Seeing and judging the target's deploys (shard 0 only).
    _deploy_thread: Option<crate::deploy::thread::DeployThread>,
    /// The rolling SLO verdicts by scenario.
    pub slo: crate::slo::SharedSlo,
    admin: Option<AdminThread>,
    started: Instant,
    /// The capacity search's progress, when one is configured.
    pub search: Option<SharedProgress>,
}

/// Opens the results store in the background (a database may not be up yet: retried
/// with backoff), then runs the capacity search if one is configured.
fn start_results(
    engine: &Arc<Engine>,
    cfg: ResultsConfig,
    search: Option<SearchConfig>,
    progress: Option<SharedProgress>,
    results: SharedStore,
) {
    // Without a search, a results directory is only read: do not create one.
    if let (ResultsConfig::Dir(d), None) = (&cfg, &search) {
        *results.write() = Some(Store::Jsonl(d.clone()));
        return;
    }
    let engine = engine.clone();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        let store = loop {
            match Store::open(&cfg).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::error!("results store: {e}; retrying in {backoff:?}");
                    if let Some(p) = &progress {
                        p.lock().error = Some(e.to_string());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        };
        *results.write() = Some(store.clone());
        let (Some(search), Some(progress)) = (search, progress) else {
            return;
        };
        crate::capacity::watch::spawn(engine.clone(), store.clone());
        progress.lock().error = None;
        let events = engine.events.clone();
        let (e2, s2) = (engine.clone(), store.clone());
        // Each finished run shows on /metrics at once, not at the next refresh.
        let after_run = || async {
            if let Err(e) = crate::capacity::watch::refresh_now(&e2, &s2).await {
                tracing::warn!("capacity series: reading the results store: {e}");
            }
        };
        let result =
            controller::run_scheduled(engine, search, store, progress.clone(), after_run).await;
        if let Err(e) = result {
            tracing::error!("capacity search stopped: {e}");
            events.push(
                crate::events::EventKind::Search,
                None,
                format!("capacity search failed: {e}"),
            );
            let mut p = progress.lock();
            p.state = SearchState::Failed;
            p.error = Some(e.to_string());
        }
    });
}

impl Daemon {
    /// Starts the scenarios and the admin server (on its own thread). Must be called
    /// inside the Tokio runtime that will run the load.
    pub fn start(
        config: Config,
        loader: Option<Loader>,
        opts: Options,
    ) -> Result<Daemon, StartError> {
        for w in &config.warnings {
            tracing::warn!("config: {w}");
        }
        let listen = opts.listen.unwrap_or(config.listen);
        let listener =
            std::net::TcpListener::bind(listen).map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        let metrics = match opts.metrics {
            Some(m) => m,
            None => Arc::new(Metrics::new(config.quantile_window)),
        };
        let dashboard = config.dashboard.clone();
        let divisor = opts.shard.map(|s| s.count as f64).unwrap_or(1.0);
        let verdicts = config.verdicts.clone();
        // With verdicts from Prometheus, shard 0 searches and the others follow it.
        let leader = match (&opts.shard, &verdicts, &config.search) {
            (Some(sh), Some(v), Some(_)) if sh.index > 0 => match &v.leader {
                Some(l) => Some(l.clone()),
                None => {
                    return Err(StartError::NoLeader {
                        index: sh.index,
                        count: sh.count,
                    })
                }
            },
            _ => None,
        };
        let (results_cfg, search_cfg) = (config.results.clone(), config.search.clone());
        let engine = Engine::start(config, metrics, loader, divisor)?;
        let results: SharedStore = Arc::new(parking_lot::RwLock::new(None));
        let search = search_cfg
            .as_ref()
            .map(|_| ProgressCell::new(Progress::default()));
        let follow = match (&leader, &search_cfg, &search) {
            (Some(l), Some(s), Some(p)) => Some((l.clone(), s.clone(), p.clone())),
            _ => None,
        };
        match follow {
            Some((leader, s, p)) => {
                // A follower keeps the results store for reading; the search is the
                // leader's.
                start_results(&engine, results_cfg, None, None, results.clone());
                crate::capacity::follow::spawn(&engine, s, leader, p);
            }
            None => start_results(
                &engine,
                results_cfg,
                search_cfg,
                search.clone(),
                results.clone(),
            ),
        }
        let history = dashboard.enabled.then(|| Arc::new(History::new(dashboard)));
        if let Some(h) = &history {
            engine.metrics.memory.register("history", h);
        }
        let sampler = match &history {
            Some(h) => {
                Some(crate::history::spawn(&engine, h.clone()).map_err(StartError::Sampler)?)
            }
            None => None,
        };
        let slo = crate::slo::SharedSlo::default();
        let (fleet, fleet_thread) = match &verdicts {
            Some(v) => {
                let shared = crate::slo::SharedFleet::default();
                let t = crate::slo::spawn_fleet(
                    &engine,
                    crate::promql::Prom::new(&v.prometheus, &v.selector),
                    v.interval,
                    shared.clone(),
                )
                .map_err(StartError::Slo)?;
                (Some((shared, v.interval)), Some(t))
            }
            None => (None, None),
        };
        let slo_thread = crate::slo::spawn(&engine, slo.clone(), fleet).map_err(StartError::Slo)?;
        // Only shard 0 observes and judges the system under test.
        let soak_cfg = engine.config().soak.clone();
        let leads = opts.shard.is_none_or(|s| s.index == 0);
        let soak =
            (soak_cfg.enabled && leads).then(|| Arc::new(crate::soak::store::Soak::new(soak_cfg)));
        let soak_thread = match &soak {
            Some(s) => {
                engine.metrics.memory.register("soak", s);
                Some(crate::soak::thread::spawn(&engine, s.clone()).map_err(StartError::Soak)?)
            }
            None => None,
        };
        let deploys_cfg = engine.config().deploys.clone();
        let deploys = (deploys_cfg.enabled && leads)
            .then(|| Arc::new(crate::deploy::Deploys::new(&deploys_cfg)));
        let deploy_thread = match &deploys {
            Some(d) => {
                engine.metrics.memory.register("deploys", d);
                Some(
                    crate::deploy::thread::spawn(&engine, d.clone(), soak.clone(), results.clone())
                        .map_err(StartError::Soak)?,
                )
            }
            None => None,
        };
        let state = AppState {
            deploys,
            soak,
            engine: engine.clone(),
            slo: slo.clone(),
            loopback_only: listen.ip().is_loopback(),
            search: search.clone(),
            results,
            history: history.clone(),
            config_path: opts.config_path.map(|p| p.display().to_string()),
        };
        let admin =
            server::spawn_admin_thread(listener, state).map_err(|source| StartError::Listen {
                addr: listen,
                source,
            })?;
        tracing::info!(addr = %admin.addr, scenarios = engine.states().len(), "soakd running");
        Ok(Daemon {
            engine,
            history,
            sampler,
            slo_thread: Some(slo_thread),
            _fleet_thread: fleet_thread,
            _soak_thread: soak_thread,
            _deploy_thread: deploy_thread,
            slo,
            admin: Some(admin),
            started: Instant::now(),
            search,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.admin
            .as_ref()
            .map(|a| a.addr)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Runs until SIGTERM or SIGINT (SIGHUP reloads), or until `duration` passes.
    pub async fn wait_for_stop(&self, duration: Option<Duration>) -> std::io::Result<StopReason> {
        self.wait_for_stop_or_search(duration, false).await
    }

    /// As [`Daemon::wait_for_stop`]; with `search_done`, also stops once the capacity
    /// search has completed (or failed).
    pub async fn wait_for_stop_or_search(
        &self,
        duration: Option<Duration>,
        search_done: bool,
    ) -> std::io::Result<StopReason> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let progress = self.search.clone().filter(|_| search_done);
        let finished = async move {
            let Some(p) = progress else {
                return futures::future::pending().await;
            };
            let mut moved = p.subscribe();
            loop {
                let (state, runs) = *moved.borrow_and_update();
                match state {
                    SearchState::Complete => return StopReason::SearchComplete,
                    SearchState::Failed => return StopReason::SearchFailed,
                    // A scheduled search between runs: its first run is done.
                    SearchState::Scheduled if runs > 0 => return StopReason::SearchComplete,
                    _ => {}
                }
                if moved.changed().await.is_err() {
                    return futures::future::pending().await;
                }
            }
        };
        tokio::pin!(finished);
        let mut signals = signal_hook_tokio::Signals::new([SIGHUP, SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let deadline = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => futures::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let why = loop {
            tokio::select! {
                _ = &mut deadline => break StopReason::DurationElapsed,
                why = &mut finished => break why,
                sig = signals.next() => match sig {
                    Some(SIGHUP) => {
                        tracing::info!("SIGHUP: reloading config");
                        let engine = self.engine.clone();
                        // Errors are logged and exported by reload itself.
                        let _ = tokio::task::spawn_blocking(move || engine.reload()).await;
                    }
                    Some(SIGINT) => break StopReason::Sigint,
                    Some(_) => break StopReason::Sigterm,
                    None => break StopReason::SignalsClosed,
                }
            }
        };
        handle.close();
        Ok(why)
    }

    /// Stops the clocks, drains in-flight work for up to `grace`, stops the server.
    pub async fn shutdown(mut self, grace: Duration) -> Summary {
        let states = self.engine.states();
        let left = self.engine.shutdown(grace).await;
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                "grace period over; abandoning in-flight operations"
            );
        } else {
            tracing::info!("drained");
        }
        let summary = self.summary_of(&states, left);
        if let Some(s) = self.sampler.take() {
            s.stop();
        }
        drop(self.slo_thread.take());
        if let Some(a) = self.admin.take() {
            a.stop();
        }
        summary
    }

    fn summary_of(
        &self,
        states: &[Arc<crate::engine::ScenarioState>],
        abandoned: usize,
    ) -> Summary {
        let secs = self.started.elapsed().as_secs_f64();
        Summary {
            duration_seconds: secs,
            abandoned_in_flight: abandoned,
            scenarios: states
                .iter()
                .map(|s| {
                    let st = s.status();
                    let lag = s.metrics().lag.clone();
                    ScenarioSummary {
                        late: late_count(&lag, 0.01),
                        name: st.name,
                        started: st.started_total,
                        completed: st.requests_total,
                        dropped: st.dropped_total,
                        errors: st.errors.values().sum(),
                        mean_rate: st.started_total as f64 / secs.max(1e-9),
                        p50_seconds: st.latency_seconds.p50,
                        p95_seconds: st.latency_seconds.p95,
                        p99_seconds: st.latency_seconds.p99,
                        visibility: st.visibility,
                    }
                })
                .collect(),
        }
    }
}

/// What a run did, printed by `run --summary`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub duration_seconds: f64,
    pub abandoned_in_flight: usize,
    pub scenarios: Vec<ScenarioSummary>,
}

#[derive(Debug, Serialize)]
pub struct ScenarioSummary {
    pub name: String,
    pub started: u64,
    pub completed: u64,
    pub dropped: u64,
    pub errors: u64,
    /// Operations that started more than 10 ms after their intended time.
    pub late: u64,
    /// Operations started per second over the whole run.
    pub mean_rate: f64,
    /// Over the last quantile window.
    pub p50_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    /// Scenarios with visibility ops: their probes at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<crate::engine::VisibilityStatus>,
}

/// Observations of a histogram above `bound` (which must be one of its buckets).
pub fn late_count(h: &crate::metrics::Histogram, bound: f64) -> u64 {
    let snap = crate::metrics::HistSnap::of(h);
    let below = snap
        .buckets
        .iter()
        .find(|(ub, _)| (ub - bound).abs() < 1e-12)
        .map_or(0, |(_, c)| *c);
    snap.count.saturating_sub(below)
}
