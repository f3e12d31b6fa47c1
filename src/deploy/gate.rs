//! A gate a progressive rollout can ask: Flagger's webhooks (`confirm-rollout`,
//! `rollout`, `confirm-promotion`) and an Argo Rollouts web metric, each answered from
//! the target's latest deploy — its verdict once given, else its window after the deploy
//! so far against the window before it — with the reasons when it halts.

use super::judge::{judge_load_until, windows};
use super::record::State;
use super::state::Deploys;
use crate::config::Config;
use serde::Serialize;

/// Which question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Flagger's `confirm-rollout`: may the canary start? Yes once soakd has the window
    /// before the deploy that it will compare against.
    ConfirmRollout,
    /// Flagger's `rollout` check, each analysis iteration: fails only when the deploy
    /// regressed (or, before its verdict, when the blocks so far already show it).
    Rollout,
    /// Flagger's `confirm-promotion`, and Argo's metric: promote only on a verdict of
    /// `unchanged` or `improved`; hold until the window after the deploy has filled.
    Promotion,
}

impl Hook {
    pub fn parse(s: &str) -> Option<Hook> {
        match s {
            "confirm-rollout" => Some(Hook::ConfirmRollout),
            "rollout" => Some(Hook::Rollout),
            "confirm-promotion" => Some(Hook::Promotion),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hook::ConfirmRollout => "confirm-rollout",
            Hook::Rollout => "rollout",
            Hook::Promotion => "confirm-promotion",
        }
    }
}

/// What the gate says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Go on (HTTP 200).
    Pass,
    /// Not yet (HTTP 409): the window has not filled, or soakd cannot say.
    Hold,
    /// The deploy regressed (HTTP 412).
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub target: String,
    pub hook: &'static str,
    /// `pass`, `hold` or `fail` (Argo's `successCondition` reads it).
    pub result: Outcome,
    /// The deploy asked about, its verdict so far, and whether its window has filled.
    pub deploy: Option<String>,
    pub version: Option<String>,
    pub verdict: Option<State>,
    pub filled: bool,
    /// When the window after the deploy fills (unix seconds).
    pub fills_at: Option<f64>,
    pub reasons: Vec<String>,
}

/// The gate's answer for `target` at `now`.
pub fn answer(d: &Deploys, cfg: &Config, target: &str, hook: Hook, now: f64) -> Answer {
    let mut a = Answer {
        target: target.to_string(),
        hook: hook.name(),
        result: Outcome::Hold,
        deploy: None,
        version: None,
        verdict: None,
        filled: false,
        fills_at: None,
        reasons: Vec::new(),
    };
    let dc = &d.cfg;
    if hook == Hook::ConfirmRollout {
        let rings = d.rings.lock();
        let oldest = rings.generator.front().map(|g| g.t);
        let have = oldest.map_or(0.0, |t| now - t);
        let need = dc.before.as_secs_f64();
        if have >= need {
            a.result = Outcome::Pass;
            a.reasons.push(format!(
                "soakd has the {} before a deploy it compares against",
                crate::units::format_duration(dc.before)
            ));
        } else {
            a.reasons.push(format!(
                "soakd has {} of the {} before a deploy it needs (it started recently); the canary can start once it has",
                crate::units::format_duration(std::time::Duration::from_secs_f64(have.max(0.0))),
                crate::units::format_duration(dc.before)
            ));
        }
        return a;
    }
    let latest = d
        .inner
        .lock()
        .list
        .iter()
        .filter(|x| x.target == target)
        .max_by(|x, y| x.at.total_cmp(&y.at))
        .cloned();
    let Some(dep) = latest else {
        if hook == Hook::Rollout {
            a.result = Outcome::Pass;
        }
        a.reasons.push(format!(
            "no deploy of {target} seen yet: point the target at the canary's own service (<app>-canary) and read its release (observe.release), or tell soakd (POST /api/v1/deploys)"
        ));
        return a;
    };
    let w = windows(dep.at, dc);
    let fills_at = w.after[1] + dc.block.as_secs_f64();
    a.deploy = Some(dep.id.clone());
    a.version = dep.to.clone();
    a.fills_at = Some(fills_at);
    let v = &dep.verdict;
    if v.load != State::Pending {
        a.filled = true;
        a.verdict = Some(v.state);
        a.reasons = v.reasons.clone();
        if v.resources.state == State::Regressed {
            a.reasons.extend(v.resources.reasons.iter().cloned());
        }
        a.result = match v.state {
            State::Regressed => Outcome::Fail,
            State::Unchanged | State::Improved => Outcome::Pass,
            State::Invalid | State::Pending => Outcome::Hold,
        };
        return a;
    }
    // Pending: what the blocks so far say.
    a.verdict = Some(State::Pending);
    // A gate asks every analysis interval: each look before the verdict is held to the
    // false-alarm rate over the number of blocks the window has, so looking often does
    // not cry wolf more often.
    let looks = (dc.after.as_secs_f64() / dc.block.as_secs_f64()).max(1.0);
    let strict = crate::config::deploys::DeploysConfig {
        false_alarm: dc.false_alarm / looks,
        ..dc.clone()
    };
    let so_far = {
        let rings = d.rings.lock();
        judge_load_until(
            &dep.id,
            target,
            dep.at,
            &strict,
            &cfg.scenarios,
            &rings,
            now,
        )
    };
    let left = (fills_at - now).max(0.0);
    let wait = format!(
        "the window after deploy {} fills in {} (at {})",
        dep.id,
        crate::units::format_duration(std::time::Duration::from_secs_f64(left)),
        crate::units::format_utc(fills_at)
    );
    match (hook, so_far.state) {
        (Hook::Rollout, State::Regressed) => {
            a.result = Outcome::Fail;
            a.reasons.push(format!("already regressed before {wait}"));
            a.reasons.extend(so_far.reasons);
        }
        (Hook::Rollout, _) => {
            a.result = Outcome::Pass;
            a.reasons.push(format!("nothing regressed so far; {wait}"));
        }
        (_, State::Regressed) => {
            a.result = Outcome::Fail;
            a.reasons.push(format!("already regressed before {wait}"));
            a.reasons.extend(so_far.reasons);
        }
        _ => {
            a.reasons.push(format!("holding: {wait}"));
        }
    }
    a
}
