//! What a capacity level reads at the start and end of its window: each watched
//! scenario's counters and histogram snapshots, peaks sampled through the window, soakd's
//! and the target's process, and the database's statistics (read by `pg::stats`).

use crate::capacity::judge::Generator;
use crate::capacity::record::{PgLevel, Statement};
use crate::capacity::store::StoreError;
use crate::config::search::{SearchConfig, TargetProcess};
use crate::config::{Config, TargetKind};
use crate::engine::{Engine, ScenarioState};
use crate::metrics::HistSnap;
use crate::pg::stats::{self, WindowStats};
use crate::sysinfo::{self, ProcSample};
use sqlx::PgConnection;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("searched scenario {0:?} is not running (removed by a reload?)")]
    NoScenario(String),
}

pub(super) struct ScenarioSnap {
    pub(super) started: u64,
    pub(super) dropped: u64,
    pub(super) completed: u64,
    pub(super) errors: BTreeMap<String, u64>,
    pub(super) lag: HistSnap,
    pub(super) pool: Option<(HistSnap, u64)>,
    pub(super) buffer: Option<BufSnap>,
    /// Seconds so far per HTTP phase, over the scenario's HTTP ops.
    pub(super) phases: [f64; 5],
}

pub(super) struct BufSnap {
    pub(super) flush: HistSnap,
    pub(super) e2e: HistSnap,
    pub(super) flushed: u64,
    pub(super) dropped: u64,
    pub(super) errors: u64,
}

/// What the controller needs about one searched scenario.
pub(super) struct Watched {
    pub(super) name: String,
    pub(super) target: String,
    pub(super) state: Arc<ScenarioState>,
    pub(super) pg_target: Option<String>,
    pub(super) pool: Option<Arc<dyn crate::metrics::PoolStats>>,
    /// Label lookups done once, not at every sample.
    pub(super) pool_metrics: Option<crate::metrics::PoolMetrics>,
    pub(super) buffer: Option<crate::metrics::BufferMetrics>,
}

pub(super) fn snap(w: &Watched) -> ScenarioSnap {
    let m = w.state.metrics();
    ScenarioSnap {
        started: w.state.started.load(Ordering::Relaxed),
        dropped: w.state.dropped.load(Ordering::Relaxed),
        completed: m.ops.iter().map(|o| o.requests.get()).sum(),
        errors: m.errors_by_kind().into_iter().collect(),
        lag: HistSnap::of(&m.lag),
        pool: w
            .pool_metrics
            .as_ref()
            .map(|p| (HistSnap::of(&p.acquire), p.timeouts.get())),
        buffer: w.buffer.as_ref().map(|b| BufSnap {
            flush: HistSnap::of(&b.flush),
            e2e: HistSnap::of(&b.e2e),
            flushed: b.flushed.get(),
            dropped: b.dropped.get(),
            errors: b.flush_errors.get(),
        }),
        phases: w.state.phase_sums(),
    }
}

/// Peaks sampled through the window.
#[derive(Default)]
pub(super) struct Peaks {
    pub(super) in_flight: BTreeMap<String, usize>,
    pub(super) pool_in_use: BTreeMap<String, u32>,
    pub(super) buffer: BTreeMap<String, u64>,
    pub(super) soakd_rss: u64,
    pub(super) target_rss: u64,
}

pub(super) fn sample_peaks(watched: &[Watched], target: Option<u32>, p: &mut Peaks) {
    for w in watched {
        let n = w.state.in_flight.load(Ordering::Relaxed);
        let e = p.in_flight.entry(w.name.clone()).or_default();
        *e = (*e).max(n);
        if let Some(pool) = &w.pool {
            let in_use = pool.in_use().max(0) as u32;
            let e = p.pool_in_use.entry(w.name.clone()).or_default();
            *e = (*e).max(in_use);
        }
        if let Some(b) = &w.buffer {
            let n = b.events.get().max(0) as u64;
            let e = p.buffer.entry(w.name.clone()).or_default();
            *e = (*e).max(n);
        }
    }
    if let Some(s) = sysinfo::read_proc(None) {
        p.soakd_rss = p.soakd_rss.max(s.rss_bytes);
    }
    if let Some(s) = target.and_then(|pid| sysinfo::read_proc(Some(pid))) {
        p.target_rss = p.target_rss.max(s.rss_bytes);
    }
}

