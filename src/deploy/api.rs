//! `/api/v1/deploys`: every deploy kept (newest first) with its verdict and evidence,
//! each target's release as read, and the settings the verdicts were given with; and
//! `POST /api/v1/deploys` — a deploy told by CI, Argo or Flagger.

use super::record::{Deploy, Source};
use super::state::{check_announce, new_deploy, AnnounceError, Deploys, ReleaseView, Seen};
use crate::engine::Engine;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
pub struct Settings {
    pub before_seconds: f64,
    pub after_seconds: f64,
    pub settle_seconds: f64,
    pub block_seconds: f64,
    pub baseline: &'static str,
    pub debounce_seconds: f64,
    pub false_alarm: f64,
    pub min_effect_latency: f64,
    pub min_effect_errors: f64,
}

#[derive(Serialize)]
pub struct DeploysPayload {
    pub settings: Settings,
    pub releases: Vec<ReleaseView>,
    /// Newest first.
    pub deploys: Vec<Deploy>,
}

pub fn payload(d: &Deploys) -> DeploysPayload {
    let c = &d.cfg;
    DeploysPayload {
        settings: Settings {
            before_seconds: c.before.as_secs_f64(),
            after_seconds: c.after.as_secs_f64(),
            settle_seconds: c.settle.as_secs_f64(),
            block_seconds: c.block.as_secs_f64(),
            baseline: match c.baseline {
                crate::config::deploys::Baseline::Before => "before",
                crate::config::deploys::Baseline::Yesterday => "yesterday",
            },
            debounce_seconds: c.debounce.as_secs_f64(),
            false_alarm: c.false_alarm,
            min_effect_latency: c.min_latency,
            min_effect_errors: c.min_errors,
        },
        releases: d.releases(),
        deploys: d.list(),
    }
}

/// `POST /api/v1/deploys`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    pub target: String,
    pub version: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// Records a deploy told by the API (now), unless the target already runs `version`
/// (a second call for the same rollout is not a second deploy): the deploy, or None.
pub fn announce(
    d: &Deploys,
    engine: &Engine,
    observed: bool,
    a: Announce,
) -> Result<Option<Deploy>, AnnounceError> {
    let cfg = engine.config();
    check_announce(&a.target, &a.version, a.note.as_deref(), &cfg.targets)?;
    let version = a.version.trim().to_string();
    let now = crate::units::now_unix();
    let from = {
        let mut g = d.inner.lock();
        let rel = g.releases.entry(a.target.clone()).or_default();
        let from = rel.debounce.current.clone();
        if from.as_deref() == Some(version.as_str()) {
            return Ok(None);
        }
        rel.debounce.set(&version);
        if rel.source.is_none() {
            rel.source = Some("api");
        }
        from
    };
    let seen = Seen {
        target: a.target,
        at: now,
        from,
        to: Some(version),
        source: Source::Api,
        note: a.note,
    };
    let dep = new_deploy(seen, &d.cfg, observed);
    super::thread::record_new(engine, &dep);
    d.add(dep.clone());
    Ok(Some(dep))
}
