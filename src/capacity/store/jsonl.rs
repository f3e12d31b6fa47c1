//! The JSONL backend: one append-only file per run (a header line, one line per level, a
//! line when it finishes), and `baselines.ndjson` for `--set-baseline`. One write per
//! line, synced: a crash leaves at most a torn last line, which reading skips.

use super::error::{io, RunSummary, StoreError};
use crate::capacity::record::{LevelResult, Run, RunRecord, RunStatus};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The JSONL store's baselines, one line per `--set-baseline` (not `.jsonl`: that is a run).
const BASELINES_FILE: &str = "baselines.ndjson";

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
    // One write per line: a crash leaves at most a torn last line, which `read_file`
    // skips.
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_data().map_err(io(path))
}

/// Every JSON line of `path`, in order. A torn last line (a crash mid-write) is skipped;
/// anything else that does not parse is damage.
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
    for line in read_lines::<Line>(path)? {
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

/// Every run in `dir`, newest first (none when the directory does not exist yet).
pub(super) fn runs(dir: &Path) -> Result<Vec<Run>, StoreError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in rd {
        let p = e.map_err(io(dir))?.path();
        if p.extension().is_some_and(|x| x == "jsonl") {
            out.push(read_file(&p)?);
        }
    }
    out.sort_by(|a, b| b.record.started_at.total_cmp(&a.record.started_at));
    Ok(out)
}

/// Creates the directory the runs go into.
pub(super) fn open(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(io(dir))
}

pub(super) fn create_run(dir: &Path, rec: &RunRecord) -> Result<(), StoreError> {
    let path = file(dir, &rec.id);
    // create_new: an existing run file is never replaced.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io(&path))?;
    append(&path, &Line::Run(Box::new(rec.clone())), false)
}

pub(super) fn append_level(dir: &Path, l: &LevelResult) -> Result<(), StoreError> {
    let path = file(dir, &l.run_id);
    let run = read_file(&path)?;
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
    append(&path, &Line::Level(Box::new(l.clone())), false)
}

pub(super) fn finish_run(dir: &Path, id: &str, at: f64) -> Result<(), StoreError> {
    let path = file(dir, id);
    let run = read_file(&path)?;
    if run.record.status == RunStatus::Complete {
        return Err(StoreError::Finished(id.into()));
    }
    append(&path, &Line::Finished { at }, false)
}

pub(super) fn list_runs(dir: &Path) -> Result<Vec<RunSummary>, StoreError> {
    Ok(runs(dir)?
        .into_iter()
        .map(|r| RunSummary {
            id: r.record.id,
            name: r.record.name,
            status: r.record.status,
            started_at: r.record.started_at,
            finished_at: r.record.finished_at,
            levels: r.levels.len(),
        })
        .collect())
}

/// Run `id` (already checked to be a run id's shape).
pub(super) fn load_run(dir: &Path, id: &str) -> Result<Run, StoreError> {
    let path = file(dir, id);
    if !path.exists() {
        return Err(StoreError::NoSuchRun(id.to_string()));
    }
    read_file(&path)
}

pub(super) fn set_baseline(dir: &Path, run: &Run, at: f64) -> Result<(), StoreError> {
    let line = BaselineLine {
        name: run.record.name.clone(),
        run_id: run.record.id.clone(),
        set_at: at,
    };
    append(&dir.join(BASELINES_FILE), &line, true)
}

pub(super) fn baseline(dir: &Path, name: &str) -> Result<Option<String>, StoreError> {
    let path = dir.join(BASELINES_FILE);
    if !path.exists() {
        return Ok(None);
    }
    Ok(read_lines::<BaselineLine>(&path)?
        .into_iter()
        .rfind(|b| b.name == name)
        .map(|b| b.run_id))
}

/// Deploy records: `DIR/deploys/deploys.jsonl` (a folder of its own, so it is never
/// read as a run), one line per save, the last line of an id winning; rewritten with
/// only the newest `keep` deploys once it holds four times that many lines.
fn deploys_file(dir: &Path) -> PathBuf {
    dir.join("deploys").join("deploys.jsonl")
}

#[derive(Serialize, serde::Deserialize)]
pub(super) struct DeployLine {
    pub(super) id: String,
    pub(super) at: f64,
    pub(super) record: serde_json::Value,
}

fn deploy_lines(dir: &Path) -> Result<Vec<DeployLine>, StoreError> {
    let path = deploys_file(dir);
    match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        _ => read_lines(&path),
    }
}

/// The newest `limit` deploys (by time), each as last saved, oldest first.
fn newest(lines: Vec<DeployLine>, limit: usize) -> Vec<DeployLine> {
    let mut by_id: std::collections::HashMap<String, DeployLine> = Default::default();
    for l in lines {
        by_id.insert(l.id.clone(), l);
    }
    let mut v: Vec<DeployLine> = by_id.into_values().collect();
    v.sort_by(|a, b| a.at.total_cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    let skip = v.len().saturating_sub(limit);
    v.into_iter().skip(skip).collect()
}

pub(super) fn save_deploy(
    dir: &Path,
    id: &str,
    at: f64,
    record: &serde_json::Value,
    keep: usize,
) -> Result<(), StoreError> {
    let path = deploys_file(dir);
    let folder = dir.join("deploys");
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let line = DeployLine {
        id: id.to_string(),
        at,
        record: record.clone(),
    };
    append(&path, &line, true)?;
    let lines = deploy_lines(dir)?;
    if lines.len() > 4 * keep.max(1) {
        let kept = newest(lines, keep);
        let tmp = folder.join("deploys.jsonl.tmp");
        let mut text = String::new();
        for l in &kept {
            let s = serde_json::to_string(l).map_err(|e| StoreError::Io {
                path: tmp.clone(),
                source: std::io::Error::other(e),
            })?;
            text.push_str(&s);
            text.push('\n');
        }
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

pub(super) fn load_deploys(dir: &Path, limit: usize) -> Result<Vec<serde_json::Value>, StoreError> {
    Ok(newest(deploy_lines(dir)?, limit)
        .into_iter()
        .map(|l| l.record)
        .collect())
}
