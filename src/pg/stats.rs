//! The PostgreSQL statistics collector: postgres_exporter's series (same names and
//! labels, so the same dashboards and rules work with either), gathered on its own
//! connection — never the load pool, so a saturated pool cannot blind it.
//!
//! It queries every `stats.interval` with a per-statement timeout and keeps the last
//! complete snapshot; `/metrics` serves that snapshot, so a scrape never waits on the
//! database. When the server is down the snapshot is just `pg_up 0`, the error counter
//! goes up, and the next pass reconnects.
//!
//! Differences from postgres_exporter: every series is exported as a gauge except the
//! `*_total` ones (counters), so `promtool check metrics` stays clean; the per-table
//! series cover the collector's database, the busiest `max_tables` tables.

use crate::config::PgStatsConfig;
use crate::metrics::pg::{Sample, Snapshot, SERIES};
use crate::metrics::Metrics;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{ConnectOptions, Connection, Row};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const DB_COLUMNS: [&str; 14] = [
    "numbackends",
    "xact_commit",
    "xact_rollback",
    "blks_read",
    "blks_hit",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "conflicts",
    "temp_files",
    "temp_bytes",
    "deadlocks",
];

const TABLE_COLUMNS: [&str; 10] = [
    "seq_scan",
    "idx_scan",
    "n_tup_ins",
    "n_tup_upd",
    "n_tup_del",
    "n_live_tup",
    "n_dead_tup",
    "last_autovacuum",
    "last_autoanalyze",
    "autovacuum_count",
];

const BGWRITER_COLUMNS: [&str; 10] = [
    "checkpoints_timed",
    "checkpoints_req",
    "checkpoint_write_time",
    "checkpoint_sync_time",
    "buffers_checkpoint",
    "buffers_clean",
    "maxwritten_clean",
    "buffers_backend",
    "buffers_backend_fsync",
    "buffers_alloc",
];

/// Interns a series name from the SERIES table so samples can hold `&'static str`.
fn series(name: &str) -> &'static str {
    SERIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, _)| *n)
        .unwrap_or("pg_unknown")
}

fn f(row: &PgRow, i: usize) -> f64 {
    row.try_get::<Option<f64>, _>(i)
        .ok()
        .flatten()
        .unwrap_or(0.0)
}

fn s(row: &PgRow, i: usize) -> String {
    row.try_get::<Option<String>, _>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The current database's cumulative statistics at one moment, as a capacity level
/// differences them over its window: transactions, block hits and reads, dead tuples, and
/// every statement pg_stat_statements knows (with its text, which the report shows).
#[derive(Debug, Default, Clone)]
pub struct WindowStats {
    pub xacts: i64,
    pub blocks_hit: i64,
    pub blocks_read: i64,
    pub dead_tuples: i64,
    /// By queryid: (text, calls, total milliseconds, rows).
    pub statements: BTreeMap<String, StatementTotals>,
    /// Why something above is missing (no pg_stat_statements, say).
    pub notes: Vec<String>,
}

/// One statement's totals in pg_stat_statements.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatementTotals {
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub rows: i64,
}

