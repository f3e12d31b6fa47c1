//! The [`Searcher`]: one run's levels against the live engine — set the rates, warm up,
//! measure the window, judge, store, cool down after a broken level, and finish.

use super::progress::{LastLevel, SearchState, SharedProgress};
use super::shards::Fleet;
use super::snapshot::SearchError;
use super::snapshot::{
    cpu_percent, generator, pg_level, sample_peaks, snap, target_sample, LevelBlocks, Peaks,
    ScenarioSnap, Watched, Window,
};
use crate::capacity::judge::{combine, judge};
use crate::capacity::record::{
    BufferLevel, LevelResult, LevelSpec, PgLevel, PoolLevel, ProcessLevel, Quantiles, Run,
    ScenarioLevel, SloView, Verdict,
};
use crate::capacity::store::Store;
use crate::config::search::SearchConfig;
use crate::engine::{Engine, ScenarioState};
use crate::events::EventKind;
use crate::metrics::window::quantile_secs;
use crate::metrics::HistSnap;
use crate::pg::stats::{self, WindowStats};
use crate::sysinfo;
use crate::units::now_unix;
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a search works with while it runs: the engine, the plan, and the scenarios it
/// watches with the handles resolved once.
pub(super) struct Searcher<'a> {
    pub(super) engine: &'a Engine,
    pub(super) search: &'a SearchConfig,
    pub(super) progress: &'a SharedProgress,
    pub(super) slos: &'a BTreeMap<String, SloView>,
    pub(super) watched: Vec<Watched>,
    /// `search.postgres`'s URL: database statistics per level.
    pub(super) pg_url: Option<String>,
    /// For a `target_process` given as a /metrics URL.
    pub(super) http: reqwest::Client,
    pub(super) target_pid: Option<u32>,
    /// `search.target_process` as it can be read (a process looked up by pattern).
    pub(super) target_process: Option<crate::config::search::TargetProcess>,
    pub(super) run_id: String,
    /// With `verdicts.prometheus`: where the shards' sums come from.
    pub(super) fleet: Option<Fleet>,
    /// This shard's part of a level's total rate: 1/n when the shards' sums are judged,
    /// else 1 (each process runs and judges the whole level itself).
    pub(super) share: f64,
}

/// Marks scenarios as driven by the search (their guards suspended) while it lives.
pub(super) struct SearchOwns(Vec<Arc<ScenarioState>>);

impl SearchOwns {
    pub(super) fn new(states: Vec<Arc<ScenarioState>>) -> SearchOwns {
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

impl Searcher<'_> {
    /// Sets the level's rates and waits out its warm-up.
    pub(super) async fn warm_up(&self, spec: &LevelSpec, seq: u32) -> Result<(), SearchError> {
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
    pub(super) fn apply(&self, w: &Watched, total: Option<f64>) {
        w.state.set_rate_override(total.map(|r| r * self.share));
        let mut p = self.progress.lock();
        match total {
            Some(r) => p.rates.insert(w.name.clone(), r),
            None => p.rates.remove(&w.name),
        };
    }

    /// The scenarios under load at this level.
    pub(super) fn active(&self, spec: &LevelSpec) -> Vec<&Watched> {
        self.watched
            .iter()
            .filter(|w| spec.rates.iter().any(|(n, r)| *n == w.name && *r > 0.0))
            .collect()
    }

    /// Opens the window, samples peaks until it closes, and judges what it held.
    pub(super) async fn measure(&self, spec: &LevelSpec, seq: u32) -> LevelResult {
        let mut pg = self.open_database().await;
        let active = self.active(spec);
        let before: Vec<ScenarioSnap> = active.iter().map(|w| snap(w)).collect();
        for w in &active {
            w.state.capture.start();
        }
        let soakd0 = sysinfo::read_proc(None);
        let delay0 = HistSnap::of(&self.engine.metrics.runtime.delay);
        let target0 = target_sample(&self.target_process, &self.http).await;
        let start_unix = now_unix();
        let t0 = Instant::now();
        self.progress.lock().state = SearchState::Measuring;
        let mut peaks = Peaks::default();
        let window = self.search.each.saturating_sub(self.search.warmup);
        let end = t0 + window;
        let mut cuts = LevelBlocks::new(&active, start_unix, window.as_secs_f64());
        while Instant::now() < end {
            sample_peaks(&self.watched, self.target_pid, &mut peaks);
            cuts.tick(&active, now_unix());
            let left = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(200))).await;
        }
        sample_peaks(&self.watched, self.target_pid, &mut peaks);
        let secs = t0.elapsed().as_secs_f64();
        let end_unix = now_unix();
        let (hists, mut blocks) = cuts.finish(&active, end_unix);
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
                target_sample(&self.target_process, &self.http).await,
            ),
            peaks,
        };
        let mut scen: Vec<ScenarioLevel> = active
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut sl = self.scenario_level(w, spec, &before[i], &after[i], &hists[i], &win);
                sl.blocks = std::mem::take(&mut blocks[i]);
                sl
            })
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
    pub(super) async fn open_database(&self) -> Option<(PgConnection, WindowStats)> {
        let url = self.pg_url.as_ref()?;
        match PgConnection::connect(url).await {
            Ok(mut c) => match stats::window_stats(&mut c).await {
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
    pub(super) fn scenario_level(
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
            blocks: Vec::new(),
        }
    }
    /// With `verdicts.prometheus`: each scenario's level as the sums over every shard
    /// (see [`Fleet::sum_shards`]); the scenarios that could not be summed, with why.
    async fn sum_shards(
        &self,
        scen: &mut [ScenarioLevel],
        start: f64,
        end: f64,
    ) -> BTreeMap<String, String> {
        match &self.fleet {
            Some(f) => f.sum_shards(scen, start, end, &self.run_id).await,
            None => BTreeMap::new(),
        }
    }

    /// With `verdicts.prometheus`: until Prometheus has every shard's series.
    pub(super) async fn wait_for_shards(&self) {
        if let Some(f) = &self.fleet {
            let names: Vec<&str> = self.watched.iter().map(|w| w.name.as_str()).collect();
            f.wait_for_shards(&names, self.progress, &self.run_id).await;
        }
    }

    /// Judges a scenario's level against its SLO; a level whose shards could not be
    /// summed is invalid (this shard alone ran only its share of it).
    pub(super) fn judge_level(
        &self,
        sl: &mut ScenarioLevel,
        win: &Window,
        unsummed: Option<&String>,
    ) {
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
    pub(super) fn level_result(
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
    pub(super) async fn record(
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
    pub(super) async fn cool_down(&self, spec: &LevelSpec) {
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
    pub(super) fn finish(&self, run: &Run) {
        let (search, run_id) = (self.search, &self.run_id);
        for s in &search.scenarios {
            self.engine.metrics.capacity.set_level_rate(&s.name, 0.0);
            if let Some(w) = self.watched.iter().find(|w| w.name == s.name) {
                self.apply(w, s.then);
            }
        }
        if search.mode == crate::config::search::SearchMode::Matrix {
            for (row, best) in crate::capacity::findings::frontier(run) {
                tracing::info!(run = %run_id, row_rate = row, best_column_rate = ?best, "capacity search: complete (matrix row)");
            }
        } else {
            for f in &crate::capacity::findings::findings(run) {
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
