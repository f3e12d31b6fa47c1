//! Runs a capacity search against the live engine: sets each level's rates (through the
//! scenarios' rate overrides), waits out the warm-up, measures the window, judges it,
//! stores it, and asks [`plan_next`](super::plan_next) for the next level. At the end
//! every searched scenario goes to its soak level (`then`) or back to its schedule.

use super::store::{new_run_id, Store, StoreError};
use super::{
    combine, fingerprint, judge, plan_next, BufferLevel, Generator, LevelResult, LevelSpec,
    PgLevel, PoolLevel, ProcessLevel, Quantiles, Run, RunRecord, RunStatus, ScenarioLevel, SloView,
    Statement, Verdict,
};
use crate::config::search::{SearchConfig, TargetProcess};
use crate::config::{Config, TargetKind};
use crate::engine::{Engine, ScenarioState};
use crate::events::EventKind;
use crate::metrics::window::quantile_secs;
use crate::metrics::HistSnap;
use crate::sysinfo::{self, ProcSample};
use crate::units::now_unix;
use parking_lot::Mutex;
use serde::Serialize;
use sqlx::{Connection, PgConnection, Row};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("searched scenario {0:?} is not running (removed by a reload?)")]
    NoScenario(String),
}

/// Where a search is, as `/api/v1/status` and the page show it (lowercase).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchState {
    /// Connecting to the results store (retried with backoff).
    #[default]
    #[serde(rename = "opening the results store")]
    OpeningStore,
    Starting,
    Warmup,
    Measuring,
    /// After a broken level, until its backlog drains.
    Cooldown,
    Complete,
    Failed,
    /// Between the runs of a scheduled search (`search.every`): the soak runs.
    Scheduled,
    /// A follower that cannot read its leader: the search is paused for it, and its
    /// searched scenarios run their schedules.
    #[serde(rename = "leader unreachable")]
    LeaderLost,
}

impl SearchState {
    /// Whether the search has stopped, one way or the other.
    pub fn finished(self) -> bool {
        matches!(self, SearchState::Complete | SearchState::Failed)
    }
}

/// The search's progress, for logs, `/api/v1/status` and the landing page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub name: String,
    pub run_id: Option<String>,
    pub state: SearchState,
    pub level: Option<String>,
    pub phase: Option<super::Phase>,
    pub level_remaining_seconds: Option<f64>,
    pub levels_done: usize,
    pub levels_max: usize,
    /// Levels resumed from an interrupted run.
    pub resumed: usize,
    pub last: Option<LastLevel>,
    pub error: Option<String>,
    /// The configured ladder of each searched scenario (levels per second, ascending;
    /// bisection adds levels between them).
    pub plan: Vec<PlanLine>,
    /// Runs finished since the daemon started.
    pub runs_completed: u64,
    /// A scheduled search's next start (Unix seconds), while it waits for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<f64>,
    /// The rates the search applies now by scenario, as totals over every shard: the
    /// level's, 0 while a broken level drains, `then` after the search. A searched
    /// scenario not listed runs its schedule. Followers apply the same.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rates: BTreeMap<String, f64>,
    /// On a follower (`verdicts.leader`, shards other than 0): the leader it follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// On a follower: why it cannot read the leader now (its searched scenarios then
    /// run their schedules until it can).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_error: Option<String>,
    #[serde(skip)]
    pub level_ends: Option<Instant>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    pub scenario: String,
    pub levels: Vec<f64>,
    /// The soak rate after the search (None: back to the schedule).
    pub then: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastLevel {
    pub level: String,
    pub verdict: Verdict,
    pub reason: String,
}

impl Progress {
    /// With the time left in the current level computed now.
    pub fn now(&self) -> Progress {
        let mut p = self.clone();
        p.level_remaining_seconds = p
            .level_ends
            .map(|e| e.saturating_duration_since(Instant::now()).as_secs_f64());
        p
    }
}

pub type SharedProgress = Arc<Mutex<Progress>>;

struct ScenarioSnap {
    started: u64,
    dropped: u64,
    completed: u64,
    errors: BTreeMap<String, u64>,
    lag: HistSnap,
    pool: Option<(HistSnap, u64)>,
    buffer: Option<BufSnap>,
    /// Seconds so far per HTTP phase, over the scenario's HTTP ops.
    phases: [f64; 5],
}

struct BufSnap {
    flush: HistSnap,
    e2e: HistSnap,
    flushed: u64,
    dropped: u64,
    errors: u64,
}

/// What the controller needs about one searched scenario.
struct Watched {
    name: String,
    target: String,
    state: Arc<ScenarioState>,
    pg_target: Option<String>,
    pool: Option<Arc<dyn crate::metrics::PoolStats>>,
    /// Label lookups done once, not at every sample.
    pool_metrics: Option<crate::metrics::PoolMetrics>,
    buffer: Option<crate::metrics::BufferMetrics>,
}

