//! Where the demo target keeps goal progress: in memory, or in PostgreSQL through the
//! same buffered writer soakd uses (the seed's event handler write path).
//!
//! Goals that no event has touched yet show a synthetic progress derived from a hash of
//! (user, goal), so the API has completed goals to claim from the first request — except
//! for probe users (`probe-…`), whose goals start at 0 so that a visibility probe can
//! tell its write from made-up progress.

use crate::challenges::{ChallengeIndex, Goal};
use crate::pg::writer::BufferedWriter;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

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
    probes: std::collections::VecDeque<(Arc<str>, Arc<str>)>,
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
    },
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
    Ok(Store::Postgres { pool, writer })
}

/// Users whose id starts with this have no made-up progress: a visibility probe's
/// write is the first value the API shows for them (`fixtures/demo.yaml`).
pub const PROBE_PREFIX: &str = "probe-";

/// Stable synthetic progress: about a third of goals come out completed (0 for probe
/// users).
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
        let weak = Arc::downgrade(&buffer);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(flush_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(b) = weak.upgrade() else { break };
                b.flush();
            }
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
            Store::Postgres { .. } => 0,
        }
    }

    /// Flushes what the writer holds (PostgreSQL mode); returns entries left.
    pub async fn drain(&self, deadline: std::time::Instant) -> usize {
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
            Store::Postgres { writer, .. } => writer
                .accept(user, stat, value, Some(ns))
                .map(|_| ())
                .map_err(|e| e.to_string()),
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
