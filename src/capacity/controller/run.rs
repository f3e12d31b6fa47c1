//! The search from start to end: open (or resume) a run, announce it, drive its levels
//! through a [`Searcher`], and finish; `run_scheduled` repeats it on `search.every`.

use super::progress::{PlanLine, SearchState, SharedProgress};
use super::searcher::{SearchOwns, Searcher};
use super::shards::Fleet;
use super::snapshot::{resolve_process, watch, SearchError};
use crate::capacity::plan::{fingerprint, plan_next};
use crate::capacity::record::{Run, RunRecord, RunStatus, SloView, Verdict};
use crate::capacity::store::{new_run_id, Store};
use crate::config::search::{SearchConfig, TargetProcess};
use crate::config::{Config, TargetKind};
use crate::engine::Engine;
use crate::events::EventKind;
use crate::sysinfo;
use crate::units::now_unix;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    let target_process = resolve_process(&search.target_process, &cfg);
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
        target_pid: match &target_process {
            Some(TargetProcess::Pid(p)) => Some(*p),
            _ => None,
        },
        target_process,
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
            tracing::info!(next_run_at = %crate::capacity::store::format_utc(at), "capacity search: scheduled");
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
