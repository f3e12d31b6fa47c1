//! Where the demo target keeps goal progress: in memory, or in PostgreSQL through the
//! same buffered writer soakd uses (the seed's event handler write path).
//!
//! Goals that no event has touched yet show a synthetic progress derived from a hash of
//! (user, goal), so the API has completed goals to claim from the first request — except
//! for probe users (`probe-…`), whose goals start at 0 so that a visibility probe can
//! tell its write from made-up progress. Each probe writes for a user of its own, so
//! both stores bound them: the in-memory one keeps the latest 20,000 probe entries, the
//! PostgreSQL one deletes a probe user's rows 10 minutes after its write.

use crate::challenges::{ChallengeIndex, Goal};
use crate::pg::writer::BufferedWriter;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// At most this many (user, goal) entries in memory; past it the map starts over.
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoalState {
    pub progress: u64,
    pub claimed: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ClaimError {
    NotCompleted,
    AlreadyClaimed,
    Unavailable(String),
}

/// (user, goal) → state.
type GoalMap = HashMap<(Arc<str>, Arc<str>), GoalState>;

/// At most this many probe users' goal entries: a probe user is written once and read
/// until its probe sees the write, so the oldest go first.
const MAX_PROBE_ENTRIES: usize = 20_000;

/// In-memory progress: the goal map, and the order probe users' entries arrived in (so
/// that they, one-off users, stay bounded well below the map's own limit).
#[derive(Default)]
pub struct Progress {
    map: GoalMap,
    probes: VecDeque<(Arc<str>, Arc<str>)>,
}

/// The seed's flush interval: how long an event waits in the buffer, at most, before
/// the API can show it.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The buffer's bound (the seed's `size_limit`): an update arriving when it is full is
/// refused (RESOURCE_EXHAUSTED), as the PostgreSQL writer refuses it.
pub const BUFFER_LIMIT: usize = 100_000;

pub enum Store {
    /// Progress in memory; with a buffer, updates wait in it until the next flush (as
    /// the seed's handler does in front of its database), without, apply at once.
    Memory {
        map: Arc<Mutex<Progress>>,
        buffer: Option<Arc<MemoryBuffer>>,
    },
    Postgres {
        pool: sqlx::PgPool,
        writer: Arc<BufferedWriter>,
        probes: Arc<ProbeUsers>,
    },
}

/// How long a probe user's rows stay in PostgreSQL after its write: its probe reads them
/// until the write shows (seconds; `deadline` at most), and nothing reads them after.
pub const PROBE_KEEP: Duration = Duration::from_secs(600);

/// How often the PostgreSQL store deletes the probe users past [`PROBE_KEEP`].
const PROBE_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// At most this many probe users wait for their rows' deletion; past it the oldest go
/// at the next sweep, whatever their age.
const MAX_PROBE_USERS: usize = 100_000;

/// Probe users the PostgreSQL store wrote, oldest first, until their rows are deleted.
/// Each probe writes for a user of its own (`probe-<trace id>`), so without this the
/// table would gain its rows forever: 2 probes a second are 350,000 rows a day, more
/// than the demo's 10,000 real users hold after a week. (The in-memory store bounds its
/// probe entries itself.)
pub struct ProbeUsers {
    pool: sqlx::PgPool,
    written: Mutex<VecDeque<(Instant, Box<str>)>>,
}

impl ProbeUsers {
    fn note(&self, user: &str) {
        let mut q = self.written.lock();
        if q.back().is_some_and(|(_, u)| &**u == user) {
            return;
        }
        q.push_back((Instant::now(), user.into()));
    }

    /// Takes the users written at least `age` before `now`, and the oldest past the bound.
    fn due(&self, age: Duration, now: Instant) -> Vec<Box<str>> {
        let mut q = self.written.lock();
        let mut out = Vec::new();
        while let Some((at, _)) = q.front() {
            if q.len() <= MAX_PROBE_USERS && now.saturating_duration_since(*at) < age {
                break;
            }
            if let Some((_, u)) = q.pop_front() {
                out.push(u);
            }
        }
        out
    }

    /// Deletes the rows of the users written at least `age` ago, `DELETE_BATCH` users a
    /// statement; returns how many rows. Users whose delete failed go back to the front,
    /// timed from now: they are tried again once `age` has passed.
    async fn retire(&self, age: Duration) -> Result<u64, String> {
        const DELETE_BATCH: usize = 1000;
        let users = self.due(age, Instant::now());
        let mut deleted = 0;
        for (i, chunk) in users.chunks(DELETE_BATCH).enumerate() {
            let ids: Vec<&str> = chunk.iter().map(|u| &**u).collect();
            let done = sqlx::query("DELETE FROM user_goal_progress WHERE user_id = ANY($1)")
                .bind(&ids)
                .execute(&self.pool)
                .await;
            match done {
                Ok(r) => deleted += r.rows_affected(),
                Err(e) => {
                    let mut q = self.written.lock();
                    let now = Instant::now();
                    for u in users[i * DELETE_BATCH..].iter().rev() {
                        q.push_front((now, u.clone()));
                    }
                    return Err(format!("deleting probe users' rows: {e}"));
                }
            }
        }
        Ok(deleted)
    }

    fn memory_bytes(&self) -> u64 {
        let q = self.written.lock();
        (q.capacity() * std::mem::size_of::<(Instant, Box<str>)>()) as u64
            + q.iter().map(|(_, u)| u.len() as u64).sum::<u64>()
    }
}

/// Stat updates waiting for the in-memory store's next flush.
pub struct MemoryBuffer {
    pending: Mutex<Vec<Update>>,
    map: Weak<Mutex<Progress>>,
    idx: Arc<ChallengeIndex>,
}

struct Update {
    user: Arc<str>,
    stat: Box<str>,
    value: i64,
}

impl MemoryBuffer {
    /// Applies what waits; returns how many updates.
    fn flush(&self) -> usize {
        let batch = std::mem::take(&mut *self.pending.lock());
        let Some(map) = self.map.upgrade() else {
            return 0;
        };
        let mut m = map.lock();
        for u in &batch {
            apply_to(&mut m, &self.idx, &u.user, &u.stat, u.value);
        }
        batch.len()
    }
}

/// A stat update applied to the map: every goal the stat advances gets
/// `min(value, target)`, unless claimed.
fn apply_to(p: &mut Progress, idx: &ChallengeIndex, user: &str, stat: &str, value: i64) {
    if p.map.len() >= MAX_ENTRIES {
        p.map.clear();
        p.probes.clear();
    }
    let probe = user.starts_with(PROBE_PREFIX);
    let u: Arc<str> = Arc::from(user);
    for g in idx.goals_for(stat) {
        let v = value.clamp(0, g.target as i64) as u64;
        let key = (u.clone(), g.goal_id.clone());
        if probe && !p.map.contains_key(&key) {
            p.probes.push_back(key.clone());
            while p.probes.len() > MAX_PROBE_ENTRIES {
                if let Some(old) = p.probes.pop_front() {
                    p.map.remove(&old);
                }
            }
        }
        p.map
            .entry(key)
            .and_modify(|s| {
                if !s.claimed {
                    s.progress = v;
                }
            })
            .or_insert(GoalState {
                progress: v,
                claimed: false,
            });
    }
}

/// Connects to `url`, creates the schema, and starts the seed's buffered writer
/// (`flush_interval` flushes, 100,000 entries) in front of it. The writer reports into
/// `writer_metrics` (`soakd demo` passes the daemon's, so soakd's `/metrics` and page
/// show the target's writer; `soakd target` its own) and its pool into `pools`.
pub async fn postgres(
    url: &str,
    pool_size: u32,
    flush_interval: Duration,
    writer_metrics: crate::metrics::BufferMetrics,
    pools: &crate::metrics::PoolFamily,
) -> Result<Store, String> {
    let target = crate::config::PostgresTarget {
        url: url.to_string(),
        max_connections: pool_size,
        min_connections: 0,
        acquire_timeout: None,
        idle_timeout: None,
        max_lifetime: None,
        statement_cache: None,
        sslmode: None,
        bootstrap: true,
        stats: crate::config::PgStatsConfig {
            enabled: false,
            ..Default::default()
        },
    };
    let pool = crate::drivers::postgres::build_pool(&target).map_err(|e| e.to_string())?;
    crate::drivers::postgres::bootstrap(&pool)
        .await
        .map_err(|e| format!("bootstrap: {e}"))?;
    // The writer's connections come from the same slots the pool metrics count.
    let conns = Arc::new(crate::pg::conn::ConnCache::new(
        pool.clone(),
        pool_size,
        crate::drivers::postgres::ACQUIRE_TIMEOUT,
        crate::drivers::postgres::IDLE_TIMEOUT,
    ));
    let _ = pools.pool("demo-target", conns.clone());
    let cfg = crate::config::BufferConfig {
        size_limit: 100_000,
        flush_interval,
        max_batch: 10_000,
        flush_connections: 1,
        namespace: "test".into(),
        challenges: Arc::new(ChallengeIndex::embedded().map_err(|e| e.to_string())?),
    };
    let writer = BufferedWriter::start("demo-target", cfg, conns, writer_metrics);
    let probes = Arc::new(ProbeUsers {
        pool: pool.clone(),
        written: Mutex::new(VecDeque::new()),
    });
    periodically(PROBE_SWEEP_EVERY, Arc::downgrade(&probes), |p| async move {
        if let Err(e) = p.retire(PROBE_KEEP).await {
            tracing::warn!("{e}");
        }
    });
    Ok(Store::Postgres {
        pool,
        writer,
        probes,
    })
}

/// Runs `f` every `every` (the first time one period from now) on the current runtime,
/// until what `weak` points to is dropped: a store's background work ends with it.
fn periodically<T, F, Fut>(every: Duration, weak: Weak<T>, f: F)
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(v) = weak.upgrade() else { break };
            f(v).await;
        }
    });
}

