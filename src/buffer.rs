//! The buffered writer: the seed event handler's write path, reproduced.
//!
//! Each accepted event (user, stat code, latest value) becomes goal-progress entries,
//! one per goal that the stat code advances, kept in a bounded map keyed by
//! (user, goal) so repeats within a flush collapse. A flusher writes the map every
//! `flush_interval` — or as soon as `max_batch` entries wait — with one batched UPSERT
//! (`UNNEST` arrays, `ON CONFLICT (user_id, goal_id) DO UPDATE`). A failed flush puts
//! its entries back (newer values win) and retries with backoff. A full buffer refuses
//! new events with a counter; nothing here ever blocks the arrival clock.

use crate::config::BufferConfig;
use crate::metrics::BufferMetrics;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const UPSERT: &str = "\
INSERT INTO user_goal_progress
    (user_id, goal_id, challenge_id, namespace, progress, status, completed_at, updated_at)
SELECT t.u, t.g, t.c, t.n, t.p,
       CASE WHEN t.d THEN 'completed' ELSE 'in_progress' END,
       CASE WHEN t.d THEN now() END,
       now()
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::bool[])
     AS t(u, g, c, n, p, d)
ON CONFLICT (user_id, goal_id) DO UPDATE SET
    progress = EXCLUDED.progress,
    status = EXCLUDED.status,
    completed_at = COALESCE(user_goal_progress.completed_at, EXCLUDED.completed_at),
    updated_at = EXCLUDED.updated_at
WHERE user_goal_progress.claimed_at IS NULL";

type Key = (Arc<str>, Arc<str>);

#[derive(Debug, Clone)]
struct Entry {
    challenge_id: Arc<str>,
    namespace: Arc<str>,
    progress: i32,
    completed: bool,
    /// When the oldest event folded into this entry was accepted.
    accepted: Instant,
}

/// The buffer refused an event: it holds `size_limit` entries already.
#[derive(Debug, thiserror::Error)]
#[error("buffer full ({0} entries)")]
pub struct Full(pub usize);

pub struct BufferedWriter {
    pub scenario: String,
    pub cfg: BufferConfig,
    pool: sqlx::PgPool,
    map: Mutex<HashMap<Key, Entry>>,
    /// Entries taken by a flush that has not committed yet (they still count).
    in_flush: AtomicUsize,
    wake: Notify,
    stopping: AtomicBool,
    metrics: BufferMetrics,
    namespace: Arc<str>,
}

impl BufferedWriter {
    /// Creates the writer and starts its flusher on the current runtime.
    pub fn start(
        scenario: &str,
        cfg: BufferConfig,
        pool: sqlx::PgPool,
        metrics: BufferMetrics,
    ) -> Arc<Self> {
        let w = Self::create(scenario, cfg, pool, metrics);
        w.run();
        w
    }

    /// Creates the writer without starting its flusher: a reload builds everything first
    /// and starts it only once nothing can fail.
    pub fn create(
        scenario: &str,
        cfg: BufferConfig,
        pool: sqlx::PgPool,
        metrics: BufferMetrics,
    ) -> Arc<Self> {
        metrics.capacity.set(cfg.size_limit as i64);
        Arc::new(BufferedWriter {
            scenario: scenario.to_string(),
            namespace: Arc::from(cfg.namespace.as_str()),
            cfg,
            pool,
            map: Mutex::new(HashMap::new()),
            in_flush: AtomicUsize::new(0),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            metrics,
        })
    }

    /// Starts the flusher of a writer made by [`BufferedWriter::create`].
    pub fn run(self: &Arc<Self>) {
        tokio::spawn(flusher(self.clone()));
    }

