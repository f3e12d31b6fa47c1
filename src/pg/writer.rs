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
use crate::pg::conn::{AcquireError, ConnCache};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
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

impl crate::metrics::MemorySize for BufferedWriter {
    fn memory_bytes(&self) -> u64 {
        self.table_bytes()
    }
}

/// The buffer refused an event: it holds `size_limit` entries already.
#[derive(Debug, thiserror::Error)]
#[error("buffer full ({0} entries)")]
pub struct Full(pub usize);

const SHARDS: usize = 16;
/// A shard's map is not shrunk below this many entries' capacity.
const SHRINK_FLOOR: usize = 256;

#[derive(Default)]
struct Shard {
    map: FxHashMap<Key, Entry>,
    /// An empty map with capacity, left by the last flush, swapped in by the next.
    spare: Option<FxHashMap<Key, Entry>>,
}

pub struct BufferedWriter {
    pub scenario: String,
    pub cfg: BufferConfig,
    conns: Arc<ConnCache>,
    /// The buffered entries, sharded by user so event ops on different workers
    /// rarely wait for each other.
    shards: Box<[Mutex<Shard>]>,
    /// Entries in the shards.
    held: AtomicUsize,
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
        conns: Arc<ConnCache>,
        metrics: BufferMetrics,
    ) -> Arc<Self> {
        let w = Self::create(scenario, cfg, conns, metrics);
        w.run();
        w
    }

    /// Creates the writer without starting its flusher: a reload builds everything first
    /// and starts it only once nothing can fail.
    pub fn create(
        scenario: &str,
        cfg: BufferConfig,
        conns: Arc<ConnCache>,
        metrics: BufferMetrics,
    ) -> Arc<Self> {
        metrics.capacity.set(cfg.size_limit as i64);
        let memory = metrics.memory.clone();
        let w = Arc::new(BufferedWriter {
            scenario: scenario.to_string(),
            namespace: Arc::from(cfg.namespace.as_str()),
            cfg,
            conns,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            held: AtomicUsize::new(0),
            in_flush: AtomicUsize::new(0),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            metrics,
        });
        memory.register("write_buffers", &w);
        w
    }

    /// The shards' tables at their capacity, the spare ones included, plus one user
    /// string per entry (entries share them per event, so this is an upper bound).
    fn table_bytes(&self) -> u64 {
        use crate::metrics::memory::hash_map_bytes;
        let per_user = 48;
        self.shards
            .iter()
            .map(|sh| {
                let sh = sh.lock();
                let cap = sh.map.capacity() + sh.spare.as_ref().map_or(0, |m| m.capacity());
                hash_map_bytes::<Key, Entry>(cap) + (sh.map.len() * per_user) as u64
            })
            .sum()
    }

    fn shard(&self, user: &str) -> &Mutex<Shard> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(user);
        // The high bits: FxHash's low bits are weak for short keys.
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// Starts the flusher of a writer made by [`BufferedWriter::create`].
    pub fn run(self: &Arc<Self>) {
        tokio::spawn(flusher(self.clone()));
    }

    /// Entries waiting (buffered plus being flushed).
    pub fn len(&self) -> usize {
        self.held.load(Ordering::Acquire) + self.in_flush.load(Ordering::Acquire)
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
        let mut shard = self.shard(&user).lock();
        let map = &mut shard.map;
        let fresh = goals
            .iter()
            .filter(|g| !map.contains_key(&(user.clone(), g.goal_id.clone())))
            .count();
        // Reserve room first: concurrent accepts on other shards cannot overshoot.
        let before = self.held.fetch_add(fresh, Ordering::AcqRel);
        let held = before + self.in_flush.load(Ordering::Acquire);
        if held + fresh > self.cfg.size_limit {
            self.held.fetch_sub(fresh, Ordering::AcqRel);
            drop(shard);
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
        drop(shard);
        let len = before + fresh;
        self.metrics
            .events
            .set((len + self.in_flush.load(Ordering::Acquire)) as i64);
        if len >= self.cfg.max_batch {
            self.wake.notify_one();
        }
        Ok(goals.len())
    }

    /// One flush of up to `max_batch` entries, as `flush_connections` concurrent
    /// statements over disjoint users. Ok(n): n committed; on an error the statements
    /// that failed put their entries back (the others committed).
    async fn flush_once(&self) -> Result<usize, sqlx::Error> {
        let taken = self.take_batch();
        if taken.is_empty() {
            return Ok(0);
        }
        self.write_batch(taken).await
    }

    /// Takes up to `max_batch` entries out of the shards (they count as in flush).
    fn take_batch(&self) -> Vec<(Key, Entry)> {
        let mut taken: Vec<(Key, Entry)> = Vec::new();
        let mut budget = self.cfg.max_batch;
        for shard in self.shards.iter() {
            if budget == 0 {
                break;
            }
            let mut sh = shard.lock();
            if sh.map.is_empty() {
                // A shard idle since a burst: drop its maps' peak capacity (freed
                // outside the lock; the next events here start a fresh map).
                let big = sh.spare.take_if(|m| m.capacity() > 4 * SHRINK_FLOOR);
                let big_map =
                    (sh.map.capacity() > 4 * SHRINK_FLOOR).then(|| std::mem::take(&mut sh.map));
                drop(sh);
                drop((big, big_map));
                continue;
            }
            let got = if sh.map.len() <= budget {
                // O(1) under the lock (the spare map is the one the last flush emptied):
                // accept() never waits for a flush to collect.
                let spare = sh.spare.take().unwrap_or_default();
                let mut all = std::mem::replace(&mut sh.map, spare);
                self.in_flush.fetch_add(all.len(), Ordering::AcqRel);
                self.held.fetch_sub(all.len(), Ordering::AcqRel);
                drop(sh);
                let got = all.len();
                taken.extend(all.drain());
                // After a burst both maps keep their peak capacity; once flushes are back
                // to a fraction of it, give the rest back (within two flushes).
                if all.capacity() > 4 * got.max(SHRINK_FLOOR) {
                    all.shrink_to(2 * got.max(SHRINK_FLOOR));
                }
                // Emptied, with its capacity: the next flush's spare.
                let mut sh = shard.lock();
                if sh.spare.is_none() {
                    sh.spare = Some(all);
                }
                got
            } else {
                let keys: Vec<Key> = sh.map.keys().take(budget).cloned().collect();
                let before = taken.len();
                for k in keys {
                    if let Some(e) = sh.map.remove(&k) {
                        taken.push((k, e));
                    }
                }
                let got = taken.len() - before;
                self.in_flush.fetch_add(got, Ordering::AcqRel);
                self.held.fetch_sub(got, Ordering::AcqRel);
                got
            };
            budget -= got;
        }
        taken
    }

    async fn write_batch(&self, taken: Vec<(Key, Entry)>) -> Result<usize, sqlx::Error> {
        let n = taken.len();
        let t0 = Instant::now();
        // Hashing and sorting a large batch takes tens of milliseconds: off the runtime's
        // workers, which run the arrival clock.
        let k = self.cfg.flush_connections;
        let parts = match tokio::task::spawn_blocking(move || partition(taken, k)).await {
            Ok(p) => p,
            Err(e) => {
                // Only a panic in partition() gets here; its entries are lost with it.
                self.in_flush.fetch_sub(n, Ordering::AcqRel);
                return Err(sqlx::Error::Protocol(format!(
                    "flush preparation failed: {e}"
                )));
            }
        };
        let results = futures::future::join_all(parts.iter().map(|p| upsert(&self.conns, p))).await;
        let committed = Instant::now();
        self.metrics
            .flush
            .observe(committed.duration_since(t0).as_secs_f64());
        let mut first_err = None;
        let mut done = 0;
        for (part, result) in parts.into_iter().zip(results) {
            let m = part.len();
            match result {
                Ok(()) => {
                    self.in_flush.fetch_sub(m, Ordering::AcqRel);
                    self.metrics.flushed.inc_by(m as u64);
                    for (_, e) in &part {
                        self.metrics
                            .e2e
                            .observe(committed.duration_since(e.accepted).as_secs_f64());
                    }
                    done += m;
                }
                Err(err) => {
                    // Put the part back; an entry accepted meanwhile for the same row
                    // is newer, so it keeps its values and takes the older acceptance
                    // time.
                    let mut back = 0;
                    for (k, e) in part {
                        let mut sh = self.shard(&k.0).lock();
                        match sh.map.entry(k) {
                            std::collections::hash_map::Entry::Occupied(mut newer) => {
                                let n = newer.get_mut();
                                n.accepted = n.accepted.min(e.accepted);
                            }
                            std::collections::hash_map::Entry::Vacant(v) => {
                                v.insert(e);
                                back += 1;
                            }
                        }
                    }
                    // Held again before no longer in flush: the total never dips.
                    self.held.fetch_add(back, Ordering::AcqRel);
                    self.in_flush.fetch_sub(m, Ordering::AcqRel);
                    first_err.get_or_insert(err);
                }
            }
        }
        self.metrics.events.set(self.len() as i64);
        match first_err {
            None => Ok(done),
            Some(err) => {
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
            if self.held.load(Ordering::Acquire) == 0 {
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

/// Splits a batch into `n` parts by user (so concurrent statements never touch the
/// same row), each sorted by key: statements that lock rows in one global order cannot
/// deadlock each other, even across writers.
fn partition(batch: Vec<(Key, Entry)>, n: usize) -> Vec<Vec<(Key, Entry)>> {
    use std::hash::{BuildHasher, Hasher};
    let n = n.max(1);
    let mut parts: Vec<Vec<(Key, Entry)>> = (0..n)
        .map(|_| Vec::with_capacity(batch.len() / n + 1))
        .collect();
    let hasher = std::collections::hash_map::RandomState::new();
    for (k, e) in batch {
        let i = if n == 1 {
            0
        } else {
            let mut h = hasher.build_hasher();
            h.write(k.0.as_bytes());
            (h.finish() % n as u64) as usize
        };
        parts[i].push((k, e));
    }
    parts.retain(|p| !p.is_empty());
    for p in &mut parts {
        p.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    }
    parts
}

/// One statement, on a connection from the target's slots: the same ones SQL ops use, so
/// a saturated read path queues fairly with the flusher instead of starving it.
async fn upsert(conns: &ConnCache, part: &[(Key, Entry)]) -> Result<(), sqlx::Error> {
    let mut lease = conns.acquire().await.map_err(|e| match e {
        AcquireError::Timeout => sqlx::Error::PoolTimedOut,
        AcquireError::Sqlx(e) => e,
    })?;
    let Some(conn) = lease.conn() else {
        return Err(sqlx::Error::PoolClosed);
    };
    let users: Vec<&str> = part.iter().map(|(k, _)| &*k.0).collect();
    let goals: Vec<&str> = part.iter().map(|(k, _)| &*k.1).collect();
    let chals: Vec<&str> = part.iter().map(|(_, e)| &*e.challenge_id).collect();
    let nss: Vec<&str> = part.iter().map(|(_, e)| &*e.namespace).collect();
    let prog: Vec<i32> = part.iter().map(|(_, e)| e.progress).collect();
    let done: Vec<bool> = part.iter().map(|(_, e)| e.completed).collect();
    let outcome = sqlx::query(UPSERT)
        .bind(users)
        .bind(goals)
        .bind(chals)
        .bind(nss)
        .bind(prog)
        .bind(done)
        .execute(conn)
        .await;
    lease.finish(outcome).map(drop)
}

async fn flusher(w: Arc<BufferedWriter>) {
    let mut backoff: Option<Duration> = None;
    // Flushes start every flush_interval (not an interval after the last one ended),
    // so a flush that takes half the interval does not stretch the period by half.
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + w.cfg.flush_interval,
        w.cfg.flush_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        match backoff {
            Some(wait) => tokio::time::sleep(wait).await,
            None => tokio::select! {
                _ = ticker.tick() => {}
                _ = w.wake.notified() => {}
            },
        }
        if w.stopping.load(Ordering::Acquire) {
            return;
        }
        loop {
            match w.flush_once().await {
                Ok(_) => {
                    backoff = None;
                    if w.held.load(Ordering::Acquire) < w.cfg.max_batch {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            challenge_id: Arc::from("c"),
            namespace: Arc::from("ns"),
            progress: 1,
            completed: false,
            accepted: Instant::now(),
        }
    }

    fn writer(size_limit: usize) -> Arc<BufferedWriter> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let conns = Arc::new(ConnCache::new(
            pool,
            1,
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        ));
        let metrics = crate::metrics::Metrics::new(std::time::Duration::from_secs(60));
        let cfg = BufferConfig {
            size_limit,
            flush_interval: std::time::Duration::from_secs(1),
            max_batch: size_limit,
            flush_connections: 1,
            namespace: "ns".into(),
            challenges: Arc::new(crate::challenges::ChallengeIndex::embedded().unwrap()),
        };
        BufferedWriter::create("t", cfg, conns, metrics.buffers.writer("t"))
    }

    /// A burst leaves the shards' maps at their peak capacity; normal flushes after it
    /// give that back, so a latency spike does not leave memory behind.
    #[tokio::test]
    async fn memory_taken_by_a_burst_is_given_back_by_the_next_flushes() {
        use crate::metrics::MemorySize;
        let w = writer(1_000_000);
        let stat = w.cfg.challenges.stat_codes()[0].to_string();
        let fill = |from: usize, n: usize| {
            for u in from..from + n {
                w.accept(&format!("user-{u}"), &stat, 1, None).unwrap();
            }
        };
        fill(0, 10);
        w.take_batch();
        let small = w.memory_bytes();
        fill(0, 100_000);
        let burst = w.memory_bytes();
        assert!(
            burst > 20 * small,
            "a burst grows the maps: {small} -> {burst}"
        );
        assert!(w.take_batch().len() >= 100_000);
        for round in 0..3 {
            fill(round * 10, 10);
            w.take_batch();
        }
        let after = w.memory_bytes();
        assert!(
            after * 10 < burst,
            "given back: burst {burst}, after {after}"
        );
    }

    #[test]
    fn partitions_are_disjoint_by_user_sorted_and_complete() {
        let mut batch = Vec::new();
        for u in (0..200).rev() {
            for g in ["g2", "g1", "g3"] {
                batch.push(((Arc::from(format!("user-{u:03}")), Arc::from(g)), entry()));
            }
        }
        let parts = partition(batch.clone(), 4);
        assert!(parts.len() > 1 && parts.len() <= 4);
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), batch.len());
        let mut owner = std::collections::HashMap::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(p.windows(2).all(|w| w[0].0 < w[1].0), "part {i} is sorted");
            for ((u, _), _) in p {
                assert_eq!(
                    *owner.entry(u.clone()).or_insert(i),
                    i,
                    "user {u} in two parts"
                );
            }
        }
        let one = partition(batch, 1);
        assert_eq!(one.len(), 1);
        assert!(one[0].windows(2).all(|w| w[0].0 < w[1].0));
    }
}