fn snap(w: &Watched) -> ScenarioSnap {
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
        phases: w
            .state
            .plan()
            .phases
            .iter()
            .flatten()
            .fold([0.0; 5], |mut acc, p| {
                for (a, s) in acc.iter_mut().zip(p.sums()) {
                    *a += s;
                }
                acc
            }),
    }
}

/// Peaks sampled through the window.
#[derive(Default)]
struct Peaks {
    in_flight: BTreeMap<String, usize>,
    pool_in_use: BTreeMap<String, u32>,
    buffer: BTreeMap<String, u64>,
    soakd_rss: u64,
    target_rss: u64,
}

fn sample_peaks(watched: &[Watched], target: Option<u32>, p: &mut Peaks) {
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

/// Cumulative database statistics at one moment.
#[derive(Default)]
struct PgSnap {
    xacts: i64,
    hit: i64,
    read: i64,
    dead: i64,
    statements: BTreeMap<String, (String, i64, f64, i64)>,
    notes: Vec<String>,
}

async fn pg_snap(conn: &mut PgConnection) -> Result<PgSnap, sqlx::Error> {
    let mut s = PgSnap::default();
    let r = sqlx::query(
        "SELECT (xact_commit + xact_rollback)::bigint AS x, blks_hit::bigint AS h, blks_read::bigint AS r FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await?;
    s.xacts = r.try_get("x")?;
    s.hit = r.try_get("h")?;
    s.read = r.try_get("r")?;
    s.dead = sqlx::query_scalar::<_, i64>(
        "SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables",
    )
    .fetch_one(&mut *conn)
    .await?;
    match sqlx::query(
        "SELECT queryid::text AS id, left(regexp_replace(query, '\\s+', ' ', 'g'), 200) AS q, calls::bigint AS calls, total_exec_time AS t, rows::bigint AS rows FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    {
        Ok(rows) => {
            for r in rows {
                s.statements.insert(
                    r.try_get("id")?,
                    (
                        r.try_get("q")?,
                        r.try_get("calls")?,
                        r.try_get("t")?,
                        r.try_get("rows")?,
                    ),
                );
            }
        }
        Err(e) => s
            .notes
            .push(format!("top statements unavailable (pg_stat_statements: {e})")),
    }
    Ok(s)
}

async fn pg_level(
    conn: &mut PgConnection,
    before: &PgSnap,
    secs: f64,
) -> Result<PgLevel, sqlx::Error> {
    // Backends publish their counters at most once a second; give them the chance.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = pg_snap(conn).await?;
    let dh = after.hit - before.hit;
    let dr = after.read - before.read;
    let mut top: Vec<Statement> = after
        .statements
        .iter()
        .filter_map(|(id, (q, calls, t, rows))| {
            let (c0, t0, r0) = before
                .statements
                .get(id)
                .map(|b| (b.1, b.2, b.3))
                .unwrap_or((0, 0.0, 0));
            let calls = calls - c0;
            (calls > 0).then(|| Statement {
                queryid: id.clone(),
                query: q.clone(),
                calls: calls as u64,
                mean_ms: (t - t0) / calls as f64,
                rows: (rows - r0).max(0) as u64,
            })
        })
        // Statements run a handful of times (the collector's own) are noise here.
        .filter(|s| s.calls as f64 >= secs.max(1.0))
        .collect();
    top.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms));
    top.truncate(5);
    let mut by_state = BTreeMap::new();
    for r in sqlx::query(
        "SELECT coalesce(state, 'background') AS s, count(*)::bigint AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        by_state.insert(r.try_get::<String, _>("s")?, r.try_get::<i64, _>("n")?);
    }
    let max_connections = sqlx::query_scalar::<_, String>(
        "SELECT setting FROM pg_settings WHERE name = 'max_connections'",
    )
    .fetch_optional(&mut *conn)
    .await?
    .and_then(|s| s.parse().ok());
    Ok(PgLevel {
        transactions_per_second: (after.xacts - before.xacts) as f64 / secs.max(1e-9),
        cache_hit_ratio: (dh + dr > 0).then(|| dh as f64 / (dh + dr) as f64),
        dead_tuples: after.dead,
        dead_tuples_delta: after.dead - before.dead,
        connections_by_state: by_state,
        max_connections,
        top_statements: top,
        notes: after.notes,
    })
}

async fn scrape_process(client: &reqwest::Client, url: &str) -> Option<ProcSample> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    sysinfo::parse_process_metrics(&text)
}

async fn target_sample(tp: &Option<TargetProcess>, client: &reqwest::Client) -> Option<ProcSample> {
    match tp {
        None => None,
        Some(TargetProcess::Pid(p)) => sysinfo::read_proc(Some(*p)),
        Some(TargetProcess::MetricsUrl(u)) => scrape_process(client, u).await,
    }
}

fn cpu_percent(a: Option<ProcSample>, b: Option<ProcSample>, secs: f64) -> Option<f64> {
    let (a, b) = (a?, b?);
    Some(100.0 * b.cpu.saturating_sub(a.cpu).as_secs_f64() / secs.max(1e-9))
}

