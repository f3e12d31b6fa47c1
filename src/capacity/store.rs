//! The results store: capacity runs and their levels, in PostgreSQL (tables created by
//! embedded migrations) or in append-only JSONL files, one per run.
//!
//! Nothing is overwritten: a run is created once, levels are inserted once (a second
//! insert of the same position fails), and only a run's end is recorded later.

use crate::capacity::record::{LevelResult, Run, RunRecord, RunStatus};
use crate::config::search::ResultsConfig;
use crate::drivers::postgres::{migrate, Embedded};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1001,
        "soakd capacity results",
        include_str!("../../migrations/results/1001_capacity_results.sql"),
    ),
    (
        1002,
        "soakd capacity baselines",
        include_str!("../../migrations/results/1002_capacity_baselines.sql"),
    ),
];

/// The JSONL store's baselines, one line per `--set-baseline` (not `.jsonl`: that is a run).
const BASELINES_FILE: &str = "baselines.ndjson";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("results directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("results database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{path}:{line}: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no run {0:?}")]
    NoSuchRun(String),
    #[error("no runs stored yet")]
    NoRuns,
    #[error("run {0:?} is already finished")]
    Finished(String),
    #[error("run {0:?} has not finished: only a finished run can be a baseline")]
    NotFinished(String),
    #[error("no baseline set for search {0:?} (soakd report --set-baseline ID)")]
    NoBaseline(String),
    #[error("`baseline` needs the other run to name the search: compare a run id or `latest` against it")]
    BaselineAgainstBaseline,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One line of a JSONL run file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Run(Box<RunRecord>),
    Level(Box<LevelResult>),
    Finished { at: f64 },
}

/// One line of the JSONL store's baselines file.
#[derive(Serialize, Deserialize)]
struct BaselineLine {
    name: String,
    run_id: String,
    set_at: f64,
}

/// A run in a listing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    pub id: String,
    pub name: String,
    pub status: RunStatus,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub levels: usize,
}

#[derive(Clone)]
pub enum Store {
    Jsonl(PathBuf),
    Postgres(PgPool),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Store::Jsonl(p) => write!(f, "jsonl:{}", p.display()),
            Store::Postgres(_) => f.write_str("postgres"),
        }
    }
}

impl Store {
    /// Opens the configured store: creates the directory, or connects and migrates.
    pub async fn open(cfg: &ResultsConfig) -> Result<Store, StoreError> {
        match cfg {
            ResultsConfig::Dir(d) => {
                std::fs::create_dir_all(d).map_err(io(d))?;
                Ok(Store::Jsonl(d.clone()))
            }
            ResultsConfig::Postgres(url) => {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(&url.0)
                    .await?;
                migrate(&pool, Embedded(MIGRATIONS)).await?;
                Ok(Store::Postgres(pool))
            }
        }
    }

    fn file(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.jsonl"))
    }

    /// Appends `line` as one JSON line (`create`: the file may not exist yet).
    fn append<T: Serialize>(path: &Path, line: &T, create: bool) -> Result<(), StoreError> {
        let mut text = serde_json::to_string(line).map_err(|e| StoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        text.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(create)
            .open(path)
            .map_err(io(path))?;
        // One write per line: a crash leaves at most a torn last line, which
        // `read_file` skips.
        f.write_all(text.as_bytes()).map_err(io(path))?;
        f.sync_data().map_err(io(path))
    }

    pub async fn create_run(&self, rec: &RunRecord) -> Result<(), StoreError> {
        match self {
            Store::Jsonl(dir) => {
                let path = Self::file(dir, &rec.id);
                // create_new: an existing run file is never replaced.
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io(&path))?;
                Self::append(&path, &Line::Run(Box::new(rec.clone())), false)
            }
            Store::Postgres(pool) => {
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
        }
    }

    pub async fn append_level(&self, l: &LevelResult) -> Result<(), StoreError> {
        match self {
            Store::Jsonl(dir) => {
                let path = Self::file(dir, &l.run_id);
                let run = Self::read_file(&path)?;
                if run.record.status == RunStatus::Complete {
                    return Err(StoreError::Finished(l.run_id.clone()));
                }
                if run.levels.iter().any(|x| x.seq == l.seq) {
                    return Err(StoreError::Corrupt {
                        path,
                        line: run.levels.len() + 1,
                        message: format!("level {} is already stored", l.seq),
                    });
                }
                Self::append(&path, &Line::Level(Box::new(l.clone())), false)
            }
            Store::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO soakd_levels (run_id, seq, verdict, result) VALUES ($1, $2, $3, $4)",
                )
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
        }
    }

