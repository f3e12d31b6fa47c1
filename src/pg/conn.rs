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
//!
//! A statement abandoned mid-flight (the op timeout dropped it) is cancelled on the
//! server, as applications' drivers do on a context timeout: its connection is held
//! until `pg_cancel_backend` has run over one extra connection per target
//! (`application_name` `soakd-cancel`), then handed back to sqlx — never to another
//! statement first, so a late cancel cannot hit the wrong one. At most
//! [`MAX_PENDING_CANCELS`] wait; beyond that the server finishes the statement.

use crate::metrics::PoolStats;
use parking_lot::Mutex;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A cached connection goes back to sqlx at least this often (sqlx then applies
/// `max_lifetime` and `idle_timeout`).
pub const KEEP_FOR: Duration = Duration::from_secs(30);
/// Abandoned statements waiting for their cancel, per target.
pub const MAX_PENDING_CANCELS: usize = 64;
/// Bounds connecting and running one cancel.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

struct Cached {
    conn: PoolConnection<Postgres>,
    /// The server process behind it, for `pg_cancel_backend`.
    pid: i32,
    /// When it was taken from sqlx.
    taken: Instant,
    /// When it last finished a statement.
    used: Instant,
}

pub struct ConnCache {
    pool: PgPool,
    canceller: Arc<Canceller>,
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

/// A lent connection and its slot. [`Lease::finish`] puts it onto the stack (the
/// statement succeeded) or back to sqlx (it failed); dropped before that, its statement
/// was abandoned mid-flight and is cancelled first.
pub struct Lease<'a> {
    cache: &'a ConnCache,
    conn: Option<Cached>,
    _slot: SemaphorePermit<'a>,
}

/// Cancels abandoned statements over its own connection.
struct Canceller {
    opts: PgConnectOptions,
    /// Cancels the server confirmed.
    cancelled: AtomicU64,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    pending: Arc<Semaphore>,
}

impl ConnCache {
    pub fn new(
        pool: PgPool,
        max: u32,
        acquire_timeout: Duration,
        idle_timeout: Duration,
    ) -> ConnCache {
        let opts = (*pool.connect_options())
            .clone()
            .application_name("soakd-cancel");
        ConnCache {
            pool,
            canceller: Arc::new(Canceller {
                opts,
                cancelled: AtomicU64::new(0),
                conn: tokio::sync::Mutex::new(None),
                pending: Arc::new(Semaphore::new(MAX_PENDING_CANCELS)),
            }),
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
                let mut conn = tokio::time::timeout(left, self.pool.acquire())
                    .await
                    .map_err(|_| AcquireError::Timeout)?
                    .map_err(|e| match e {
                        sqlx::Error::PoolTimedOut => AcquireError::Timeout,
                        e => AcquireError::Sqlx(e),
                    })?;
                // Once per connection taken from sqlx (at most every KEEP_FOR).
                let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                    .fetch_one(&mut *conn)
                    .await?;
                Cached {
                    conn,
                    pid,
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

    /// Hands every cached connection back to sqlx, which tests each before lending it
    /// again and closes the dead ones.
    fn forget_cached(&self) {
        let cached = std::mem::take(&mut *self.idle.lock());
        drop(cached);
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
    fn statements_cancelled(&self) -> u64 {
        self.canceller.cancelled.load(Ordering::Relaxed)
    }
}

impl Canceller {
    /// Cancels what `c` is running, then hands it back to sqlx; without a runtime or
    /// with [`MAX_PENDING_CANCELS`] waiting, hands it back at once.
    fn abandon(self: &Arc<Self>, c: Cached) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(permit) = self.pending.clone().try_acquire_owned() else {
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            me.cancel(c.pid).await;
            drop(c);
            drop(permit);
        });
    }

    async fn cancel(&self, pid: i32) {
        let mut conn = self.conn.lock().await;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                match tokio::time::timeout(CANCEL_TIMEOUT, PgConnection::connect_with(&self.opts))
                    .await
                {
                    Ok(Ok(c)) => conn.insert(c),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "cannot connect to cancel a statement");
                        return;
                    }
                    Err(_) => return,
                }
            }
        };
        let done = tokio::time::timeout(
            CANCEL_TIMEOUT,
            sqlx::query_scalar::<_, bool>("SELECT pg_cancel_backend($1)")
                .bind(pid)
                .fetch_one(&mut *c),
        )
        .await;
        match done {
            Ok(Ok(true)) => {
                self.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(false)) => {}
            // Reconnect next time.
            _ => *conn = None,
        }
    }
}

impl Lease<'_> {
    pub fn conn(&mut self) -> Option<&mut PgConnection> {
        self.conn.as_mut().map(|c| &mut *c.conn)
    }

    /// The statement's outcome decides where the connection goes: onto the stack after
    /// a success; back to sqlx (which tests it) after a failure — with every cached one
    /// when the failure says the connection was lost, so a server restart costs one
    /// failed statement, not one per cached connection.
    pub fn finish<T>(mut self, outcome: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        let Some(mut c) = self.conn.take() else {
            return outcome;
        };
        match &outcome {
            Ok(_) => {
                c.used = Instant::now();
                self.cache.idle.lock().push(c);
            }
            Err(e) => {
                drop(c);
                if connection_lost(e) {
                    self.cache.forget_cached();
                }
            }
        }
        outcome
    }
}

impl Drop for Lease<'_> {
    /// Not finished: the op was dropped mid-statement (its timeout).
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.cache.canceller.abandon(c);
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