/// The SLOs and target names of the searched scenarios, as stored with a run.
pub fn plan_of(
    cfg: &Config,
    search: &SearchConfig,
) -> (BTreeMap<String, SloView>, BTreeMap<String, String>) {
    let mut slos = BTreeMap::new();
    let mut targets = BTreeMap::new();
    for s in &search.scenarios {
        if let Some(sc) = cfg.scenarios.iter().find(|x| x.name == s.name) {
            slos.insert(s.name.clone(), SloView::from(&sc.slo));
            let ty = cfg
                .targets
                .iter()
                .find(|t| t.name == sc.target)
                .map(|t| t.kind.type_name())
                .unwrap_or("?");
            targets.insert(s.name.clone(), format!("{} ({ty})", sc.target));
        }
    }
    (slos, targets)
}

/// What a search works with while it runs: the engine, the plan, and the scenarios it
/// watches with the handles resolved once.
struct Searcher<'a> {
    engine: &'a Engine,
    search: &'a SearchConfig,
    progress: &'a SharedProgress,
    slos: &'a BTreeMap<String, SloView>,
    watched: Vec<Watched>,
    /// `search.postgres`'s URL: database statistics per level.
    pg_url: Option<String>,
    /// For a `target_process` given as a /metrics URL.
    http: reqwest::Client,
    target_pid: Option<u32>,
    run_id: String,
    /// With `verdicts.prometheus`: where the shards' sums come from.
    fleet: Option<Fleet>,
    /// This shard's part of a level's total rate: 1/n when the shards' sums are judged,
    /// else 1 (each process runs and judges the whole level itself).
    share: f64,
}

/// The Prometheus a leader judges levels from, and how long after a window it waits for
/// the scrapes that cover the window's end.
struct Fleet {
    prom: crate::promql::Prom,
    settle: Duration,
    /// The shards whose sums make a whole level (the n of `--shard i/n`).
    shards: u32,
}

/// Runs the search to the end (resuming an interrupted run of the same plan) and
/// returns the run id. Dropping the future leaves the run resumable.
pub async fn run(
    engine: Arc<Engine>,
    search: SearchConfig,
    store: Store,
    progress: SharedProgress,
) -> Result<String, SearchError> {
    let cfg = engine.config();
    let (slos, targets) = plan_of(&cfg, &search);
    let mut run = open_run(&store, &search, &slos, targets).await?;
    announce(&engine, &progress, &search, &run);
    let watched = watch(&engine, &cfg, &search)?;
    // The search drives these scenarios: their guards stand aside until it ends, however
    // it ends.
    let _owned = SearchOwns::new(watched.iter().map(|w| w.state.clone()).collect());
    let s = Searcher {
        engine: &engine,
        search: &search,
        progress: &progress,
        slos: &slos,
        watched,
        pg_url: search.postgres.as_ref().and_then(|n| {
            cfg.targets.iter().find_map(|t| match &t.kind {
                TargetKind::Postgres(p) if t.name == *n => Some(p.url.clone()),
                _ => None,
            })
        }),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default(),
        target_pid: match &search.target_process {
            Some(TargetProcess::Pid(p)) => Some(*p),
            _ => None,
        },
        run_id: run.record.id.clone(),
        fleet: cfg.verdicts.as_ref().map(|v| Fleet {
            prom: crate::promql::Prom::new(&v.prometheus, &v.selector),
            settle: v.scrape_interval + Duration::from_secs(1),
            shards: engine.shard_divisor().round().max(1.0) as u32,
        }),
        share: if cfg.verdicts.is_some() {
            1.0 / engine.shard_divisor()
        } else {
            1.0
        },
    };
    s.wait_for_shards().await;
    loop {
        let verdicts: Vec<Verdict> = run.levels.iter().map(|l| l.verdict).collect();
        let Some(spec) = plan_next(&search, &verdicts) else {
            break;
        };
        let seq = run.levels.len() as u32;
        s.warm_up(&spec, seq).await?;
        let level = s.measure(&spec, seq).await;
        let verdict = level.verdict;
        s.record(&store, &mut run, level).await?;
        if verdict != Verdict::Pass {
            s.cool_down(&spec).await;
        }
    }
    store.finish_run(&s.run_id, now_unix()).await?;
    s.finish(&run);
    Ok(s.run_id)
}

/// Marks scenarios as driven by the search (their guards suspended) while it lives.
struct SearchOwns(Vec<Arc<ScenarioState>>);

impl SearchOwns {
    fn new(states: Vec<Arc<ScenarioState>>) -> SearchOwns {
        for s in &states {
            s.guard.set_searched(true);
        }
        SearchOwns(states)
    }
}

impl Drop for SearchOwns {
    fn drop(&mut self) {
        for s in &self.0 {
            s.guard.set_searched(false);
        }
    }
}