    pub async fn finish_run(&self, id: &str, at: f64) -> Result<(), StoreError> {
        match self {
            Store::Jsonl(dir) => {
                let path = Self::file(dir, id);
                let run = Self::read_file(&path)?;
                if run.record.status == RunStatus::Complete {
                    return Err(StoreError::Finished(id.into()));
                }
                Self::append(&path, &Line::Finished { at }, false)
            }
            Store::Postgres(pool) => {
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
        }
    }

    /// Every JSON line of `path`, in order. A torn last line (a crash mid-write) is
    /// skipped; anything else that does not parse is damage.
    fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, StoreError> {
        let f = std::fs::File::open(path).map_err(io(path))?;
        let lines: Vec<String> = std::io::BufReader::new(f)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(io(path))?;
        let n = lines.len();
        let mut out = Vec::with_capacity(n);
        for (i, text) in lines.iter().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(text) {
                Ok(l) => out.push(l),
                Err(_) if i + 1 == n => break,
                Err(e) => {
                    return Err(StoreError::Corrupt {
                        path: path.into(),
                        line: i + 1,
                        message: e.to_string(),
                    })
                }
            }
        }
        Ok(out)
    }

    fn read_file(path: &Path) -> Result<Run, StoreError> {
        let mut record: Option<RunRecord> = None;
        let mut levels = Vec::new();
        for line in Self::read_lines::<Line>(path)? {
            match line {
                Line::Run(r) => record = Some(*r),
                Line::Level(l) => levels.push(*l),
                Line::Finished { at } => {
                    if let Some(r) = record.as_mut() {
                        r.finished_at = Some(at);
                        r.status = RunStatus::Complete;
                    }
                }
            }
        }
        let record = record.ok_or_else(|| StoreError::Corrupt {
            path: path.into(),
            line: 1,
            message: "no run header".into(),
        })?;
        Ok(Run { record, levels })
    }

