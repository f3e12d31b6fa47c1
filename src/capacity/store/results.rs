//! [`Store`]: one of the two backends behind the operations the search, the API and the
//! reports use. What the backends answer differently is in `jsonl.rs` and `pg.rs`; what
//! composes their answers (`latest`, `baseline`, pairs for a comparison) is here, once.

use super::error::{RunSummary, StoreError};
use super::ids::valid_id;
use super::{jsonl, pg};
use crate::capacity::record::{LevelResult, Run, RunRecord, RunStatus};
use crate::config::search::ResultsConfig;
use sqlx::PgPool;
use std::path::PathBuf;

/// The results store: capacity runs and their levels, in append-only JSONL files (one per
/// run) or in PostgreSQL. Nothing is overwritten: a run is created once, levels are
/// inserted once (a second insert of the same position fails), and only a run's end is
/// recorded later.
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
                jsonl::open(d)?;
                Ok(Store::Jsonl(d.clone()))
            }
            ResultsConfig::Postgres(url) => Ok(Store::Postgres(pg::open(&url.0).await?)),
        }
    }

    pub async fn create_run(&self, rec: &RunRecord) -> Result<(), StoreError> {
        match self {
            Store::Jsonl(dir) => jsonl::create_run(dir, rec),
            Store::Postgres(pool) => pg::create_run(pool, rec).await,
        }
    }

    pub async fn append_level(&self, l: &LevelResult) -> Result<(), StoreError> {
        match self {
            Store::Jsonl(dir) => jsonl::append_level(dir, l),
            Store::Postgres(pool) => pg::append_level(pool, l).await,
        }
    }

    pub async fn finish_run(&self, id: &str, at: f64) -> Result<(), StoreError> {
        match self {
            Store::Jsonl(dir) => jsonl::finish_run(dir, id, at),
            Store::Postgres(pool) => pg::finish_run(pool, id, at).await,
        }
    }

    /// Every run, newest first.
    pub async fn list_runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        match self {
            Store::Jsonl(dir) => jsonl::list_runs(dir),
            Store::Postgres(pool) => pg::list_runs(pool).await,
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
        if !valid_id(&id) {
            return Err(StoreError::NoSuchRun(id));
        }
        match self {
            Store::Jsonl(dir) => jsonl::load_run(dir, &id),
            Store::Postgres(pool) => pg::load_run(pool, &id).await,
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
            Store::Jsonl(dir) => Ok(jsonl::runs(dir)?
                .into_iter()
                .find(|r| r.record.name == name)
                .map(|r| r.record.started_at)),
            Store::Postgres(pool) => pg::latest_started(pool, name).await,
        }
    }

    /// The newest finished run of the search `name`.
    pub async fn latest_complete(&self, name: &str) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Jsonl(dir) => Ok(jsonl::runs(dir)?
                .into_iter()
                .find(|r| r.record.name == name && r.record.status == RunStatus::Complete)),
            Store::Postgres(pool) => {
                let id = pg::latest_complete(pool, name).await?;
                self.load_some(id).await
            }
        }
    }

    /// Makes run `id` (or `latest`) the baseline of its search; it must have finished.
    /// Returns the run. Earlier baselines stay recorded.
    pub async fn set_baseline(&self, id: &str, at: f64) -> Result<Run, StoreError> {
        let run = self.load_run(id).await?;
        if run.record.status != RunStatus::Complete {
            return Err(StoreError::NotFinished(run.record.id));
        }
        match self {
            Store::Jsonl(dir) => jsonl::set_baseline(dir, &run, at)?,
            Store::Postgres(pool) => pg::set_baseline(pool, &run, at).await?,
        }
        Ok(run)
    }

    /// The id of the baseline of the search `name`, if one was set.
    pub async fn baseline(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::Jsonl(dir) => jsonl::baseline(dir, name),
            Store::Postgres(pool) => pg::baseline(pool, name).await,
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

    /// Reference runs `a` — one id, or several separated by commas (repeated baselines,
    /// whose spread a comparison measures; `baseline` among them is the marked one) —
    /// and the candidate `b`.
    pub async fn load_baselines(&self, a: &str, b: &str) -> Result<(Vec<Run>, Run), StoreError> {
        let ids: Vec<&str> = a
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if ids.len() <= 1 {
            let (ra, rb) = self.load_pair(a, b).await?;
            return Ok((vec![ra], rb));
        }
        let rb = self.load_run(b).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if id == "baseline" {
                let name = rb.record.name.clone();
                let id = self
                    .baseline(&name)
                    .await?
                    .ok_or(StoreError::NoBaseline(name))?;
                out.push(self.load_run(&id).await?);
            } else {
                out.push(self.load_run(id).await?);
            }
        }
        Ok((out, rb))
    }

    /// The newest unfinished run of the same search plan, to resume.
    pub async fn find_resumable(
        &self,
        name: &str,
        fingerprint: &str,
    ) -> Result<Option<Run>, StoreError> {
        match self {
            Store::Jsonl(dir) => Ok(jsonl::runs(dir)?.into_iter().find(|r| {
                r.record.name == name
                    && r.record.fingerprint == fingerprint
                    && r.record.status == RunStatus::Running
            })),
            Store::Postgres(pool) => {
                let id = pg::find_resumable(pool, name, fingerprint).await?;
                self.load_some(id).await
            }
        }
    }

    /// Saves a deploy's record (again, when its verdict is given or revised), keeping the
    /// newest `keep`.
    pub async fn save_deploy(
        &self,
        id: &str,
        target: &str,
        at: f64,
        record: &serde_json::Value,
        keep: usize,
    ) -> Result<(), StoreError> {
        match self {
            Store::Jsonl(dir) => jsonl::save_deploy(dir, id, at, record, keep),
            Store::Postgres(pool) => pg::save_deploy(pool, id, target, at, record, keep).await,
        }
    }

    /// The newest `limit` deploys' records, oldest first.
    pub async fn load_deploys(&self, limit: usize) -> Result<Vec<serde_json::Value>, StoreError> {
        match self {
            Store::Jsonl(dir) => jsonl::load_deploys(dir, limit),
            Store::Postgres(pool) => pg::load_deploys(pool, limit).await,
        }
    }
}