/// Users whose id starts with this have no made-up progress: a visibility probe's
/// write is the first value the API shows for them (`fixtures/demo.yaml`).
pub const PROBE_PREFIX: &str = "probe-";

/// Stable synthetic progress: about a third of goals come out completed (0 for probe
/// users). `scripts/bench/longsoak.sh` copies it to prefill its table: change both together.
pub fn synthetic(user: &str, goal: &Goal) -> u64 {
    if user.starts_with(PROBE_PREFIX) {
        return 0;
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in user.bytes().chain(goal.id.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % (goal.target * 3 / 2 + 1)).min(goal.target)
}

impl Store {
    /// In memory, updates applied at once (no buffer).
    pub fn memory() -> Store {
        Store::Memory {
            map: Arc::new(Mutex::new(Progress::default())),
            buffer: None,
        }
    }

    /// In memory behind a buffer flushed every `flush_interval` (a task on the
    /// current runtime, which ends with the store).
    pub fn memory_buffered(flush_interval: Duration) -> Result<Store, serde_json::Error> {
        let map = Arc::new(Mutex::new(Progress::default()));
        let buffer = Arc::new(MemoryBuffer {
            pending: Mutex::new(Vec::new()),
            map: Arc::downgrade(&map),
            idx: Arc::new(ChallengeIndex::embedded()?),
        });
        periodically(flush_interval, Arc::downgrade(&buffer), |b| async move {
            b.flush();
        });
        Ok(Store::Memory {
            map,
            buffer: Some(buffer),
        })
    }

    /// The buffered writer (PostgreSQL mode).
    pub fn writer(&self) -> Option<&Arc<BufferedWriter>> {
        match self {
            Store::Memory { .. } => None,
            Store::Postgres { writer, .. } => Some(writer),
        }
    }

    /// Bytes of the in-memory progress map (0 in PostgreSQL mode: the writer reports
    /// its own buffer).
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Store::Memory { map, buffer } => {
                let waiting = buffer.as_ref().map_or(0, |b| {
                    let p = b.pending.lock();
                    (p.capacity() * std::mem::size_of::<Update>()) as u64
                        + p.iter()
                            .map(|u| (u.user.len() + u.stat.len() + 16) as u64)
                            .sum::<u64>()
                });
                let p = map.lock();
                let m = &p.map;
                crate::metrics::memory::hash_map_bytes::<(Arc<str>, Arc<str>), GoalState>(
                    m.capacity(),
                ) + (p.probes.capacity() * std::mem::size_of::<(Arc<str>, Arc<str>)>()) as u64
                    + m.keys()
                        .map(|(u, g)| (u.len() + g.len() + 32) as u64)
                        .sum::<u64>()
                    + waiting
            }
            Store::Postgres { probes, .. } => probes.memory_bytes(),
        }
    }

    /// Deletes the rows of the probe users written at least `age` ago (PostgreSQL mode;
    /// the store does this itself every minute for [`PROBE_KEEP`]); returns how many
    /// rows. The in-memory store bounds its probe entries as it goes: 0.
    pub async fn retire_probe_users(&self, age: Duration) -> Result<u64, String> {
        match self {
            Store::Memory { .. } => Ok(0),
            Store::Postgres { probes, .. } => probes.retire(age).await,
        }
    }

    /// Flushes what the writer holds (PostgreSQL mode); returns entries left.
    pub async fn drain(&self, deadline: Instant) -> usize {
        match self {
            Store::Memory { buffer, .. } => {
                if let Some(b) = buffer {
                    b.flush();
                }
                0
            }
            Store::Postgres { writer, .. } => writer.drain(deadline).await,
        }
    }

    /// Applies a stat update: every goal the stat advances gets `min(value, target)`.
    /// In PostgreSQL mode the writer may refuse it when its buffer is full.
    pub fn apply(
        &self,
        idx: &ChallengeIndex,
        user: &str,
        stat: &str,
        value: i64,
        ns: &str,
    ) -> Result<(), String> {
        match self {
            Store::Memory { map, buffer: None } => {
                apply_to(&mut map.lock(), idx, user, stat, value);
                Ok(())
            }
            Store::Memory {
                buffer: Some(b), ..
            } => {
                let mut p = b.pending.lock();
                if p.len() >= BUFFER_LIMIT {
                    return Err(format!(
                        "the buffer holds {BUFFER_LIMIT} updates waiting for the next flush"
                    ));
                }
                p.push(Update {
                    user: Arc::from(user),
                    stat: stat.into(),
                    value,
                });
                Ok(())
            }
            Store::Postgres { writer, probes, .. } => {
                writer
                    .accept(user, stat, value, Some(ns))
                    .map_err(|e| e.to_string())?;
                if user.starts_with(PROBE_PREFIX) {
                    probes.note(user);
                }
                Ok(())
            }
        }
    }

    /// The user's stored goal states (goals absent here use [`synthetic`]).
    pub async fn states(&self, user: &str) -> Result<HashMap<String, GoalState>, String> {
        match self {
            Store::Memory { map, .. } => {
                let m = &map.lock().map;
                // The map is keyed by (user, goal); a scan per request is fine for a demo
                // of 10,000 users x 500 goals, but keep it cheap with a user filter.
                Ok(m.iter()
                    .filter(|((u, _), _)| &**u == user)
                    .map(|((_, g), s)| (g.to_string(), *s))
                    .collect())
            }
            Store::Postgres { pool, .. } => {
                let rows: Vec<(String, i32, bool)> = sqlx::query_as(
                    "SELECT goal_id, progress, claimed_at IS NOT NULL FROM user_goal_progress WHERE user_id = $1",
                )
                .bind(user)
                .fetch_all(pool)
                .await
                .map_err(|e| e.to_string())?;
                Ok(rows
                    .into_iter()
                    .map(|(g, p, c)| {
                        (
                            g,
                            GoalState {
                                progress: p.max(0) as u64,
                                claimed: c,
                            },
                        )
                    })
                    .collect())
            }
        }
    }

    pub async fn claim(
        &self,
        user: &str,
        challenge_id: &str,
        goal: &Goal,
        ns: &str,
    ) -> Result<(), ClaimError> {
        match self {
            Store::Memory { map, .. } => {
                let mut p = map.lock();
                if p.map.len() >= MAX_ENTRIES {
                    p.map.clear();
                    p.probes.clear();
                }
                let m = &mut p.map;
                let key = (Arc::from(user), Arc::from(goal.id.as_str()));
                let st = m.entry(key).or_insert(GoalState {
                    progress: synthetic(user, goal),
                    claimed: false,
                });
                if st.claimed {
                    Err(ClaimError::AlreadyClaimed)
                } else if st.progress < goal.target {
                    Err(ClaimError::NotCompleted)
                } else {
                    st.claimed = true;
                    Ok(())
                }
            }
            Store::Postgres { pool, .. } => {
                // A goal no event has touched yet is completed if its synthetic progress
                // says so; the upsert records it as claimed. A stored row is claimed only
                // when completed and not claimed yet.
                let synth = synthetic(user, goal);
                let claimed: Option<i32> = sqlx::query_scalar(
                    "INSERT INTO user_goal_progress
                         (user_id, goal_id, challenge_id, namespace, progress, status, completed_at, claimed_at, updated_at)
                     SELECT $1, $2, $3, $4, $5, 'claimed', now(), now(), now() WHERE $5 >= $6
                     ON CONFLICT (user_id, goal_id) DO UPDATE
                         SET status = 'claimed', claimed_at = now(), updated_at = now()
                         WHERE user_goal_progress.status = 'completed' AND user_goal_progress.claimed_at IS NULL
                     RETURNING 1",
                )
                .bind(user)
                .bind(&goal.id)
                .bind(challenge_id)
                .bind(ns)
                .bind(synth as i32)
                .bind(goal.target as i32)
                .fetch_optional(pool)
                .await
                .map_err(|e| ClaimError::Unavailable(e.to_string()))?;
                if claimed.is_some() {
                    return Ok(());
                }
                let row: Option<(i32, bool)> = sqlx::query_as(
                    "SELECT progress, claimed_at IS NOT NULL FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2",
                )
                .bind(user)
                .bind(&goal.id)
                .fetch_optional(pool)
                .await
                .map_err(|e| ClaimError::Unavailable(e.to_string()))?;
                match row {
                    Some((_, true)) => Err(ClaimError::AlreadyClaimed),
                    _ => Err(ClaimError::NotCompleted),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probe_users_come_due_by_age_and_past_the_bound_oldest_first() {
        // A lazy pool: `due` never touches the database.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let p = ProbeUsers {
            pool,
            written: Mutex::new(VecDeque::new()),
        };
        p.note("probe-a");
        p.note("probe-a"); // the same user again: noted once
        p.note("probe-b");
        let now = Instant::now();
        assert!(p.due(Duration::from_secs(600), now).is_empty());
        let later = now + Duration::from_secs(601);
        let due: Vec<String> = p
            .due(Duration::from_secs(600), later)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(due, ["probe-a", "probe-b"]);
        assert!(p.written.lock().is_empty());

        for i in 0..MAX_PROBE_USERS + 3 {
            p.note(&format!("probe-{i}"));
        }
        assert!(p.memory_bytes() > (MAX_PROBE_USERS * 8) as u64);
        // Young, but three past the bound: the three oldest go now.
        let due = p.due(Duration::from_secs(600), Instant::now());
        assert_eq!(due.len(), 3);
        assert_eq!(&*due[0], "probe-0");
        assert_eq!(&*due[2], "probe-2");
        assert_eq!(p.written.lock().len(), MAX_PROBE_USERS);
    }

    #[test]
    fn probe_users_start_at_zero_and_stay_bounded() {
        let idx = ChallengeIndex::embedded().unwrap();
        let goal = &idx.challenges[0].goals[0];
        assert_eq!(synthetic("probe-abc", goal), 0);
        let store = Store::memory();
        let Store::Memory { map, .. } = &store else {
            unreachable!()
        };
        // Each probe user's stat advances two goals.
        for i in 0..(MAX_PROBE_ENTRIES / 2 + 500) {
            store
                .apply(&idx, &format!("probe-{i}"), &goal.stat_code, 7, "test")
                .unwrap();
        }
        store
            .apply(&idx, "user-000001", &goal.stat_code, 3, "test")
            .unwrap();
        let p = map.lock();
        assert_eq!(p.probes.len(), MAX_PROBE_ENTRIES);
        assert_eq!(
            p.map.len(),
            MAX_PROBE_ENTRIES + 2,
            "the oldest probes went, the user stays"
        );
        assert!(!p
            .map
            .contains_key(&(Arc::from("probe-0"), goal.id.as_str().into())));
    }

    #[tokio::test]
    async fn a_buffered_update_shows_only_after_the_flush() {
        let idx = ChallengeIndex::embedded().unwrap();
        let goal = &idx.challenges[0].goals[0];
        let store = Store::memory_buffered(Duration::from_millis(200)).unwrap();
        store
            .apply(&idx, "probe-x", &goal.stat_code, 7, "test")
            .unwrap();
        assert!(
            store.states("probe-x").await.unwrap().is_empty(),
            "before the flush"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        let st = store.states("probe-x").await.unwrap();
        assert_eq!(st[goal.id.as_str()].progress, 7, "after the flush");
    }
}
