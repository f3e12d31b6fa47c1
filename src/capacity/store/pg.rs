//! The PostgreSQL backend: `soakd_runs`, `soakd_levels` (with each level's top statements
//! in `soakd_statements`) and `soakd_baselines`, created by the embedded migrations 1001+.

use super::error::{RunSummary, StoreError};
use crate::capacity::record::{LevelResult, Run, RunRecord, RunStatus};
use crate::drivers::postgres::{migrate, Embedded};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use std::time::Duration;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1001,
        "soakd capacity results",
        include_str!("../../../migrations/results/1001_capacity_results.sql"),
    ),
    (
        1002,
        "soakd capacity baselines",
        include_str!("../../../migrations/results/1002_capacity_baselines.sql"),
    ),
    (
        1003,
        "soakd deploys",
        include_str!("../../../migrations/results/1003_deploys.sql"),
    ),
];

/// Connects (two connections are plenty) and migrates.
pub(super) async fn open(url: &str) -> Result<PgPool, StoreError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?;
    migrate(&pool, Embedded(MIGRATIONS)).await?;
    Ok(pool)
}

fn status_of(finished_at: Option<f64>) -> RunStatus {
    if finished_at.is_some() {
        RunStatus::Complete
    } else {
        RunStatus::Running
    }
}

pub(super) async fn create_run(pool: &PgPool, rec: &RunRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO soakd_runs (id, name, fingerprint, started_at, finished_at, status, record) VALUES ($1, $2, $3, $4, NULL, 'running', $5)",
    )
    .bind(&rec.id)
    .bind(&rec.name)
    .bind(&rec.fingerprint)
    .bind(rec.started_at)
    .bind(Json(rec))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn append_level(pool: &PgPool, l: &LevelResult) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO soakd_levels (run_id, seq, verdict, result) VALUES ($1, $2, $3, $4)")
        .bind(&l.run_id)
        .bind(l.seq as i32)
        .bind(l.verdict.as_str())
        .bind(Json(l))
        .execute(&mut *tx)
        .await?;
    for st in l.postgres.iter().flat_map(|p| &p.top_statements) {
        sqlx::query(
            "INSERT INTO soakd_statements (run_id, seq, queryid, query, calls, mean_ms, rows) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&l.run_id)
        .bind(l.seq as i32)
        .bind(&st.queryid)
        .bind(&st.query)
        .bind(st.calls as i64)
        .bind(st.mean_ms)
        .bind(st.rows as i64)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn finish_run(pool: &PgPool, id: &str, at: f64) -> Result<(), StoreError> {
    let r = sqlx::query(
        "UPDATE soakd_runs SET finished_at = $2, status = 'complete' WHERE id = $1 AND finished_at IS NULL",
    )
    .bind(id)
    .bind(at)
    .execute(pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::Finished(id.into()));
    }
    Ok(())
}

pub(super) async fn list_runs(pool: &PgPool) -> Result<Vec<RunSummary>, StoreError> {
    let rows = sqlx::query(
        "SELECT r.id, r.name, r.started_at, r.finished_at, (SELECT count(*) FROM soakd_levels l WHERE l.run_id = r.id) AS n FROM soakd_runs r ORDER BY r.started_at DESC",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let finished_at: Option<f64> = r.try_get("finished_at")?;
            Ok(RunSummary {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                status: status_of(finished_at),
                started_at: r.try_get("started_at")?,
                finished_at,
                levels: r.try_get::<i64, _>("n")? as usize,
            })
        })
        .collect()
}

pub(super) async fn load_run(pool: &PgPool, id: &str) -> Result<Run, StoreError> {
    let row = sqlx::query("SELECT record, finished_at FROM soakd_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::NoSuchRun(id.to_string()))?;
    let Json(mut record): Json<RunRecord> = row.try_get("record")?;
    record.finished_at = row.try_get("finished_at")?;
    record.status = status_of(record.finished_at);
    let rows = sqlx::query("SELECT result FROM soakd_levels WHERE run_id = $1 ORDER BY seq")
        .bind(id)
        .fetch_all(pool)
        .await?;
    let levels = rows
        .iter()
        .map(|r| r.try_get::<Json<LevelResult>, _>("result").map(|j| j.0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Run { record, levels })
}

pub(super) async fn latest_started(pool: &PgPool, name: &str) -> Result<Option<f64>, StoreError> {
    Ok(
        sqlx::query("SELECT max(started_at) AS t FROM soakd_runs WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await?
            .try_get::<Option<f64>, _>("t")?,
    )
}

/// The id of the first row `sql` (with `$1` = `name`, `$2` = `extra` when given) returns.
async fn one_id(
    pool: &PgPool,
    sql: &str,
    name: &str,
    extra: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let mut q = sqlx::query(sql).bind(name);
    if let Some(e) = extra {
        q = q.bind(e);
    }
    Ok(q.fetch_optional(pool)
        .await?
        .map(|r| r.try_get::<String, _>(0))
        .transpose()?)
}

pub(super) async fn latest_complete(
    pool: &PgPool,
    name: &str,
) -> Result<Option<String>, StoreError> {
    one_id(
        pool,
        "SELECT id FROM soakd_runs WHERE name = $1 AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
        name,
        None,
    )
    .await
}

pub(super) async fn find_resumable(
    pool: &PgPool,
    name: &str,
    fingerprint: &str,
) -> Result<Option<String>, StoreError> {
    one_id(
        pool,
        "SELECT id FROM soakd_runs WHERE name = $1 AND fingerprint = $2 AND finished_at IS NULL ORDER BY started_at DESC LIMIT 1",
        name,
        Some(fingerprint),
    )
    .await
}

pub(super) async fn set_baseline(pool: &PgPool, run: &Run, at: f64) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO soakd_baselines (name, run_id, set_at) VALUES ($1, $2, $3)")
        .bind(&run.record.name)
        .bind(&run.record.id)
        .bind(at)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn baseline(pool: &PgPool, name: &str) -> Result<Option<String>, StoreError> {
    one_id(
        pool,
        "SELECT run_id FROM soakd_baselines WHERE name = $1 ORDER BY set_at DESC LIMIT 1",
        name,
        None,
    )
    .await
}

pub(super) async fn save_deploy(
    pool: &PgPool,
    id: &str,
    target: &str,
    at: f64,
    record: &serde_json::Value,
    keep: usize,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO soakd_deploys (id, target, at, record) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
    )
    .bind(id)
    .bind(target)
    .bind(at)
    .bind(Json(record))
    .execute(pool)
    .await?;
    sqlx::query(
        "DELETE FROM soakd_deploys WHERE id IN (SELECT id FROM soakd_deploys ORDER BY at DESC, id DESC OFFSET $1)",
    )
    .bind(keep as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// The newest `limit` deploys, oldest first.
pub(super) async fn load_deploys(
    pool: &PgPool,
    limit: usize,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let rows = sqlx::query(
        "SELECT record FROM (SELECT record, at, id FROM soakd_deploys ORDER BY at DESC, id DESC LIMIT $1) d ORDER BY at, id",
    )
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let Json(v): Json<serde_json::Value> = r.try_get("record")?;
        out.push(v);
    }
    Ok(out)
}
