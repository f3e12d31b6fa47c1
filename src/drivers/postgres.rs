//! PostgreSQL driver (sqlx `PgPool`): SQL statements with typed parameters, and events
//! into the scenario's buffered writer.
//!
//! Error kinds: `pool_timeout` (no pooled connection within `acquire_timeout`),
//! `connect` (a connection could not be made), `io` (the connection failed during the
//! statement), `sqlstate_<code>` (the server's SQLSTATE, e.g. `sqlstate_53300` too many
//! connections, `sqlstate_40001` serialization failure, `sqlstate_57014` canceled),
//! `protocol`, `buffer_full` (the writer refused an event), `template`, `timeout`.

use super::kind::{self, BUFFER_FULL, CONNECT, IO, POOL_TIMEOUT, PROTOCOL};
use crate::config::{EventOp, Op, OpKind, PostgresTarget, SqlParam, SqlType, SslMode};
use crate::drivers::driver::{Driver, OpError, OpResult};
use crate::metrics::PoolMetrics;
use crate::pg::conn::AcquireError;
use crate::pg::writer::BufferedWriter;
use crate::template::{IterVars, RenderError};
use futures::future::BoxFuture;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow, PgSslMode};
use sqlx::query::Query;
use sqlx::{ConnectOptions, PgPool, Postgres};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Defaults of `acquire_timeout` and `idle_timeout`.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A pool and its metrics: what a postgres target keeps across reloads.
#[derive(Clone)]
pub struct PgClient {
    /// Where SQL operations and the writer's flushes get their connections.
    pub conns: Arc<crate::pg::conn::ConnCache>,
    pub metrics: Arc<PoolMetrics>,
    /// The statistics collector's task, stopped when the last clone goes.
    pub stats: Option<Arc<AbortOnDrop>>,
    /// False until a `bootstrap: true` target has created its schema; statements
    /// wait for it (within their timeout) instead of failing with "no such table".
    pub ready: tokio::sync::watch::Receiver<bool>,
}

pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds a lazy pool: nothing connects until the first operation, so a database that
/// is down at start-up does not stop soakd.
pub fn build_pool(t: &PostgresTarget) -> Result<PgPool, sqlx::Error> {
    let mut opts: PgConnectOptions = t.url.parse()?;
    if let Some(m) = t.sslmode {
        opts = opts.ssl_mode(match m {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Allow => PgSslMode::Allow,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    opts = opts
        .statement_cache_capacity(t.statement_cache.unwrap_or(100))
        .application_name("soakd")
        // sqlx logs every statement slower than 1 s at WARN with its full text; under load
        // that floods the log, and soakd's histograms already show slow statements.
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1))
        .log_statements(log::LevelFilter::Trace);
    Ok(PgPoolOptions::new()
        .max_connections(t.max_connections)
        .min_connections(t.min_connections)
        .acquire_timeout(t.acquire_timeout.map(|d| d.0).unwrap_or(ACQUIRE_TIMEOUT))
        .idle_timeout(Some(t.idle_timeout.map(|d| d.0).unwrap_or(IDLE_TIMEOUT)))
        .max_lifetime(Some(
            t.max_lifetime
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(1800)),
        ))
        // A connection that died while idle (server restart) is found before use.
        .test_before_acquire(true)
        .connect_lazy_with(opts))
}

/// Classifies a statement error.
pub fn classify(e: &sqlx::Error) -> Cow<'static, str> {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) if code.len() == 5 && code.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                Cow::Owned(format!("sqlstate_{}", code.to_ascii_uppercase()))
            }
            _ => Cow::Borrowed("sqlstate_unknown"),
        },
        sqlx::Error::PoolTimedOut => Cow::Borrowed(POOL_TIMEOUT),
        sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => Cow::Borrowed(CONNECT),
        sqlx::Error::Io(_) => Cow::Borrowed(IO),
        sqlx::Error::Protocol(_) => Cow::Borrowed(PROTOCOL),
        _ => Cow::Borrowed(IO),
    }
}

fn op_error(e: sqlx::Error) -> OpError {
    OpError {
        kind: classify(&e),
        detail: e.to_string(),
    }
}

enum PgOp {
    Sql {
        query: String,
        params: Vec<SqlParam>,
        /// A visibility op's write: its first row's columns are bound (`{{write.id}}`).
        bind_row: bool,
    },
    Event(EventOp),
}

pub struct PostgresDriver {
    client: PgClient,
    ops: Vec<PgOp>,
    buffer: Option<Arc<BufferedWriter>>,
}

