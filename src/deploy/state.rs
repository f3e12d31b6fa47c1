//! The deploys soakd knows, shared by its thread, the API and the page: the last
//! `deploys.keep` deploys with their verdicts, each target's release as read, and the
//! blocks the judge compares.

use super::blocks::Rings;
use super::record::{deploy_id, Deploy, Resources, Source, State, Verdict};
use super::release::Debounce;
use crate::config::deploys::DeploysConfig;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};

/// A target's release as soakd knows it.
#[derive(Debug, Clone, Default)]
pub struct Release {
    pub debounce: Debounce,
    /// `metrics`, `http`, `promql` or `api`; None without `observe.release`.
    pub source: Option<&'static str>,
    /// Why the last read failed (shown; never a deploy).
    pub error: Option<String>,
    pub read_at: Option<f64>,
}

/// What `/api/v1/deploys` says of a target's release.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    pub target: String,
    pub version: Option<String>,
    pub source: Option<&'static str>,
    pub error: Option<String>,
    pub read_at: Option<f64>,
}

pub struct Inner {
    /// Oldest first, at most `keep`.
    pub list: VecDeque<Deploy>,
    pub keep: usize,
    pub releases: BTreeMap<String, Release>,
    /// Ids whose record changed and is not yet in the results store.
    pub dirty: Vec<String>,
}

pub struct Deploys {
    /// As read at start (the rings are sized for it; a reload does not change it).
    pub cfg: DeploysConfig,
    pub inner: Mutex<Inner>,
    /// Written by the deploy thread only; read by the gates.
    pub rings: Mutex<Rings>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnnounceError {
    #[error("no target named {0:?} in the config")]
    NoTarget(String),
    #[error("`version` must be 1-128 characters on one line")]
    BadVersion,
    #[error("`note` must be at most 1000 characters")]
    BadNote,
}

impl Inner {
    /// Keeps `d` in time order (beside any with the same time, after them), then the
    /// newest `keep`; one already kept (by id) is left as it is.
    pub fn insert(&mut self, d: Deploy) {
        if self.list.iter().any(|x| x.id == d.id) {
            return;
        }
        let at = self
            .list
            .iter()
            .rposition(|x| x.at <= d.at)
            .map_or(0, |i| i + 1);
        self.list.insert(at, d);
        while self.list.len() > self.keep {
            self.list.pop_front();
        }
    }
}

impl Deploys {
    pub fn new(cfg: &DeploysConfig) -> Deploys {
        Deploys {
            cfg: cfg.clone(),
            inner: Mutex::new(Inner {
                list: VecDeque::new(),
                keep: cfg.keep,
                releases: BTreeMap::new(),
                dirty: Vec::new(),
            }),
            rings: Mutex::new(Rings::new(cfg.blocks_kept(), cfg.history_kept())),
        }
    }