    /// Entries waiting (buffered plus being flushed).
    pub fn len(&self) -> usize {
        self.map.lock().len() + self.in_flush.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Accepts one event: returns how many entries it produced (0 for a stat code no
    /// goal counts), or [`Full`].
    pub fn accept(
        &self,
        user: &str,
        stat_code: &str,
        value: i64,
        namespace: Option<&str>,
    ) -> Result<usize, Full> {
        let goals = self.cfg.challenges.goals_for(stat_code);
        if goals.is_empty() {
            return Ok(0);
        }
        let user: Arc<str> = Arc::from(user);
        let ns: Arc<str> = match namespace {
            Some(n) if *n != *self.namespace => Arc::from(n),
            _ => self.namespace.clone(),
        };
        let now = Instant::now();
        let mut map = self.map.lock();
        let fresh = goals
            .iter()
            .filter(|g| !map.contains_key(&(user.clone(), g.goal_id.clone())))
            .count();
        let held = map.len() + self.in_flush.load(Ordering::Acquire);
        if held + fresh > self.cfg.size_limit {
            drop(map);
            self.metrics.dropped.inc();
            return Err(Full(held));
        }
        for g in goals {
            let progress = value.clamp(0, g.target as i64).min(i32::MAX as i64) as i32;
            let completed = value >= g.target as i64;
            map.entry((user.clone(), g.goal_id.clone()))
                .and_modify(|e| {
                    e.progress = progress;
                    e.completed = completed;
                })
                .or_insert_with(|| Entry {
                    challenge_id: g.challenge_id.clone(),
                    namespace: ns.clone(),
                    progress,
                    completed,
                    accepted: now,
                });
        }
        let len = map.len();
        drop(map);
        self.metrics
            .events
            .set((len + self.in_flush.load(Ordering::Acquire)) as i64);
        if len >= self.cfg.max_batch {
            self.wake.notify_one();
        }
        Ok(goals.len())
    }

    /// One flush of up to `max_batch` entries. Ok(n): n committed.
    async fn flush_once(&self) -> Result<usize, sqlx::Error> {
        let batch: Vec<(Key, Entry)> = {
            let mut map = self.map.lock();
            if map.is_empty() {
                return Ok(0);
            }
            let mut batch: Vec<(Key, Entry)> = if map.len() <= self.cfg.max_batch {
                std::mem::take(&mut *map).into_iter().collect()
            } else {
                let keys: Vec<Key> = map.keys().take(self.cfg.max_batch).cloned().collect();
                keys.into_iter()
                    .filter_map(|k| map.remove(&k).map(|e| (k, e)))
                    .collect()
            };
            self.in_flush.fetch_add(batch.len(), Ordering::AcqRel);
            // A fixed row order keeps concurrent writers from deadlocking each other.
            batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            batch
        };
        let n = batch.len();
        let t0 = Instant::now();
        let result = {
            let users: Vec<&str> = batch.iter().map(|(k, _)| &*k.0).collect();
            let goals: Vec<&str> = batch.iter().map(|(k, _)| &*k.1).collect();
            let chals: Vec<&str> = batch.iter().map(|(_, e)| &*e.challenge_id).collect();
            let nss: Vec<&str> = batch.iter().map(|(_, e)| &*e.namespace).collect();
            let prog: Vec<i32> = batch.iter().map(|(_, e)| e.progress).collect();
            let done: Vec<bool> = batch.iter().map(|(_, e)| e.completed).collect();
            sqlx::query(UPSERT)
                .bind(users)
                .bind(goals)
                .bind(chals)
                .bind(nss)
                .bind(prog)
                .bind(done)
                .execute(&self.pool)
                .await
        };
        let committed = Instant::now();
        self.metrics
            .flush
            .observe(committed.duration_since(t0).as_secs_f64());
        match result {
            Ok(_) => {
                self.in_flush.fetch_sub(n, Ordering::AcqRel);
                self.metrics.flushed.inc_by(n as u64);
                for (_, e) in &batch {
                    self.metrics
                        .e2e
                        .observe(committed.duration_since(e.accepted).as_secs_f64());
                }
                self.metrics.events.set(self.len() as i64);
                Ok(n)
            }
            Err(err) => {
                // Put the batch back; an entry accepted meanwhile for the same row is
                // newer, so it keeps its values and takes the older acceptance time.
                let mut map = self.map.lock();
                for (k, e) in batch {
                    map.entry(k)
                        .and_modify(|newer| newer.accepted = newer.accepted.min(e.accepted))
                        .or_insert(e);
                }
                self.in_flush.fetch_sub(n, Ordering::AcqRel);
                drop(map);
                self.metrics.flush_errors.inc();
                Err(err)
            }
        }
    }

    /// Flushes until empty or `deadline`; returns the entries left. Used at shutdown and
    /// when a reload retires the writer.
    pub async fn drain(&self, deadline: Instant) -> usize {
        self.stopping.store(true, Ordering::Release);
        self.wake.notify_one();
        let mut backoff = Duration::from_millis(50);
        while !self.is_empty() && Instant::now() < deadline {
            if self.map.lock().is_empty() {
                // The flusher holds the last batch; wait for it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            match self.flush_once().await {
                Ok(_) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::warn!(scenario = %self.scenario, "final flush failed, retrying: {e}");
                    tokio::time::sleep(
                        backoff.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        self.len()
    }
}

async fn flusher(w: Arc<BufferedWriter>) {
    let mut backoff: Option<Duration> = None;
    loop {
        let wait = backoff.unwrap_or(w.cfg.flush_interval);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = w.wake.notified(), if backoff.is_none() => {}
        }
        if w.stopping.load(Ordering::Acquire) {
            return;
        }
        loop {
            match w.flush_once().await {
                Ok(_) => {
                    backoff = None;
                    if w.map.lock().len() < w.cfg.max_batch {
                        break;
                    }
                }
                Err(e) => {
                    let next = backoff.map(|b| b * 2).unwrap_or(Duration::from_millis(100));
                    let next = next.min(Duration::from_secs(30));
                    tracing::warn!(scenario = %w.scenario, retry_in = ?next, "flush failed, entries kept: {e}");
                    backoff = Some(next);
                    break;
                }
            }
            if w.stopping.load(Ordering::Acquire) {
                return;
            }
        }
    }
}