/// The search, once or on its schedule (`search.every`), until the runtime stops. After
/// each run `after_run` is awaited (the capacity series are refreshed there). A run that
/// fails is logged and shown, and with a schedule the next slot still runs.
pub async fn run_scheduled<F, Fut>(
    engine: Arc<Engine>,
    search: SearchConfig,
    store: Store,
    progress: SharedProgress,
    after_run: F,
) -> Result<(), SearchError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(every) = search.every else {
        run(engine, search, store, progress).await?;
        after_run().await;
        return Ok(());
    };
    // An interrupted run resumes at once; otherwise the schedule continues from the
    // last stored run's start, so a restart does not start a search early.
    let resumable = {
        let (slos, _) = plan_of(&engine.config(), &search);
        store
            .find_resumable(&search.name, &fingerprint(&search, &slos))
            .await?
            .is_some()
    };
    let mut prev = if resumable {
        None
    } else {
        store.latest_started(&search.name).await?
    };
    let mut first = true;
    loop {
        let now = now_unix();
        let at = if first && resumable {
            now
        } else {
            every.next_after(prev, now)
        };
        first = false;
        if at > now {
            {
                let mut p = progress.lock();
                p.name = search.name.clone();
                p.state = SearchState::Scheduled;
                p.next_run_at = Some(at);
                p.level = None;
                p.phase = None;
                p.level_remaining_seconds = None;
            }
            tracing::info!(next_run_at = %super::store::format_utc(at), "capacity search: scheduled");
            tokio::time::sleep(Duration::from_secs_f64(at - now)).await;
        }
        progress.lock().next_run_at = None;
        prev = Some(now_unix());
        match run(
            engine.clone(),
            search.clone(),
            store.clone(),
            progress.clone(),
        )
        .await
        {
            Ok(_) => after_run().await,
            Err(e) => {
                tracing::error!("capacity search run failed: {e}; the next starts on schedule");
                engine.events.push(
                    EventKind::Search,
                    None,
                    format!("capacity search failed: {e}"),
                );
                let mut p = progress.lock();
                p.state = SearchState::Failed;
                p.error = Some(e.to_string());
            }
        }
    }
}

