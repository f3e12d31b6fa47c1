//! Where the demo target keeps goal progress: in memory, or in PostgreSQL through the
//! same buffered writer soakd uses (the seed's event handler write path).
//!
//! Goals that no event has touched yet show a synthetic progress derived from a hash of
//! (user, goal), so the API has completed goals to claim from the first request.

use crate::challenges::{ChallengeIndex, Goal};
use crate::pg::writer::BufferedWriter;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

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

pub enum Store {
    Memory(Mutex<GoalMap>),
    Postgres {
        pool: sqlx::PgPool,
        writer: Arc<BufferedWriter>,
    },
}

/// Connects to `url`, creates the schema, and starts the seed's buffered writer
/// (1 s flushes, 100,000 entries) in front of it. The writer reports into
/// `writer_metrics` (`soakd demo` passes the daemon's, so soakd's `/metrics` and page
/// show the target's writer; `soakd target` its own) and its pool into `pools`.
pub async fn postgres(
    url: &str,
    pool_size: u32,
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
        flush_interval: std::time::Duration::from_secs(1),
        max_batch: 10_000,
        flush_connections: 1,
        namespace: "test".into(),
        challenges: Arc::new(ChallengeIndex::embedded().map_err(|e| e.to_string())?),
    };
    let writer = BufferedWriter::start("demo-target", cfg, conns, writer_metrics);
    Ok(Store::Postgres { pool, writer })
}

/// Stable synthetic progress: about a third of goals come out completed.
pub fn synthetic(user: &str, goal: &Goal) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in user.bytes().chain(goal.id.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % (goal.target * 3 / 2 + 1)).min(goal.target)
}

impl Store {
    pub fn memory() -> Store {
        Store::Memory(Mutex::new(HashMap::new()))
    }

    /// The buffered writer (PostgreSQL mode).
    pub fn writer(&self) -> Option<&Arc<BufferedWriter>> {
        match self {
            Store::Memory(_) => None,
            Store::Postgres { writer, .. } => Some(writer),
        }
    }

    /// Bytes of the in-memory progress map (0 in PostgreSQL mode: the writer reports
    /// its own buffer).
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Store::Memory(m) => {
                let m = m.lock();
                crate::metrics::memory::hash_map_bytes::<(Arc<str>, Arc<str>), GoalState>(
                    m.capacity(),
                ) + m
                    .keys()
                    .map(|(u, g)| (u.len() + g.len() + 32) as u64)
                    .sum::<u64>()
            }
            Store::Postgres { .. } => 0,
        }
    }

    /// Flushes what the writer holds (PostgreSQL mode); returns entries left.
    pub async fn drain(&self, deadline: std::time::Instant) -> usize {
        match self {
            Store::Memory(_) => 0,
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
            Store::Memory(m) => {
                let mut m = m.lock();
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
                let u: Arc<str> = Arc::from(user);
                for g in idx.goals_for(stat) {
                    let p = value.clamp(0, g.target as i64) as u64;
                    m.entry((u.clone(), g.goal_id.clone()))
                        .and_modify(|s| {
                            if !s.claimed {
                                s.progress = p;
                            }
                        })
                        .or_insert(GoalState {
                            progress: p,
                            claimed: false,
                        });
                }
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
            Store::Memory(m) => {
                let m = m.lock();
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
            Store::Memory(m) => {
                let mut m = m.lock();
                if m.len() >= MAX_ENTRIES {
                    m.clear();
                }
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