/// The database over a window: the differences between `before` and a fresh reading,
/// connections by state and `max_connections` (every query in `pg::stats`).
pub(super) async fn pg_level(
    conn: &mut PgConnection,
    before: &WindowStats,
    secs: f64,
) -> Result<PgLevel, sqlx::Error> {
    // Backends publish their counters at most once a second; give them the chance.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = stats::window_stats(conn).await?;
    let dh = after.blocks_hit - before.blocks_hit;
    let dr = after.blocks_read - before.blocks_read;
    let mut top: Vec<Statement> = after
        .statements
        .iter()
        .filter_map(|(id, a)| {
            let b = before.statements.get(id).cloned().unwrap_or_default();
            let calls = a.calls - b.calls;
            (calls > 0).then(|| Statement {
                queryid: id.clone(),
                query: a.query.clone(),
                calls: calls as u64,
                mean_ms: (a.total_ms - b.total_ms) / calls as f64,
                rows: (a.rows - b.rows).max(0) as u64,
            })
        })
        // Statements run a handful of times (the collector's own) are noise here.
        .filter(|s| s.calls as f64 >= secs.max(1.0))
        .collect();
    top.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
    top.truncate(5);
    Ok(PgLevel {
        transactions_per_second: (after.xacts - before.xacts) as f64 / secs.max(1e-9),
        cache_hit_ratio: (dh + dr > 0).then(|| dh as f64 / (dh + dr) as f64),
        dead_tuples: after.dead_tuples,
        dead_tuples_delta: after.dead_tuples - before.dead_tuples,
        connections_by_state: stats::connections_by_state(conn).await?,
        max_connections: stats::max_connections(conn).await?,
        top_statements: top,
        notes: after.notes,
    })
}

pub(super) async fn scrape_process(client: &reqwest::Client, url: &str) -> Option<ProcSample> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    sysinfo::parse_process_metrics(&text)
}

pub(super) async fn target_sample(
    tp: &Option<TargetProcess>,
    client: &reqwest::Client,
) -> Option<ProcSample> {
    match tp {
        None => None,
        Some(TargetProcess::Pid(p)) => sysinfo::read_proc(Some(*p)),
        Some(TargetProcess::MetricsUrl(u)) => scrape_process(client, u).await,
        // Resolved to a pid when the search starts ([`resolve_process`]).
        Some(TargetProcess::Observed(_)) => None,
    }
}

/// The search's target process as it can be read now: a process the target's
/// `observe` names by a pid file or a pattern is looked up (once: a level's CPU is of
/// one process); one that cannot be found is not measured, and says why in the log.
pub(super) fn resolve_process(tp: &Option<TargetProcess>, cfg: &Config) -> Option<TargetProcess> {
    match tp {
        Some(TargetProcess::Observed(target)) => {
            let r = cfg
                .observe
                .iter()
                .find(|o| &o.target == target)
                .and_then(|o| o.process.as_ref())?;
            match crate::observe::process::resolve(r) {
                Ok(pid) => u32::try_from(pid).ok().map(TargetProcess::Pid),
                Err(e) => {
                    tracing::warn!(target = %target, "capacity search: the target's process is not measured: {e}");
                    None
                }
            }
        }
        other => other.clone(),
    }
}

pub(super) use crate::sysinfo::cpu_percent;

/// The searched scenarios with the handles a level reads (pool, buffer) resolved once.
pub(super) fn watch(
    engine: &Engine,
    cfg: &Config,
    search: &SearchConfig,
) -> Result<Vec<Watched>, SearchError> {
    search
        .scenarios
        .iter()
        .map(|s| {
            let state = engine
                .scenario(&s.name)
                .ok_or_else(|| SearchError::NoScenario(s.name.clone()))?;
            let sc = state.plan().scenario.clone();
            let pg_target = cfg
                .targets
                .iter()
                .find(|t| t.name == sc.target && matches!(t.kind, TargetKind::Postgres(_)))
                .map(|t| t.name.clone());
            Ok(Watched {
                name: s.name.clone(),
                target: sc.target.clone(),
                pool: pg_target.as_deref().and_then(|t| engine.pg_stats(t)),
                pool_metrics: pg_target
                    .as_deref()
                    .map(|t| engine.metrics.pools.handles(t)),
                pg_target,
                buffer: sc
                    .buffer
                    .is_some()
                    .then(|| engine.metrics.buffers.writer(&s.name)),
                state,
            })
        })
        .collect()
}