/// Reads [`WindowStats`] of the connection's database.
pub async fn window_stats(conn: &mut PgConnection) -> Result<WindowStats, sqlx::Error> {
    let mut s = WindowStats::default();
    let r = sqlx::query(
        "SELECT (xact_commit + xact_rollback)::bigint AS x, blks_hit::bigint AS h, blks_read::bigint AS r FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await?;
    s.xacts = r.try_get("x")?;
    s.blocks_hit = r.try_get("h")?;
    s.blocks_read = r.try_get("r")?;
    s.dead_tuples = sqlx::query_scalar::<_, i64>(
        "SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables",
    )
    .fetch_one(&mut *conn)
    .await?;
    match sqlx::query(
        "SELECT queryid::text AS id, left(regexp_replace(query, '\\s+', ' ', 'g'), 200) AS q, calls::bigint AS calls, total_exec_time AS t, rows::bigint AS rows FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await
    {
        Ok(rows) => {
            for r in rows {
                s.statements.insert(
                    r.try_get("id")?,
                    StatementTotals {
                        query: r.try_get("q")?,
                        calls: r.try_get("calls")?,
                        total_ms: r.try_get("t")?,
                        rows: r.try_get("rows")?,
                    },
                );
            }
        }
        Err(e) => s
            .notes
            .push(format!("top statements unavailable (pg_stat_statements: {e})")),
    }
    Ok(s)
}

/// The current database's connections by state (`background` for those without one),
/// the reading connection left out.
pub async fn connections_by_state(
    conn: &mut PgConnection,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let mut by_state = BTreeMap::new();
    for r in sqlx::query(
        "SELECT coalesce(state, 'background') AS s, count(*)::bigint AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        by_state.insert(r.try_get::<String, _>("s")?, r.try_get::<i64, _>("n")?);
    }
    Ok(by_state)
}

/// The server's `max_connections`.
pub async fn max_connections(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    Ok(sqlx::query_scalar::<_, String>(
        "SELECT setting FROM pg_settings WHERE name = 'max_connections'",
    )
    .fetch_optional(&mut *conn)
    .await?
    .and_then(|s| s.parse().ok()))
}

/// One full pass over the statistics views.
pub async fn collect_once(
    conn: &mut PgConnection,
    cfg: &PgStatsConfig,
) -> Result<Vec<Sample>, sqlx::Error> {
    let mut out = vec![Sample {
        name: "pg_up",
        labels: vec![],
        value: 1.0,
    }];
    database(conn, &mut out).await?;
    activity(conn, &mut out).await?;
    settings(conn, &mut out).await?;
    locks(conn, &mut out).await?;
    sizes(conn, &mut out).await?;
    tables(conn, cfg, &mut out).await?;
    bgwriter(conn, &mut out).await?;
    statements(conn, cfg, &mut out).await?;
    replication(conn, &mut out).await?;
    Ok(out)
}

/// Per-database counters (`pg_stat_database`).
async fn database(conn: &mut PgConnection, out: &mut Vec<Sample>) -> Result<(), sqlx::Error> {
    let cols: Vec<String> = DB_COLUMNS.iter().map(|c| format!("{c}::float8")).collect();
    let q = format!(
        "SELECT datid::text, datname::text, {} FROM pg_stat_database WHERE datname IS NOT NULL",
        cols.join(", ")
    );
    for row in sqlx::query(&q).fetch_all(&mut *conn).await? {
        let labels = vec![("datid", s(&row, 0)), ("datname", s(&row, 1))];
        for (i, c) in DB_COLUMNS.iter().enumerate() {
            out.push(Sample {
                name: series(&format!("pg_stat_database_{c}")),
                labels: labels.clone(),
                value: f(&row, i + 2),
            });
        }
    }
    Ok(())
}

/// Connections by database and state, and the longest open transaction (`pg_stat_activity`).
async fn activity(conn: &mut PgConnection, out: &mut Vec<Sample>) -> Result<(), sqlx::Error> {
    let q = "SELECT pg_database.datname::text, tmp.state,
                    COALESCE(tmp2.count, 0)::float8, COALESCE(tmp2.max_tx_duration, 0)::float8
             FROM (VALUES ('active'), ('idle'), ('idle in transaction'),
                          ('idle in transaction (aborted)'), ('fastpath function call'), ('disabled')) AS tmp(state)
             CROSS JOIN pg_database
             LEFT JOIN (SELECT datname, state, count(*) AS count,
                               MAX(EXTRACT(EPOCH FROM now() - xact_start))::float8 AS max_tx_duration
                        FROM pg_stat_activity GROUP BY datname, state) AS tmp2
               ON tmp.state = tmp2.state AND pg_database.datname = tmp2.datname";
    for row in sqlx::query(q).fetch_all(&mut *conn).await? {
        let labels = vec![("datname", s(&row, 0)), ("state", s(&row, 1))];
        out.push(Sample {
            name: "pg_stat_activity_count",
            labels: labels.clone(),
            value: f(&row, 2),
        });
        out.push(Sample {
            name: "pg_stat_activity_max_tx_duration",
            labels,
            value: f(&row, 3),
        });
    }
    Ok(())
}

/// Settings, converted to base units as postgres_exporter does.
async fn settings(conn: &mut PgConnection, out: &mut Vec<Sample>) -> Result<(), sqlx::Error> {
    // Settings, converted to base units as postgres_exporter does.
    let q = "SELECT name, setting::float8, COALESCE(unit, '') FROM pg_settings
             WHERE name IN ('max_connections', 'superuser_reserved_connections', 'shared_buffers',
                            'work_mem', 'max_wal_size', 'effective_cache_size',
                            'checkpoint_timeout', 'autovacuum_naptime')";
    for row in sqlx::query(q).fetch_all(&mut *conn).await? {
        let (name, v, unit) = (s(&row, 0), f(&row, 1), s(&row, 2));
        let (suffix, mult) = match unit.as_str() {
            "8kB" => ("_bytes", 8192.0),
            "kB" => ("_bytes", 1024.0),
            "MB" => ("_bytes", 1024.0 * 1024.0),
            "s" => ("_seconds", 1.0),
            "ms" => ("_seconds", 0.001),
            _ => ("", 1.0),
        };
        let full = format!("pg_settings_{name}{suffix}");
        let n = series(&full);
        if n != "pg_unknown" {
            out.push(Sample {
                name: n,
                labels: vec![],
                value: v * mult,
            });
        }
    }
    Ok(())
}

/// Locks by database and mode (`pg_locks`).
async fn locks(conn: &mut PgConnection, out: &mut Vec<Sample>) -> Result<(), sqlx::Error> {
    let q = "SELECT pg_database.datname::text, tmp.mode, COALESCE(count, 0)::float8
             FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'),
                          ('shareupdateexclusivelock'), ('sharelock'), ('sharerowexclusivelock'),
                          ('exclusivelock'), ('accessexclusivelock'), ('sireadlock')) AS tmp(mode)
             CROSS JOIN pg_database
             LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count
                        FROM pg_locks WHERE database IS NOT NULL GROUP BY database, lower(mode)) AS tmp2
               ON tmp.mode = tmp2.mode AND pg_database.oid = tmp2.database";
    for row in sqlx::query(q).fetch_all(&mut *conn).await? {
        out.push(Sample {
            name: "pg_locks_count",
            labels: vec![("datname", s(&row, 0)), ("mode", s(&row, 1))],
            value: f(&row, 2),
        });
    }
    Ok(())
}

