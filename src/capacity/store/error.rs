//! How the results store fails, and what a listing of runs holds — shared by both
//! backends.

use crate::capacity::record::RunStatus;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

/// Wraps an I/O error on `path`.
pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
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