impl PostgresDriver {
    pub fn new(
        client: PgClient,
        ops: &[Op],
        buffer: Option<Arc<BufferedWriter>>,
    ) -> Result<Self, String> {
        let ops = ops
            .iter()
            .map(|op| match &op.kind {
                OpKind::Sql(s) => Ok(PgOp::Sql {
                    query: s.query.clone(),
                    params: s.params.clone(),
                    bind_row: op.visibility.is_some(),
                }),
                OpKind::Event(e) => {
                    if buffer.is_none() {
                        return Err(format!("op {}: event ops need a buffer", op.name));
                    }
                    Ok(PgOp::Event(e.clone()))
                }
                other => Err(format!(
                    "op {}: a {} op cannot run on a postgres target",
                    op.name,
                    other.type_name()
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(PostgresDriver {
            client,
            ops,
            buffer,
        })
    }

    async fn run_sql(
        &self,
        query: &str,
        params: &[SqlParam],
        bind_row: bool,
        vars: &mut IterVars<'_>,
    ) -> OpResult {
        let rows = self.query(query, params, vars).await?;
        if bind_row {
            if let Some(row) = rows.first() {
                for (k, v) in row_json(row)? {
                    vars.bind(&k, v);
                }
            }
        }
        Ok(())
    }

    /// Op `op`'s statement's first row as column → value (None when it returned no
    /// row): what a visibility poll judges.
    pub async fn fetch_row(
        &self,
        op: usize,
        vars: &mut IterVars<'_>,
    ) -> Result<Option<serde_json::Map<String, serde_json::Value>>, OpError> {
        let Some(PgOp::Sql { query, params, .. }) = self.ops.get(op) else {
            return Err(OpError::new(kind::TEMPLATE, format!("no SQL op #{op}")));
        };
        let rows = self.query(query, params, vars).await?;
        rows.first().map(row_json).transpose()
    }

    async fn query(
        &self,
        query: &str,
        params: &[SqlParam],
        vars: &mut IterVars<'_>,
    ) -> Result<Vec<PgRow>, OpError> {
        // Render and parse parameters before taking a connection.
        let mut values = Vec::with_capacity(params.len());
        for p in params {
            values.push(p.value.render(vars).map_err(tmpl)?);
        }
        let mut q: Query<'_, Postgres, PgArguments> = sqlx::query(query);
        for (p, v) in params.iter().zip(values) {
            q = bind(q, p.ty, v)?;
        }
        if !*self.client.ready.borrow() {
            let mut ready = self.client.ready.clone();
            // The engine's op timeout bounds this wait.
            let _ = ready.wait_for(|r| *r).await;
        }
        let m = &self.client.metrics;
        let t0 = Instant::now();
        let lease = self.client.conns.acquire().await;
        m.acquire.observe(t0.elapsed().as_secs_f64());
        let mut lease = match lease {
            Ok(c) => c,
            Err(AcquireError::Timeout) => {
                m.timeouts.inc();
                return Err(OpError::new(
                    POOL_TIMEOUT,
                    "no pooled connection within acquire_timeout",
                ));
            }
            Err(AcquireError::Sqlx(e)) => {
                let mut err = op_error(e);
                if err.kind == IO || err.kind == PROTOCOL {
                    // Failing while acquiring means the connection could not be made.
                    err.kind = Cow::Borrowed(CONNECT);
                }
                return Err(err);
            }
        };
        let Some(conn) = lease.conn() else {
            return Err(OpError::new(IO, "lent without a connection"));
        };
        let outcome = q.fetch_all(conn).await;
        lease.finish(outcome).map_err(op_error)
    }

    fn run_event(&self, ev: &EventOp, vars: &mut IterVars<'_>) -> OpResult {
        let Some(buffer) = &self.buffer else {
            return Err(OpError::new(kind::TEMPLATE, "no buffer"));
        };
        let user = ev.user.render(vars).map_err(tmpl)?;
        let stat = ev.stat_code.render(vars).map_err(tmpl)?;
        let value_s = ev.value.render(vars).map_err(tmpl)?;
        let value: i64 = value_s.trim().parse().map_err(|_| {
            OpError::new(
                kind::TEMPLATE,
                format!("event value {value_s:?} is not an integer"),
            )
        })?;
        let ns = match &ev.namespace {
            Some(t) => Some(t.render(vars).map_err(tmpl)?),
            None => None,
        };
        buffer
            .accept(&user, &stat, value, ns.as_deref())
            .map(|_| ())
            .map_err(|e| OpError::new(BUFFER_FULL, e.to_string()))
    }
}

/// A row as column → JSON value: booleans, integers, floats, text, uuid and json as
/// themselves, NULL as null. Other types (timestamps, numeric) must be cast to text
/// in the query; the error says which column.
fn row_json(row: &PgRow) -> Result<serde_json::Map<String, serde_json::Value>, OpError> {
    use serde_json::Value as J;
    use sqlx::{Column, Row, TypeInfo, ValueRef};
    let mut out = serde_json::Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_info().name();
        let null = row.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true);
        let v: Result<J, sqlx::Error> = if null {
            Ok(J::Null)
        } else {
            match ty {
                "BOOL" => row.try_get::<bool, _>(i).map(J::from),
                "INT2" => row.try_get::<i16, _>(i).map(J::from),
                "INT4" => row.try_get::<i32, _>(i).map(J::from),
                "INT8" => row.try_get::<i64, _>(i).map(J::from),
                "FLOAT4" => row.try_get::<f32, _>(i).map(|f| J::from(f as f64)),
                "FLOAT8" => row.try_get::<f64, _>(i).map(J::from),
                "JSON" | "JSONB" => row.try_get::<J, _>(i),
                "UUID" => row
                    .try_get::<uuid::Uuid, _>(i)
                    .map(|u| J::String(u.to_string())),
                _ => row.try_get::<String, _>(i).map(J::String),
            }
        };
        let v = v.map_err(|_| {
            OpError::new(
                kind::PROTOCOL,
                format!(
                    "column {:?} has type {ty}, which soakd cannot read: cast it in the query (e.g. {}::text)",
                    col.name(),
                    col.name()
                ),
            )
        })?;
        out.insert(col.name().to_string(), v);
    }
    Ok(out)
}

fn tmpl(e: RenderError) -> OpError {
    OpError::new(kind::TEMPLATE, e.to_string())
}

fn bind<'q>(
    q: Query<'q, Postgres, PgArguments>,
    ty: SqlType,
    v: String,
) -> Result<Query<'q, Postgres, PgArguments>, OpError> {
    let bad = |t: &str| {
        OpError::new(
            kind::TEMPLATE,
            format!("parameter {v:?} is not a valid {t}"),
        )
    };
    Ok(match ty {
        SqlType::Text => q.bind(v),
        SqlType::Int4 => q.bind(v.trim().parse::<i32>().map_err(|_| bad("int4"))?),
        SqlType::Int8 => q.bind(v.trim().parse::<i64>().map_err(|_| bad("int8"))?),
        SqlType::Float8 => q.bind(v.trim().parse::<f64>().map_err(|_| bad("float8"))?),
        SqlType::Bool => q.bind(v.trim().parse::<bool>().map_err(|_| bad("bool"))?),
        SqlType::Uuid => q.bind(uuid::Uuid::parse_str(v.trim()).map_err(|_| bad("uuid"))?),
        SqlType::Jsonb => {
            q.bind(serde_json::from_str::<serde_json::Value>(&v).map_err(|_| bad("jsonb"))?)
        }
    })
}