/// Database sizes.
async fn sizes(conn: &mut PgConnection, out: &mut Vec<Sample>) -> Result<(), sqlx::Error> {
    let q = "SELECT datname::text, pg_database_size(datname)::float8 FROM pg_database WHERE datallowconn";
    for row in sqlx::query(q).fetch_all(&mut *conn).await? {
        out.push(Sample {
            name: "pg_database_size_bytes",
            labels: vec![("datname", s(&row, 0))],
            value: f(&row, 1),
        });
    }
    Ok(())
}

/// The busiest `max_tables` tables of the collector's database (`pg_stat_user_tables`).
async fn tables(
    conn: &mut PgConnection,
    cfg: &PgStatsConfig,
    out: &mut Vec<Sample>,
) -> Result<(), sqlx::Error> {
    let q = "SELECT current_database()::text, schemaname::text, relname::text,
                    seq_scan::float8, COALESCE(idx_scan, 0)::float8, n_tup_ins::float8, n_tup_upd::float8,
                    n_tup_del::float8, n_live_tup::float8, n_dead_tup::float8,
                    COALESCE(EXTRACT(EPOCH FROM last_autovacuum), 0)::float8,
                    COALESCE(EXTRACT(EPOCH FROM last_autoanalyze), 0)::float8,
                    autovacuum_count::float8
             FROM pg_stat_user_tables
             ORDER BY n_tup_ins + n_tup_upd + n_tup_del + seq_scan + COALESCE(idx_scan, 0) DESC, relname
             LIMIT $1";
    for row in sqlx::query(q)
        .bind(cfg.max_tables as i64)
        .fetch_all(&mut *conn)
        .await?
    {
        let labels = vec![
            ("datname", s(&row, 0)),
            ("schemaname", s(&row, 1)),
            ("relname", s(&row, 2)),
        ];
        for (i, c) in TABLE_COLUMNS.iter().enumerate() {
            out.push(Sample {
                name: series(&format!("pg_stat_user_tables_{c}")),
                labels: labels.clone(),
                value: f(&row, i + 3),
            });
        }
    }
    Ok(())
}