    fn jsonl_runs(dir: &Path) -> Result<Vec<Run>, StoreError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(dir)(e)),
        };
        for e in rd {
            let p = e.map_err(io(dir))?.path();
            if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(Self::read_file(&p)?);
            }
        }
        out.sort_by(|a, b| b.record.started_at.total_cmp(&a.record.started_at));
        Ok(out)
    }

    /// Every run, newest first.
    pub async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        match self {
            Store::Jsonl(dir) => Ok(Self::jsonl_runs(dir)?
                .into_iter()
                .map(|r| RunSummary {
                    id: r.record.id,
                    name: r.record.name,
                    status: r.record.status,
                    started_at: r.record.started_at,
                    finished_at: r.record.finished_at,
                    levels: r.levels.len(),
                })
                .collect()),
            Store::Postgres(pool) => {
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
                            status: if finished_at.is_some() {
                                RunStatus::Complete
                            } else {
                                RunStatus::Running
                            },
                            started_at: r.try_get("started_at")?,
                            finished_at,
                            levels: r.try_get::<i64, _>("n")? as usize,
                        })
                    })
                    .collect()
            }
        }
    }

    /// A run by id, or the newest with `latest`.
    pub async fn load_run(&self, id: &str) -> Result<Run, StoreError> {
        let id = if id == "latest" {
            self.list_runs()
                .await?
                .into_iter()
                .next()
                .ok_or(StoreError::NoRuns)?
                .id
        } else {
            id.to_string()
        };
        // Ids are generated (letters, digits, '-', 'T', 'Z'); anything else cannot
        // name a run, and must not reach a file path.
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(StoreError::NoSuchRun(id));
        }
        match self {
            Store::Jsonl(dir) => {
                let path = Self::file(dir, &id);
                if !path.exists() {
                    return Err(StoreError::NoSuchRun(id));
                }
                Self::read_file(&path)
            }
            Store::Postgres(pool) => {
                let row = sqlx::query("SELECT record, finished_at FROM soakd_runs WHERE id = $1")
                    .bind(&id)
                    .fetch_optional(pool)
                    .await?
                    .ok_or_else(|| StoreError::NoSuchRun(id.clone()))?;
                let Json(mut record): Json<RunRecord> = row.try_get("record")?;
                record.finished_at = row.try_get("finished_at")?;
                record.status = if record.finished_at.is_some() {
                    RunStatus::Complete
                } else {
                    RunStatus::Running
                };
                let rows =
                    sqlx::query("SELECT result FROM soakd_levels WHERE run_id = $1 ORDER BY seq")
                        .bind(&id)
                        .fetch_all(pool)
                        .await?;
                let levels = rows
                    .iter()
                    .map(|r| r.try_get::<Json<LevelResult>, _>("result").map(|j| j.0))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Run { record, levels })
            }
        }
    }

    async fn load_some(&self, id: Option<String>) -> Result<Option<Run>, StoreError> {
        match id {
            Some(id) => Ok(Some(self.load_run(&id).await?)),
            None => Ok(None),
        }
    }

    /// When the newest run of the search `name` started (finished or not).
    pub async fn latest_started(&self, name: &str) -> Result<Option<f64>, StoreError> {
        match self {
            Store::Jsonl(dir) => Ok(Self::jsonl_runs(dir)?
                .into_iter()
                .find(|r| r.record.name == name)
                .map(|r| r.record.started_at)),
            Store::Postgres(pool) => Ok(sqlx::query(
                "SELECT max(started_at) AS t FROM soakd_runs WHERE name = $1",
            )
            .bind(name)
            .fetch_one(pool)
            .await?
            .try_get::<Option<f64>, _>("t")?),
        }
    }

    /// The newest finished run of the search `name`.
    pub async fn latest_complete(&self, name: &str) -> Result<Option<Run>, StoreError> {
        let id = match self {
            Store::Jsonl(dir) => {
                return Ok(Self::jsonl_runs(dir)?.into_iter().find(|r| {
                    r.record.name == name && r.record.status == RunStatus::Complete
                }))
            }
            Store::Postgres(pool) => sqlx::query(
                "SELECT id FROM soakd_runs WHERE name = $1 AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<String, _>("id"))
            .transpose()?,
        };
        self.load_some(id).await
    }

    /// Makes run `id` (or `latest`) the baseline of its search; it must have finished.
    /// Returns the run. Earlier baselines stay recorded.
    pub async fn set_baseline(&self, id: &str, at: f64) -> Result<Run, StoreError> {
        let run = self.load_run(id).await?;
        if run.record.status != RunStatus::Complete {
            return Err(StoreError::NotFinished(run.record.id));
        }
        match self {
            Store::Jsonl(dir) => {
                let line = BaselineLine {
                    name: run.record.name.clone(),
                    run_id: run.record.id.clone(),
                    set_at: at,
                };
                Self::append(&dir.join(BASELINES_FILE), &line, true)?;
            }
            Store::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO soakd_baselines (name, run_id, set_at) VALUES ($1, $2, $3)",
                )
                .bind(&run.record.name)
                .bind(&run.record.id)
                .bind(at)
                .execute(pool)
                .await?;
            }
        }
        Ok(run)
    }

    /// The id of the baseline of the search `name`, if one was set.
    pub async fn baseline(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Jsonl(dir) => {
                let path = dir.join(BASELINES_FILE);
                if !path.exists() {
                    return Ok(None);
                }
                Ok(Self::read_lines::<BaselineLine>(&path)?
                    .into_iter()
                    .rfind(|b| b.name == name)
                    .map(|b| b.run_id))
            }
            Store::Postgres(pool) => Ok(sqlx::query(
                "SELECT run_id FROM soakd_baselines WHERE name = $1 ORDER BY set_at DESC LIMIT 1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<String, _>("run_id"))
            .transpose()?),
        }
    }

    /// The two runs of a comparison: ids, `latest`, or `baseline` — the baseline of the
    /// other run's search.
    pub async fn load_pair(&self, a: &str, b: &str) -> Result<(Run, Run), StoreError> {
        let base = |other: &Run| {
            let name = other.record.name.clone();
            async move {
                let id = self
                    .baseline(&name)
                    .await?
                    .ok_or(StoreError::NoBaseline(name))?;
                self.load_run(&id).await
            }
        };
        match (a, b) {
            ("baseline", "baseline") => Err(StoreError::BaselineAgainstBaseline),
            ("baseline", b) => {
                let rb = self.load_run(b).await?;
                Ok((base(&rb).await?, rb))
            }
            (a, "baseline") => {
                let ra = self.load_run(a).await?;
                let rb = base(&ra).await?;
                Ok((ra, rb))
            }
            (a, b) => Ok((self.load_run(a).await?, self.load_run(b).await?)),
        }
    }

    /// The newest unfinished run of the same search plan, to resume.
    pub async fn find_resumable(
        &self,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<Run>, StoreError> {
        let id = match self {
            Store::Jsonl(dir) => {
                return Ok(Self::jsonl_runs(dir)?.into_iter().find(|r| {
                    r.record.name == name
                        && r.record.fingerprint == fingerprint
                        && r.record.status == RunStatus::Running
                }))
            }
            Store::Postgres(pool) => sqlx::query(
                "SELECT id FROM soakd_runs WHERE name = $1 AND fingerprint = $2 AND finished_at IS NULL ORDER BY started_at DESC LIMIT 1",
            )
            .bind(name)
            .bind(fingerprint)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get::<String, _>("id"))
            .transpose()?,
        };
        self.load_some(id).await
    }
}

/// (year, month, day, hour, minute, second) in UTC of unix seconds.
fn utc_parts(unix: f64) -> (i64, u32, u32, i64, i64, i64) {
    let secs = unix.max(0.0) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, m, d, s / 3600, (s % 3600) / 60, s % 60)
}

/// A run id: UTC start time, the search name and a random suffix, e.g.
/// `20261122T091500Z-api-3f2a`.
pub fn new_run_id(name: &str, unix: f64) -> String {
    let (y, m, d, h, mi, s) = utc_parts(unix);
    format!(
        "{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z-{name}-{:04x}",
        rand::random::<u16>()
    )
}

/// Date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-11-22 09:15:00 UTC` from unix seconds.
pub fn format_utc(unix: f64) -> String {
    let (y, m, d, h, mi, s) = utc_parts(unix);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(format_utc(1_795_337_193.0), "2026-11-22 08:46:33 UTC");
        let id = new_run_id("api", 1_795_337_193.0);
        assert!(id.starts_with("20261122T084633Z-api-"), "{id}");
    }
}