impl Driver for PostgresDriver {
    fn execute<'a, 'b: 'a>(
        &'a self,
        op: usize,
        vars: &'a mut IterVars<'b>,
    ) -> BoxFuture<'a, OpResult> {
        Box::pin(async move {
            match self.ops.get(op) {
                Some(PgOp::Sql {
                    query,
                    params,
                    bind_row,
                }) => self.run_sql(query, params, *bind_row, vars).await,
                Some(PgOp::Event(ev)) => self.run_event(ev, vars),
                None => Err(OpError::new(kind::TEMPLATE, format!("no op #{op}"))),
            }
        })
    }
}

/// Migrations compiled into the binary: (version, description, SQL).
#[derive(Debug, Clone, Copy)]
pub struct Embedded(pub &'static [(i64, &'static str, &'static str)]);

/// The embedded migrations behind `bootstrap: true`.
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "user_goal_progress",
    include_str!("../../migrations/0001_user_goal_progress.sql"),
)];

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> BoxFuture<'s, Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(v, d, sql)| {
                    sqlx::migrate::Migration::new(
                        *v,
                        Cow::Borrowed(*d),
                        sqlx::migrate::MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Runs `set` on `pool`. Two sets share the database's migration table (the seed
/// schema 1..999, the results store 1001..), so each ignores the other's versions.
pub async fn migrate(pool: &PgPool, set: Embedded) -> Result<(), sqlx::Error> {
    let mut migrator = sqlx::migrate::Migrator::new(set)
        .await
        .map_err(|e| sqlx::Error::Migrate(Box::new(e)))?;
    migrator.set_ignore_missing(true);
    migrator
        .run(pool)
        .await
        .map_err(|e| sqlx::Error::Migrate(Box::new(e)))
}

/// Creates the seed's schema (idempotent) and, where allowed, pg_stat_statements.
pub async fn bootstrap(pool: &PgPool) -> Result<(), sqlx::Error> {
    migrate(pool, Embedded(MIGRATIONS)).await?;
    // Needs the library preloaded and enough privilege; the statistics collector
    // simply skips statements without it.
    if let Err(e) = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(pool)
        .await
    {
        tracing::info!("pg_stat_statements not created: {e}");
    }
    Ok(())
}

/// Runs in the background per target: waits until the database answers (logging
/// failures with backoff), then bootstraps if asked. soakd keeps running meanwhile.
pub async fn connect_watch(
    target: String,
    pool: PgPool,
    do_bootstrap: bool,
    ready: tokio::sync::watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let mut failures = 0u32;
    loop {
        match pool.acquire().await {
            Ok(conn) => {
                drop(conn);
                if failures > 0 {
                    tracing::info!(target = %target, "database reachable after {failures} failed attempt(s)");
                } else {
                    tracing::info!(target = %target, "database reachable");
                }
                if do_bootstrap {
                    match bootstrap(&pool).await {
                        Ok(()) => {
                            tracing::info!(target = %target, "schema bootstrapped");
                            let _ = ready.send(true);
                        }
                        Err(e) => {
                            tracing::error!(target = %target, "bootstrap failed: {e}");
                            failures += 1;
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            continue;
                        }
                    }
                }
                return;
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(target = %target, attempts = failures, "database not reachable yet: {e}");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