/// The interrupted run of the same plan, or a new one.
async fn open_run(
    store: &Store,
    search: &SearchConfig,
    slos: &BTreeMap<String, SloView>,
    targets: BTreeMap<String, String>,
) -> Result<Run, SearchError> {
    let fp = fingerprint(search, slos);
    if let Some(r) = store.find_resumable(&search.name, &fp).await? {
        tracing::info!(run = %r.record.id, levels = r.levels.len(), "capacity search: resuming an interrupted run");
        return Ok(r);
    }
    let started = now_unix();
    let record = RunRecord {
        id: new_run_id(&search.name, started),
        name: search.name.clone(),
        fingerprint: fp,
        started_at: started,
        finished_at: None,
        status: RunStatus::Running,
        soakd_version: env!("CARGO_PKG_VERSION").into(),
        machine: sysinfo::machine(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        search: search.clone(),
        slos: slos.clone(),
        targets,
    };
    store.create_run(&record).await?;
    tracing::info!(run = %record.id, levels_max = search.max_levels(), "capacity search: started");
    Ok(Run {
        record,
        levels: vec![],
    })
}

/// The run in the progress the API shows, and a search event.
fn announce(engine: &Engine, progress: &SharedProgress, search: &SearchConfig, run: &Run) {
    let run_id = &run.record.id;
    {
        let mut p = progress.lock();
        p.name = search.name.clone();
        p.run_id = Some(run_id.clone());
        p.state = SearchState::Starting;
        p.levels_done = run.levels.len();
        p.resumed = run.levels.len();
        p.levels_max = search.max_levels();
        p.plan = search
            .scenarios
            .iter()
            .map(|s| PlanLine {
                scenario: s.name.clone(),
                levels: s.levels.clone(),
                then: s.then,
            })
            .collect();
    }
    engine.events.push(
        EventKind::Search,
        None,
        format!(
            "capacity search {} {} (run {run_id})",
            search.name,
            if run.levels.is_empty() {
                "started"
            } else {
                "resumed"
            }
        ),
    );
}

/// The searched scenarios with the handles a level reads (pool, buffer) resolved once.
fn watch(
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

/// What a level's window measured before it becomes a [`LevelResult`].
struct Window {
    secs: f64,
    start_unix: f64,
    peaks: Peaks,
    soakd: (Option<ProcSample>, Option<ProcSample>),
    /// soakd's side of the window, for the judge.
    generator: Generator,
    target: (Option<ProcSample>, Option<ProcSample>),
}

/// soakd's side of a window of `secs`: its CPU share between two samples of its process,
/// and its runtime's delay p99.
fn generator(
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

/// A scenario's level as every shard ran it together: counts, errors, drops, in-flight
/// figures and latency from Prometheus's sums over the window (latency from the summed
/// histogram buckets, so at their resolution); the phases, pool and buffer stay the
/// leader's own.
fn summed(sl: &mut ScenarioLevel, t: &crate::promql::WindowTotals) {
    let secs = sl.window_s.max(1e-9);
    let count = |v: f64| v.max(0.0).round() as u64;
    sl.completed = count(t.completed);
    sl.achieved_rate = t.started / secs;
    sl.errors = t
        .errors
        .iter()
        .map(|(k, v)| (k.clone(), count(*v)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let failed = t.errors.values().fold(0.0, |a, b| a + b);
    sl.error_ratio = if t.completed > 0.0 {
        (failed / t.completed).clamp(0.0, 1.0)
    } else {
        0.0
    };
    sl.dropped = count(t.dropped);
    sl.in_flight_peak = count(t.in_flight_peak) as usize;
    sl.max_in_flight = count(t.max_in_flight) as usize;
    sl.latency = Quantiles {
        p50: t.latency[0],
        p95: t.latency[1],
        p99: t.latency[2],
        p999: t.latency[3],
    };
    sl.lag_p99 = t.lag_p99;
    sl.shards = Some(t.instances);
}

impl Searcher<'_> {
    /// Sets the level's rates and waits out its warm-up.
    async fn warm_up(&self, spec: &LevelSpec, seq: u32) -> Result<(), SearchError> {
        for (name, rate) in &spec.rates {
            let w = self
                .watched
                .iter()
                .find(|w| w.name == *name)
                .ok_or_else(|| SearchError::NoScenario(name.clone()))?;
            self.apply(w, Some(*rate));
            self.engine.metrics.capacity.set_level_rate(name, *rate);
        }
        let label = spec.label();
        {
            let mut p = self.progress.lock();
            p.state = SearchState::Warmup;
            p.level = Some(label.clone());
            p.phase = Some(spec.phase);
            p.level_ends = Some(Instant::now() + self.search.each);
        }
        let window = self.search.each.saturating_sub(self.search.warmup);
        tracing::info!(run = %self.run_id, level = seq + 1, max = self.search.max_levels(), phase = ?spec.phase, "capacity level: {label} (warm-up {:?}, window {window:?})", self.search.warmup);
        self.engine.events.push(
            EventKind::SearchLevel,
            None,
            format!("level {}: {label} started", seq + 1),
        );
        tokio::time::sleep(self.search.warmup).await;
        Ok(())
    }

    /// Sets a searched scenario's rate — the total over every shard; None: back to its
    /// schedule — on this process (its share of it), and shows it to the followers.
    fn apply(&self, w: &Watched, total: Option<f64>) {
        w.state.set_rate_override(total.map(|r| r * self.share));
        let mut p = self.progress.lock();
        match total {
            Some(r) => p.rates.insert(w.name.clone(), r),
            None => p.rates.remove(&w.name),
        };
    }

    /// The scenarios under load at this level.
    fn active(&self, spec: &LevelSpec) -> Vec<&Watched> {
        self.watched
            .iter()
            .filter(|w| spec.rates.iter().any(|(n, r)| *n == w.name && *r > 0.0))
            .collect()
    }

    /// Opens the window, samples peaks until it closes, and judges what it held.
    async fn measure(&self, spec: &LevelSpec, seq: u32) -> LevelResult {
        let mut pg = self.open_database().await;
        let active = self.active(spec);
        let before: Vec<ScenarioSnap> = active.iter().map(|w| snap(w)).collect();
        for w in &active {
            w.state.capture.start();
        }
        let soakd0 = sysinfo::read_proc(None);
        let delay0 = HistSnap::of(&self.engine.metrics.runtime.delay);
        let target0 = target_sample(&self.search.target_process, &self.http).await;
        let start_unix = now_unix();
        let t0 = Instant::now();
        self.progress.lock().state = SearchState::Measuring;
        let mut peaks = Peaks::default();
        let end = t0 + self.search.each.saturating_sub(self.search.warmup);
        while Instant::now() < end {
            sample_peaks(&self.watched, self.target_pid, &mut peaks);
            let left = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(200))).await;
        }
        sample_peaks(&self.watched, self.target_pid, &mut peaks);
        let secs = t0.elapsed().as_secs_f64();
        let end_unix = now_unix();
        let hists: Vec<_> = active.iter().map(|w| w.state.capture.stop()).collect();
        let after: Vec<ScenarioSnap> = active.iter().map(|w| snap(w)).collect();
        let delay = HistSnap::of(&self.engine.metrics.runtime.delay).quantile_since(&delay0, 0.99);
        let soakd = (soakd0, sysinfo::read_proc(None));
        let win = Window {
            secs,
            start_unix,
            soakd,
            generator: generator(soakd, secs, delay),
            target: (
                target0,
                target_sample(&self.search.target_process, &self.http).await,
            ),
            peaks,
        };
        let mut scen: Vec<ScenarioLevel> = active
            .iter()
            .enumerate()
            .map(|(i, w)| self.scenario_level(w, spec, &before[i], &after[i], &hists[i], &win))
            .collect();
        let postgres = match pg.as_mut() {
            Some((c, s0)) => match pg_level(c, s0, secs).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!("capacity level: database statistics failed: {e}");
                    None
                }
            },
            None => None,
        };
        if let Some((c, _)) = pg {
            let _ = c.close().await;
        }
        let unsummed = self.sum_shards(&mut scen, start_unix, end_unix).await;
        for sl in &mut scen {
            let why = unsummed.get(&sl.scenario).cloned();
            self.judge_level(sl, &win, why.as_ref());
        }
        self.level_result(spec, seq, &active, scen, postgres, &win)
    }

    /// A connection and the statistics at the window's start, for `search.postgres`.
    async fn open_database(&self) -> Option<(PgConnection, PgSnap)> {
        let url = self.pg_url.as_ref()?;
        match PgConnection::connect(url).await {
            Ok(mut c) => match pg_snap(&mut c).await {
                Ok(s) => Some((c, s)),
                Err(e) => {
                    tracing::warn!("capacity level: database statistics unavailable: {e}");
                    None
                }
            },
            Err(e) => {
                tracing::warn!("capacity level: cannot connect for database statistics: {e}");
                None
            }
        }
    }

    /// One scenario's measurements over the window (counter and histogram deltas,
    /// peaks), judged against its SLO.
    fn scenario_level(
        &self,
        w: &Watched,
        spec: &LevelSpec,
        b: &ScenarioSnap,
        a: &ScenarioSnap,
        h: &hdrhistogram::Histogram<u64>,
        win: &Window,
    ) -> ScenarioLevel {
        let (secs, peaks) = (win.secs, &win.peaks);
        let offered = spec.rate_of(&w.name);
        let completed = a.completed.saturating_sub(b.completed);
        let errors: BTreeMap<String, u64> = a
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), v.saturating_sub(*b.errors.get(k).unwrap_or(&0))))
            .filter(|(_, v)| *v > 0)
            .collect();
        let n_err: u64 = errors.values().sum();
        let pool = match (&w.pg_target, &w.pool, &a.pool, &b.pool) {
            (Some(t), Some(p), Some((ah, at)), Some((bh, bt))) => Some(PoolLevel {
                target: t.clone(),
                max: p.max().max(0) as u32,
                in_use_peak: peaks.pool_in_use.get(&w.name).copied().unwrap_or(0),
                acquire_p95: ah.quantile_since(bh, 0.95),
                acquire_timeouts: at.saturating_sub(*bt),
            }),
            _ => None,
        };
        let buffer = match (&a.buffer, &b.buffer) {
            (Some(ab), Some(bb)) => Some(BufferLevel {
                capacity: w
                    .buffer
                    .as_ref()
                    .map_or(0, |b| b.capacity.get().max(0) as u64),
                peak: peaks.buffer.get(&w.name).copied().unwrap_or(0),
                flush_p95: ab.flush.quantile_since(&bb.flush, 0.95),
                flushes: ab.flush.count.saturating_sub(bb.flush.count),
                flushed_events: ab.flushed.saturating_sub(bb.flushed),
                dropped_events: ab.dropped.saturating_sub(bb.dropped),
                flush_errors: ab.errors.saturating_sub(bb.errors),
                e2e_p95: ab.e2e.quantile_since(&bb.e2e, 0.95),
            }),
            _ => None,
        };
        ScenarioLevel {
            scenario: w.name.clone(),
            offered_rate: offered,
            achieved_rate: a.started.saturating_sub(b.started) as f64 / secs.max(1e-9),
            window_s: secs,
            completed,
            error_ratio: if completed > 0 {
                n_err as f64 / completed as f64
            } else {
                0.0
            },
            errors,
            dropped: a.dropped.saturating_sub(b.dropped),
            max_in_flight: w.state.plan().max_in_flight,
            in_flight_peak: peaks.in_flight.get(&w.name).copied().unwrap_or(0),
            latency: Quantiles {
                p50: quantile_secs(h, 0.5),
                p95: quantile_secs(h, 0.95),
                p99: quantile_secs(h, 0.99),
                p999: quantile_secs(h, 0.999),
            },
            lag_p99: a.lag.quantile_since(&b.lag, 0.99),
            pool,
            buffer,
            phases: crate::phases::NAMES
                .iter()
                .zip(a.phases.iter().zip(b.phases.iter()))
                .filter(|_| completed > 0)
                .filter_map(|(name, (after, before))| {
                    let spent = after - before;
                    (spent > 0.0).then(|| (name.to_string(), spent / completed as f64))
                })
                .collect(),
            shards: None,
            verdict: None,
            reason: String::new(),
        }
    }

    /// With `verdicts.prometheus`: replaces each scenario's own counts, errors, drops,
    /// in-flight figures and latency by the sums over every shard, once Prometheus has
    /// scraped past the window's end. Returns the scenarios it could not sum, with why.
    async fn sum_shards(
        &self,
        scen: &mut [ScenarioLevel],
        start: f64,
        end: f64,
    ) -> BTreeMap<String, String> {
        let mut failed = BTreeMap::new();
        let Some(fleet) = &self.fleet else {
            return failed;
        };
        tokio::time::sleep(fleet.settle).await;
        for sl in scen.iter_mut() {
            match fleet.prom.window(&sl.scenario, start, end).await {
                Ok(t) if t.instances < fleet.shards => {
                    let why = format!(
                        "Prometheus had the series of {} of the {} shards",
                        t.instances, fleet.shards
                    );
                    tracing::warn!(run = %self.run_id, scenario = %sl.scenario, "capacity level: {why}");
                    failed.insert(sl.scenario.clone(), why);
                }
                Ok(t) => summed(sl, &t),
                Err(e) => {
                    tracing::warn!(run = %self.run_id, scenario = %sl.scenario, "capacity level: {e}");
                    failed.insert(sl.scenario.clone(), e.to_string());
                }
            }
        }
        failed
    }

    /// With `verdicts.prometheus`: waits until Prometheus has every shard's series of the
    /// searched scenarios, then two more scrapes, so that the first window's sums are
    /// whole (a shard not scraped yet would make a level look like load missing).
    async fn wait_for_shards(&self) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        let mut logged = false;
        loop {
            let mut short = None;
            for w in &self.watched {
                match fleet.prom.instances(&w.name, now_unix()).await {
                    Ok(n) if n >= fleet.shards => {}
                    Ok(n) => {
                        short = Some(format!(
                            "it has the series of {n} of the {} shards",
                            fleet.shards
                        ));
                        break;
                    }
                    Err(e) => {
                        short = Some(e.to_string());
                        break;
                    }
                }
            }
            let Some(why) = short else { break };
            if !logged {
                tracing::warn!(run = %self.run_id, "capacity search: waiting for every shard in Prometheus: {why}");
                logged = true;
            }
            self.progress.lock().error =
                Some(format!("waiting for every shard in Prometheus: {why}"));
            tokio::time::sleep(fleet.settle).await;
        }
        self.progress.lock().error = None;
        tokio::time::sleep(fleet.settle * 2).await;
    }

    /// Judges a scenario's level against its SLO; a level whose shards could not be
    /// summed is invalid (this shard alone ran only its share of it).
    fn judge_level(&self, sl: &mut ScenarioLevel, win: &Window, unsummed: Option<&String>) {
        let (v, why) = match unsummed {
            Some(e) => (
                Verdict::Invalid,
                format!("the shards' sums could not be read, so the level cannot be judged: {e}"),
            ),
            None => {
                let slo = self.slos.get(&sl.scenario).cloned().unwrap_or_default();
                judge(&slo, sl, &win.generator, self.search)
            }
        };
        sl.verdict = Some(v);
        sl.reason = why;
    }

    /// The level as stored: its scenarios, soakd's and the target's process, the
    /// database, and the combined verdict.
    fn level_result(
        &self,
        spec: &LevelSpec,
        seq: u32,
        active: &[&Watched],
        scenarios: Vec<ScenarioLevel>,
        postgres: Option<PgLevel>,
        win: &Window,
    ) -> LevelResult {
        let search = self.search;
        let (verdict, reason) = combine(&scenarios);
        LevelResult {
            run_id: self.run_id.clone(),
            seq,
            spec: spec.clone(),
            window_start: win.start_unix,
            window_seconds: win.secs,
            scenarios,
            soakd: ProcessLevel {
                cpu_percent: cpu_percent(win.soakd.0, win.soakd.1, win.secs),
                rss_bytes: (win.peaks.soakd_rss > 0).then_some(win.peaks.soakd_rss),
                runtime_delay_p99: win.generator.runtime_delay_p99,
            },
            // Only for levels whose load all goes to the measured process.
            target: search
                .target_process
                .as_ref()
                .filter(|_| {
                    search.target_process_targets.is_empty()
                        || active
                            .iter()
                            .all(|w| search.target_process_targets.contains(&w.target))
                })
                .map(|_| ProcessLevel {
                    cpu_percent: cpu_percent(win.target.0, win.target.1, win.secs),
                    rss_bytes: match self.target_pid {
                        Some(_) => (win.peaks.target_rss > 0).then_some(win.peaks.target_rss),
                        None => win.target.1.map(|s| s.rss_bytes),
                    },
                    runtime_delay_p99: None,
                }),
            postgres,
            verdict,
            reason,
        }
    }

    /// Stores the level, logs it, and shows it in the events and the progress.
    async fn record(
        &self,
        store: &Store,
        run: &mut Run,
        level: LevelResult,
    ) -> Result<(), SearchError> {
        store.append_level(&level).await?;
        self.engine
            .metrics
            .capacity
            .count_level(level.verdict.as_str());
        let (seq, label, verdict, reason) = (
            level.seq,
            level.spec.label(),
            level.verdict,
            level.reason.clone(),
        );
        tracing::info!(run = %self.run_id, level = seq + 1, verdict = verdict.as_str(), "capacity level {label}: {reason}");
        self.engine.events.push(
            EventKind::SearchLevel,
            None,
            format!(
                "level {}: {label} — {}: {reason}",
                seq + 1,
                verdict.as_str()
            ),
        );
        run.levels.push(level);
        let mut p = self.progress.lock();
        p.levels_done = run.levels.len();
        p.last = Some(LastLevel {
            level: label,
            verdict,
            reason,
        });
        Ok(())
    }

    /// After a broken level: a broken level leaves a backlog (queued requests, a full
    /// pool) that would spill into the next level's warm-up, so stop offering load and
    /// let it drain. Every operation ends by its timeout, so wait at most that long (or
    /// one level's length, if longer).
    async fn cool_down(&self, spec: &LevelSpec) {
        let active = self.active(spec);
        for w in &active {
            self.apply(w, Some(0.0));
        }
        self.progress.lock().state = SearchState::Cooldown;
        let longest = active
            .iter()
            .flat_map(|w| w.state.plan().op_timeouts.clone())
            .max()
            .unwrap_or_default();
        let until = Instant::now() + self.search.each.max(longest + Duration::from_secs(1));
        while Instant::now() < until
            && active
                .iter()
                .any(|w| w.state.in_flight.load(Ordering::Relaxed) > 0)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every searched scenario to its soak level (`then`) or back to its schedule; the
    /// findings logged; the progress complete.
    fn finish(&self, run: &Run) {
        let (search, run_id) = (self.search, &self.run_id);
        for s in &search.scenarios {
            self.engine.metrics.capacity.set_level_rate(&s.name, 0.0);
            if let Some(w) = self.watched.iter().find(|w| w.name == s.name) {
                self.apply(w, s.then);
            }
        }
        if search.mode == crate::config::search::SearchMode::Matrix {
            for (row, best) in super::frontier(run) {
                tracing::info!(run = %run_id, row_rate = row, best_column_rate = ?best, "capacity search: complete (matrix row)");
            }
        } else {
            for f in &super::findings(run) {
                tracing::info!(run = %run_id, scenario = %f.scenario, max_sustainable = ?f.max_sustainable, first_failure = ?f.first_failure, first_invalid = ?f.first_invalid, "capacity search: complete");
            }
        }
        self.engine.events.push(
            EventKind::Search,
            None,
            format!("capacity search {} complete (run {run_id})", search.name),
        );
        let mut p = self.progress.lock();
        p.state = SearchState::Complete;
        p.runs_completed += 1;
        p.level = None;
        p.phase = None;
        p.level_ends = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::WindowTotals;

    #[test]
    fn a_level_summed_over_the_shards_takes_their_counts_and_latency() {
        // The leader's own view: half the level, its own latency.
        let mut sl = ScenarioLevel {
            scenario: "api".into(),
            offered_rate: 120.0,
            achieved_rate: 60.0,
            window_s: 5.0,
            completed: 300,
            max_in_flight: 1000,
            latency: Quantiles {
                p95: Some(0.051),
                ..Default::default()
            },
            phases: BTreeMap::from([("first_byte".to_string(), 0.05)]),
            ..Default::default()
        };
        let t = WindowTotals {
            instances: 2,
            completed: 598.4,
            started: 601.0,
            errors: BTreeMap::from([
                ("timeout".to_string(), 5.6),
                ("status_5xx".to_string(), 0.2),
            ]),
            dropped: 2.0,
            in_flight_peak: 13.0,
            max_in_flight: 2000.0,
            latency: [Some(0.04), Some(0.0975), Some(0.1), None],
            lag_p99: Some(0.001),
        };
        summed(&mut sl, &t);
        assert_eq!(sl.shards, Some(2));
        assert_eq!(sl.completed, 598);
        assert!(
            (sl.achieved_rate - 120.2).abs() < 1e-9,
            "{}",
            sl.achieved_rate
        );
        // A kind whose increase rounds to nothing is left out; the ratio keeps the
        // fraction.
        assert_eq!(sl.errors, BTreeMap::from([("timeout".to_string(), 6)]));
        assert!((sl.error_ratio - 5.8 / 598.4).abs() < 1e-12);
        assert_eq!(
            (sl.dropped, sl.in_flight_peak, sl.max_in_flight),
            (2, 13, 2000)
        );
        assert_eq!(sl.latency.p95, Some(0.0975));
        assert_eq!(sl.latency.p999, None);
        assert_eq!(sl.lag_p99, Some(0.001));
        // What only the leader measures stays its own.
        assert_eq!(sl.phases.get("first_byte"), Some(&0.05));
        assert_eq!(sl.offered_rate, 120.0);
    }
}