    /// Every deploy kept, newest first.
    pub fn list(&self) -> Vec<Deploy> {
        self.inner.lock().list.iter().rev().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Deploy> {
        self.inner.lock().list.iter().find(|d| d.id == id).cloned()
    }

    pub fn releases(&self) -> Vec<ReleaseView> {
        self.inner
            .lock()
            .releases
            .iter()
            .map(|(t, r)| ReleaseView {
                target: t.clone(),
                version: r.debounce.current.clone(),
                source: r.source,
                error: r.error.clone(),
                read_at: r.read_at,
            })
            .collect()
    }

    /// Adds a deploy (replacing one with the same id), keeping the newest `keep`.
    pub fn add(&self, d: Deploy) {
        self.rings.lock().mark(&d.target, d.at);
        let mut g = self.inner.lock();
        g.dirty.push(d.id.clone());
        if let Some(x) = g.list.iter_mut().find(|x| x.id == d.id) {
            *x = d;
            return;
        }
        g.insert(d);
    }

    /// Replaces a kept deploy's record (a verdict given or revised).
    pub fn update(&self, d: Deploy) {
        let mut g = self.inner.lock();
        if let Some(x) = g.list.iter_mut().find(|x| x.id == d.id) {
            *x = d.clone();
            g.dirty.push(d.id);
        }
    }

    /// The records to save, taken.
    pub fn take_dirty(&self) -> Vec<Deploy> {
        let mut g = self.inner.lock();
        let mut ids = std::mem::take(&mut g.dirty);
        ids.sort();
        ids.dedup();
        ids.iter()
            .filter_map(|id| g.list.iter().find(|d| &d.id == id).cloned())
            .collect()
    }

    /// Records put back to save again (the store was not reachable).
    pub fn redirty(&self, ids: Vec<String>) {
        self.inner.lock().dirty.extend(ids);
    }
}

/// What was seen of a deploy: the target, when, the releases either side, how.
#[derive(Debug, Clone)]
pub struct Seen {
    pub target: String,
    pub at: f64,
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Source,
    pub note: Option<String>,
}

/// A new deploy, its verdict pending (`observed`: the soak watches the target's
/// resources).
pub fn new_deploy(seen: Seen, cfg: &DeploysConfig, observed: bool) -> Deploy {
    let Seen {
        target,
        at,
        from,
        to,
        source,
        note,
    } = seen;
    let target = target.as_str();
    let windows = super::judge::windows(at, cfg);
    Deploy {
        id: deploy_id(target, at),
        target: target.to_string(),
        at,
        from,
        to,
        source,
        note,
        verdict: Verdict {
            state: State::Pending,
            load: State::Pending,
            resources: Resources {
                state: if observed {
                    State::Pending
                } else {
                    State::Unchanged
                },
                judged_at: None,
                reasons: vec![if observed {
                    format!(
                        "a leak cannot be estimated from {} of the target: the resources are judged once the soak has a verdict on {target} after the deploy",
                        crate::units::format_duration(cfg.after)
                    )
                } else {
                    format!("{target}'s resources are not observed (targets.{target}.observe names no process, cgroup or metrics)")
                }],
            },
            judged_at: None,
            windows,
            findings: Vec::new(),
            reasons: vec![format!(
                "judged once the window after the deploy has filled: {} of settling, then {}",
                crate::units::format_duration(cfg.settle),
                crate::units::format_duration(cfg.after)
            )],
            series: Vec::new(),
            first: None,
        },
    }
}

/// Checks a deploy told by the API.
pub fn check_announce(
    target: &str,
    version: &str,
    note: Option<&str>,
    targets: &[crate::config::Target],
) -> Result<(), AnnounceError> {
    if !targets.iter().any(|t| t.name == target) {
        return Err(AnnounceError::NoTarget(target.to_string()));
    }
    let v = version.trim();
    if v.is_empty() || v.chars().count() > super::release::MAX_VERSION_LEN || v.contains('\n') {
        return Err(AnnounceError::BadVersion);
    }
    if note.is_some_and(|n| n.chars().count() > 1000) {
        return Err(AnnounceError::BadNote);
    }
    Ok(())
}

impl crate::metrics::MemorySize for Deploys {
    fn memory_bytes(&self) -> u64 {
        let rings = self.rings.lock().bytes();
        let list: usize = self
            .inner
            .lock()
            .list
            .iter()
            .map(|d| 512 + d.verdict.findings.len() * 400)
            .sum();
        (rings + list) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_added_is_remembered_for_the_drift_check_and_the_marks_stay_bounded() {
        let cfg = DeploysConfig::default();
        let d = Deploys::new(&cfg);
        let seen = |at: f64| Seen {
            target: "api".into(),
            at,
            from: None,
            to: Some("2".into()),
            source: Source::Api,
            note: None,
        };
        d.add(new_deploy(seen(500.0), &cfg, false));
        d.add(new_deploy(seen(100.0), &cfg, false));
        // The same deploy again (a revised record) marks nothing new.
        d.add(new_deploy(seen(500.0), &cfg, false));
        let marks: Vec<f64> = d.rings.lock().marks["api"].iter().copied().collect();
        assert_eq!(marks, vec![100.0, 500.0]);
        let mut r = Rings::new(4, 4);
        for i in 0..super::super::blocks::MAX_MARKS + 10 {
            r.mark("api", i as f64);
        }
        let m = &r.marks["api"];
        assert_eq!(m.len(), super::super::blocks::MAX_MARKS);
        assert_eq!(m.front(), Some(&10.0), "the oldest go first");
    }
}