/// The background writer (`pg_stat_bgwriter`); left out where the view is absent (moved in PostgreSQL 17).
async fn bgwriter(conn: &mut PgConnection, out: &mut Vec<Sample>) -> Result<(), sqlx::Error> {
    // Optional sections: absent views (pg_stat_bgwriter moved in PostgreSQL 17) or a
    // missing extension leave their series out rather than marking the server down.
    let cols: Vec<String> = BGWRITER_COLUMNS
        .iter()
        .map(|c| format!("{c}::float8"))
        .collect();
    let q = format!("SELECT {} FROM pg_stat_bgwriter", cols.join(", "));
    match sqlx::query(&q).fetch_optional(&mut *conn).await {
        Ok(Some(row)) => {
            for (i, c) in BGWRITER_COLUMNS.iter().enumerate() {
                out.push(Sample {
                    name: series(&format!("pg_stat_bgwriter_{c}_total")),
                    labels: vec![],
                    value: f(&row, i),
                });
            }
        }
        Ok(None) => {}
        Err(sqlx::Error::Database(e)) => tracing::debug!("pg_stat_bgwriter skipped: {e}"),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// The top `top_statements` statements by time (`pg_stat_statements`), when the extension is loaded.
async fn statements(
    conn: &mut PgConnection,
    cfg: &PgStatsConfig,
    out: &mut Vec<Sample>,
) -> Result<(), sqlx::Error> {
    let has_pss: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if has_pss && cfg.top_statements > 0 {
        let q = "SELECT pg_get_userbyid(s.userid)::text, d.datname::text, s.queryid::text,
                        s.calls::float8, (s.total_exec_time / 1000.0)::float8, s.rows::float8
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                 WHERE s.queryid IS NOT NULL
                 ORDER BY s.total_exec_time DESC LIMIT $1";
        match sqlx::query(q)
            .bind(cfg.top_statements as i64)
            .fetch_all(&mut *conn)
            .await
        {
            Ok(rows) => {
                for row in rows {
                    let labels = vec![
                        ("user", s(&row, 0)),
                        ("datname", s(&row, 1)),
                        ("queryid", s(&row, 2)),
                    ];
                    for (i, n) in [
                        "pg_stat_statements_calls_total",
                        "pg_stat_statements_seconds_total",
                        "pg_stat_statements_rows_total",
                    ]
                    .iter()
                    .enumerate()
                    {
                        out.push(Sample {
                            name: series(n),
                            labels: labels.clone(),
                            value: f(&row, i + 3),
                        });
                    }
                }
            }
            // Present but not preloaded: "must be loaded via shared_preload_libraries".
            Err(sqlx::Error::Database(e)) => tracing::debug!("pg_stat_statements skipped: {e}"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the server is a replica, and its replay lag.
async fn replication(conn: &mut PgConnection, out: &mut Vec<Sample>) -> Result<(), sqlx::Error> {
    let q = "SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END::float8,
                    CASE WHEN NOT pg_is_in_recovery() THEN 0
                         ELSE GREATEST(0, EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())) END::float8";
    let row = sqlx::query(q).fetch_one(&mut *conn).await?;
    out.push(Sample {
        name: "pg_replication_is_replica",
        labels: vec![],
        value: f(&row, 0),
    });
    out.push(Sample {
        name: "pg_replication_lag_seconds",
        labels: vec![],
        value: f(&row, 1),
    });
    Ok(())
}

/// Runs the collecting loop into `snapshot` (registered once, by `metrics::pg::PgFamily`) until the returned handle is aborted (when the
/// target goes away).
pub fn spawn(
    target: String,
    url: &str,
    cfg: PgStatsConfig,
    metrics: &Metrics,
    snapshot: Arc<Snapshot>,
) -> Result<tokio::task::JoinHandle<()>, sqlx::Error> {
    let opts: PgConnectOptions = url
        .parse::<PgConnectOptions>()?
        .application_name("soakd-stats");
    let timeout_ms = cfg.query_timeout.0.as_millis();
    let opts = opts
        .options([("statement_timeout", timeout_ms.to_string())])
        .log_slow_statements(log::LevelFilter::Off, Duration::from_secs(1))
        .log_statements(log::LevelFilter::Trace);
    let errors = metrics.pg.errors(&target);
    snapshot.set(vec![Sample {
        name: "pg_up",
        labels: vec![],
        value: 0.0,
    }]);
    Ok(tokio::spawn(async move {
        let mut conn: Option<PgConnection> = None;
        let mut ticker = tokio::time::interval(cfg.interval.0);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let budget = cfg.query_timeout.0 * 4 + Duration::from_secs(1);
        loop {
            ticker.tick().await;
            if conn.is_none() {
                match tokio::time::timeout(
                    cfg.query_timeout.0 + Duration::from_secs(2),
                    opts.connect(),
                )
                .await
                {
                    Ok(Ok(c)) => conn = Some(c),
                    Ok(Err(e)) => {
                        errors.inc();
                        tracing::debug!(target = %target, "stats connection failed: {e}");
                    }
                    Err(_) => {
                        errors.inc();
                        tracing::debug!(target = %target, "stats connection timed out");
                    }
                }
            }
            let result = match conn.as_mut() {
                Some(c) => match tokio::time::timeout(budget, collect_once(c, &cfg)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err("collection timed out".to_string()),
                },
                None => Err("not connected".into()),
            };
            match result {
                Ok(samples) => snapshot.set(samples),
                Err(e) => {
                    if conn.is_some() {
                        errors.inc();
                        tracing::debug!(target = %target, "stats collection failed: {e}");
                        if let Some(c) = conn.take() {
                            let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
                        }
                    }
                    snapshot.set(vec![Sample {
                        name: "pg_up",
                        labels: vec![],
                        value: 0.0,
                    }]);
                }
            }
        }
    }))
}

/// One read of what the soak judges of a postgres target: for each table named that
/// exists (the first [`MAX_TABLES`](crate::config::observe::MAX_TABLES)), its bytes per
/// live tuple, dead-tuple ratio and autovacuum runs; and of the server, its connections
/// to this database, WAL written, the age of the oldest transaction still held open (the
/// one that keeps vacuum from cleaning) and the replication lag where there is
/// replication. Each value is `(resource, value, counter)`.
pub async fn soak_reading(
    conn: &mut PgConnection,
    tables: &[String],
) -> Result<Vec<(String, f64, bool)>, sqlx::Error> {
    let mut out = Vec::new();
    if !tables.is_empty() {
        let q = "SELECT relname::text, pg_relation_size(relid)::float8, n_live_tup::float8,
                        n_dead_tup::float8, autovacuum_count::float8
                 FROM pg_stat_user_tables WHERE relname = ANY($1)
                 ORDER BY array_position($1, relname::text), schemaname LIMIT $2";
        let mut seen: Vec<String> = Vec::new();
        for row in sqlx::query(q)
            .bind(tables)
            .bind(crate::config::observe::MAX_TABLES as i64)
            .fetch_all(&mut *conn)
            .await?
        {
            let name = s(&row, 0);
            // A name in two schemas: the first (by schema name) only.
            if seen.contains(&name) {
                continue;
            }
            seen.push(name.clone());
            let (bytes, live, dead) = (f(&row, 1), f(&row, 2), f(&row, 3));
            if live > 0.0 {
                out.push((format!("{name}.bytes_per_live_tuple"), bytes / live, false));
            }
            if live + dead > 0.0 {
                out.push((
                    format!("{name}.dead_tuple_ratio"),
                    dead / (live + dead),
                    false,
                ));
            }
            out.push((format!("{name}.autovacuum_runs"), f(&row, 4), true));
        }
    }
    let q = "SELECT (SELECT numbackends::float8 FROM pg_stat_database WHERE datname = current_database()),
                    CASE WHEN pg_is_in_recovery() THEN NULL
                         ELSE (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8 END,
                    (SELECT max(greatest(age(backend_xid), age(backend_xmin)))::float8
                       FROM pg_stat_activity WHERE pid <> pg_backend_pid()),
                    CASE WHEN pg_is_in_recovery()
                         THEN greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::float8
                         ELSE (SELECT max(extract(epoch FROM replay_lag))::float8 FROM pg_stat_replication) END";
    let row = sqlx::query(q).fetch_one(&mut *conn).await?;
    let opt = |i: usize| row.try_get::<Option<f64>, _>(i).ok().flatten();
    if let Some(v) = opt(0) {
        // The soak's own reading connection is one of them.
        out.push(("connections".into(), (v - 1.0).max(0.0), false));
    }
    if let Some(v) = opt(1) {
        out.push(("wal_bytes".into(), v, true));
    }
    // No transaction open: nothing holds vacuum back.
    out.push(("oldest_xid_age".into(), opt(2).unwrap_or(0.0), false));
    if let Some(v) = opt(3) {
        out.push(("replication_lag_seconds".into(), v, false));
    }
    Ok(out)
}