/// Blocks a level's window is cut into (at least [`MIN_BLOCK_SECS`] each), so that a
/// comparison of two runs can test a level's latency and errors as the deploy judge
/// does, with the block as the unit.
pub const LEVEL_BLOCKS: usize = 10;
/// The shortest block of a level.
pub const MIN_BLOCK_SECS: f64 = 0.5;

/// Each active scenario's window cut into blocks as it runs: latency from its capture
/// (taken at each cut, recording on), completions and errors by kind from its counters.
pub(super) struct LevelBlocks {
    every: f64,
    since: f64,
    counts: Vec<(u64, BTreeMap<String, u64>)>,
    merged: Vec<hdrhistogram::Histogram<u64>>,
    pub(super) blocks: Vec<Vec<crate::shift::Block>>,
}

fn counts(w: &Watched) -> (u64, BTreeMap<String, u64>) {
    let m = w.state.metrics();
    (
        m.ops.iter().map(|o| o.requests.get()).sum(),
        m.errors_by_kind().into_iter().collect(),
    )
}

impl LevelBlocks {
    /// Starts at `now` for a window of `secs`.
    pub(super) fn new(active: &[&Watched], now: f64, secs: f64) -> LevelBlocks {
        LevelBlocks {
            every: (secs / LEVEL_BLOCKS as f64).max(MIN_BLOCK_SECS),
            since: now,
            counts: active.iter().map(|w| counts(w)).collect(),
            merged: active
                .iter()
                .map(|_| crate::metrics::window::new_hist())
                .collect(),
            blocks: active.iter().map(|_| Vec::new()).collect(),
        }
    }

    /// Cuts a block when one is due at `now`.
    pub(super) fn tick(&mut self, active: &[&Watched], now: f64) {
        if now - self.since >= self.every
            && self.blocks.first().map_or(0, Vec::len) < LEVEL_BLOCKS - 1
        {
            let hists: Vec<_> = active.iter().map(|w| w.state.capture.take()).collect();
            self.cut(active, hists, now);
        }
    }

    fn cut(&mut self, active: &[&Watched], hists: Vec<hdrhistogram::Histogram<u64>>, now: f64) {
        for (i, (w, h)) in active.iter().zip(hists).enumerate() {
            let (done, errors) = counts(w);
            let (done0, errors0) = &self.counts[i];
            let mut b = crate::shift::Block {
                t: self.since,
                secs: (now - self.since).max(1e-3),
                hist: crate::shift::Block::hist_of(&h),
                requests: done.saturating_sub(*done0),
                errors: BTreeMap::new(),
            };
            for (k, n) in &errors {
                let d = n.saturating_sub(errors0.get(k).copied().unwrap_or(0));
                if d > 0 {
                    b.errors.insert(k.clone(), d);
                }
            }
            self.counts[i] = (done, errors);
            let _ = self.merged[i].add(&h);
            self.blocks[i].push(b);
        }
        self.since = now;
    }

    /// The last block from what each capture holds as it stops, and each scenario's
    /// whole window (the blocks merged).
    pub(super) fn finish(
        mut self,
        active: &[&Watched],
        now: f64,
    ) -> (
        Vec<hdrhistogram::Histogram<u64>>,
        Vec<Vec<crate::shift::Block>>,
    ) {
        let hists: Vec<_> = active.iter().map(|w| w.state.capture.stop()).collect();
        self.cut(active, hists, now);
        (self.merged, self.blocks)
    }
}

/// What a level's window measured before it becomes a [`LevelResult`].
pub(super) struct Window {
    pub(super) secs: f64,
    pub(super) start_unix: f64,
    pub(super) peaks: Peaks,
    pub(super) soakd: (Option<ProcSample>, Option<ProcSample>),
    /// soakd's side of the window, for the judge.
    pub(super) generator: Generator,
    pub(super) target: (Option<ProcSample>, Option<ProcSample>),
}

/// soakd's side of a window of `secs`: its CPU share between two samples of its process,
/// and its runtime's delay p99.
pub(super) fn generator(
    soakd: (Option<ProcSample>, Option<ProcSample>),
    secs: f64,
    runtime_delay_p99: Option<f64>,
) -> Generator {
    // The load runs on the runtime's workers, at most one per CPU.
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(tokio::runtime::Handle::current().metrics().num_workers())
        .max(1);
    Generator {
        cpu_share: cpu_percent(soakd.0, soakd.1, secs).map(|p| p / 100.0 / cpus as f64),
        cpus,
        runtime_delay_p99,
    }
}
