//! Connections for SQL operations: a stack of connections kept checked out of sqlx's
//! pool, under `max_connections` slots.
//!
//! sqlx's pool round-trips to the server twice per checkout besides the statement: it
//! pings a connection when it lends it (`test_before_acquire`) and again, from a
//! spawned task, when it is given back. Three round trips for a one-row SELECT is what
//! held soakd to 0.6× pgbench (`docs/BENCHMARKS.md`). Here a connection that finished
//! its statement cleanly goes onto this stack instead and the next operation takes it
//! straight back: one round trip per statement, as pgbench. sqlx still opens, tests and
//! closes connections: a connection that failed (or whose operation was cancelled
//! mid-statement) is handed back to sqlx, which pings it and closes it if broken — and
//! when the failure says the connection was lost (server restart, failover), every
//! cached connection is handed back with it, since they went down together; a
//! cached one idle past `idle_timeout`, or held longer than [`KEEP_FOR`], is handed back
//! too, so sqlx's idle and lifetime rules still apply.
//!
//! Waiting for a slot is the pool wait: it is timed into
//! `soakd_db_pool_acquire_seconds` and bounded by `acquire_timeout`.

use crate::metrics::PoolStats;
use parking_lot::Mutex;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A cached connection goes back to sqlx at least this often (sqlx then applies
/// `max_lifetime` and `idle_timeout`).
pub const KEEP_FOR: Duration = Duration::from_secs(30);

struct Cached {
    conn: PoolConnection<Postgres>,
    /// When it was taken from sqlx.
    taken: Instant,
    /// When it last finished a statement.
    used: Instant,
}

pub struct ConnCache {
    pool: PgPool,
    slots: Semaphore,
    idle: Mutex<Vec<Cached>>,
    max: u32,
    acquire_timeout: Duration,
    idle_timeout: Duration,
}

/// Why no connection was lent.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("no pooled connection within acquire_timeout")]
    Timeout,
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

/// A lent connection and its slot. Dropped without [`Lease::keep`], the connection
/// goes back to sqlx (which tests it); with it, onto the stack.
pub struct Lease<'a> {
    cache: &'a ConnCache,
    conn: Option<Cached>,
    _slot: SemaphorePermit<'a>,
}

impl ConnCache {
    pub fn new(
        pool: PgPool,
        max: u32,
        acquire_timeout: Duration,
        idle_timeout: Duration,
    ) -> ConnCache {
        ConnCache {
            pool,
            slots: Semaphore::new(max as usize),
            idle: Mutex::new(Vec::new()),
            max,
            acquire_timeout,
            idle_timeout,
        }
    }

    /// Connections on the stack now.
    pub fn cached(&self) -> usize {
        self.idle.lock().len()
    }

    /// A connection: the most recently used cached one, else one from sqlx. Waits
    /// for a slot at most `acquire_timeout`.
    pub async fn acquire(&self) -> Result<Lease<'_>, AcquireError> {
        let start = Instant::now();
        let slot = tokio::time::timeout(self.acquire_timeout, self.slots.acquire())
            .await
            .map_err(|_| AcquireError::Timeout)?
            .map_err(|_| AcquireError::Timeout)?;
        let now = Instant::now();
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock();
            loop {
                match idle.pop() {
                    Some(c)
                        if now.duration_since(c.taken) > KEEP_FOR
                            || now.duration_since(c.used) > self.idle_timeout =>
                    {
                        stale.push(c)
                    }
                    other => break other,
                }
            }
        };
        // Back to sqlx (outside the lock).
        drop(stale);
        let conn = match found {
            Some(c) => c,
            None => {
                let left = self.acquire_timeout.saturating_sub(start.elapsed());
                let conn = tokio::time::timeout(left, self.pool.acquire())
                    .await
                    .map_err(|_| AcquireError::Timeout)?
                    .map_err(|e| match e {
                        sqlx::Error::PoolTimedOut => AcquireError::Timeout,
                        e => AcquireError::Sqlx(e),
                    })?;
                Cached {
                    conn,
                    taken: now,
                    used: now,
                }
            }
        };
        Ok(Lease {
            cache: self,
            conn: Some(conn),
            _slot: slot,
        })
    }
}

/// Whether `e` means the statement's connection is gone — I/O or protocol failure,
/// SQLSTATE class 08 (connection exception), 57P01–57P03 (administrator or crash
/// shutdown, cannot connect now) — as after a server restart or failover, which takes
/// every other connection to that server with it.
pub fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

impl ConnCache {
    /// Hands every cached connection back to sqlx, which tests each before lending it
    /// again and closes the dead ones.
    fn forget_cached(&self) {
        let cached = std::mem::take(&mut *self.idle.lock());
        drop(cached);
    }
}

impl PoolStats for ConnCache {
    fn in_use(&self) -> i64 {
        let lent_by_sqlx = self.pool.size() as i64 - self.pool.num_idle() as i64;
        (lent_by_sqlx - self.cached() as i64).max(0)
    }
    fn idle(&self) -> i64 {
        self.pool.num_idle() as i64 + self.cached() as i64
    }
    fn max(&self) -> i64 {
        self.max as i64
    }
}

impl Lease<'_> {
    pub fn conn(&mut self) -> Option<&mut PgConnection> {
        self.conn.as_mut().map(|c| &mut *c.conn)
    }

    /// The statement failed with `e`: the connection goes back to sqlx. If `e` says the
    /// connection was lost, the cached ones go back too: after a server restart one
    /// statement fails, not one per cached connection.
    pub fn failed(self, e: &sqlx::Error) {
        if connection_lost(e) {
            self.cache.forget_cached();
        }
    }

    /// The statement finished cleanly: the connection goes onto the stack.
    pub fn keep(mut self) {
        if let Some(mut c) = self.conn.take() {
            c.used = Instant::now();
            self.cache.idle.lock().push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: u32, acquire_timeout: Duration) -> ConnCache {
        // A pool that never connects: nothing here reaches sqlx unless the stack is
        // empty.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(acquire_timeout)
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        ConnCache::new(pool, max, acquire_timeout, Duration::from_secs(600))
    }

    #[test]
    fn only_connection_failures_count_as_a_lost_connection() {
        let io = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "eof");
        assert!(connection_lost(&sqlx::Error::Io(io)));
        assert!(connection_lost(&sqlx::Error::Protocol(
            "bad message".into()
        )));
        assert!(!connection_lost(&sqlx::Error::PoolTimedOut));
        assert!(!connection_lost(&sqlx::Error::RowNotFound));
        assert!(!connection_lost(&sqlx::Error::ColumnNotFound("x".into())));
    }

    #[tokio::test]
    async fn a_full_set_of_slots_times_out_within_acquire_timeout() {
        let c = cache(1, Duration::from_millis(100));
        // Hold the only slot as a lease would.
        let _held = c.slots.acquire().await.unwrap();
        let t = Instant::now();
        let e = c.acquire().await.err().unwrap();
        assert!(matches!(e, AcquireError::Timeout), "{e:?}");
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_sqlx_error_and_frees_the_slot() {
        let c = cache(1, Duration::from_millis(500));
        for _ in 0..2 {
            // Refused at once, or timed out: never a lease.
            assert!(c.acquire().await.is_err());
        }
        assert_eq!(c.slots.available_permits(), 1);
        assert_eq!(c.in_use(), 0);
    }
}
