//! The `deploys:` section: how each deploy of the system under test is judged — soakd's
//! own latency, errors and drops against the target in a window before the deploy and
//! one after it (the release itself is read per target: `observe.release`).
//!
//! ```yaml
//! deploys:
//!   before: 30m          # the window before the deploy
//!   after: 30m           # the window after it, from the end of `settle`
//!   settle: 2m           # skipped after the deploy (a rollout, warm caches)
//!   block: 1m            # the unit each window is cut into (operations within a
//!                        # minute are not independent; minutes nearly are)
//!   baseline: before     # or `yesterday`: the same hours of the previous day
//!   debounce: 30s        # a release value must hold this long before it counts
//!   poll: 10s            # how often release sources are read
//!   false_alarm: 1%      # chance per deploy of calling a change that is not there
//!   min_effect:
//!     latency: 5%        # of a quantile
//!     errors: 50%        # of an error ratio, and at least a tenth of slo.error_rate
//!   keep: 100            # deploys kept, in memory and in the results store
//!   canaries:            # which target a Flagger Canary (namespace/name) means
//!     test/podinfo: api
//!   controls:            # judge a target's latency relative to another's, which
//!     api: static        # the deploy does not touch (a drift both share cancels)
//! ```

use crate::config::errors::Errs;
use crate::units::{Dur, Ratio};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Fewer blocks than this in a window and it cannot be judged: `before` and `after`
/// must each hold at least this many `block`s.
pub const MIN_WINDOW_BLOCKS: u64 = 10;
/// At most this many blocks per op are kept (a day and an hour of minutes).
pub const MAX_BLOCKS: usize = 2_000;
/// Block summaries kept per op for the drift check (a day of minutes, and some).
pub const MAX_HISTORY: usize = 4_000;
/// At most this many deploys are kept.
pub const MAX_KEEP: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The window just before the deploy.
    Before,
    /// The same hours of the previous day (for daily load curves).
    Yesterday,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeploysConfig {
    pub enabled: bool,
    pub before: Duration,
    pub after: Duration,
    pub settle: Duration,
    pub block: Duration,
    pub baseline: Baseline,
    pub debounce: Duration,
    pub poll: Duration,
    pub false_alarm: f64,
    pub min_latency: f64,
    pub min_errors: f64,
    pub keep: usize,
    /// A Flagger Canary (`namespace/name`) → the target its gate answers for.
    pub canaries: std::collections::BTreeMap<String, String>,
    /// A target → the target its ops' latency is judged relative to.
    pub controls: std::collections::BTreeMap<String, String>,
    /// How far back the drift check lays the windows again (`shift::drift`); zero
    /// turns it off.
    pub history: Duration,
}

impl Default for DeploysConfig {
    fn default() -> Self {
        DeploysConfig {
            enabled: true,
            before: Duration::from_secs(30 * 60),
            after: Duration::from_secs(30 * 60),
            settle: Duration::from_secs(120),
            block: Duration::from_secs(60),
            baseline: Baseline::Before,
            debounce: Duration::from_secs(30),
            poll: Duration::from_secs(10),
            false_alarm: 0.01,
            min_latency: 0.05,
            min_errors: 0.5,
            keep: 100,
            canaries: std::collections::BTreeMap::new(),
            controls: std::collections::BTreeMap::new(),
            history: Duration::from_secs(86_400),
        }
    }
}

impl DeploysConfig {
    /// Blocks each ring keeps: the before, settle and after windows (with `yesterday`,
    /// a day and the after window), and four blocks of slack (the judge runs a block
    /// after the after window closes, on a one-second clock).
    pub fn blocks_kept(&self) -> usize {
        let span = match self.baseline {
            Baseline::Before => self.before + self.settle + self.after,
            Baseline::Yesterday => Duration::from_secs(86_400) + self.after + self.settle,
        };
        (span.as_secs_f64() / self.block.as_secs_f64()).ceil() as usize + 4
    }

    /// Block summaries kept per op for the drift check: `history` in blocks, at most
    /// [`MAX_HISTORY`].
    pub fn history_kept(&self) -> usize {
        ((self.history.as_secs_f64() / self.block.as_secs_f64()).ceil() as usize).min(MAX_HISTORY)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploys {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    before: Option<Dur>,
    #[serde(default)]
    after: Option<Dur>,
    #[serde(default)]
    settle: Option<Dur>,
    #[serde(default)]
    block: Option<Dur>,
    #[serde(default)]
    baseline: Option<RawBaseline>,
    #[serde(default)]
    debounce: Option<Dur>,
    #[serde(default)]
    poll: Option<Dur>,
    #[serde(default)]
    false_alarm: Option<Ratio>,
    #[serde(default)]
    min_effect: Option<RawMinEffect>,
    #[serde(default)]
    keep: Option<usize>,
    #[serde(default)]
    canaries: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    controls: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    history: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawBaseline {
    Before,
    Yesterday,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMinEffect {
    #[serde(default)]
    latency: Option<Ratio>,
    #[serde(default)]
    errors: Option<Ratio>,
}

pub(super) fn build_deploys(v: Option<&Value>, errs: &mut Errs) -> DeploysConfig {
    let mut cfg = DeploysConfig::default();
    let Some(v) = v else { return cfg };
    let Some(raw) = errs.decode::<RawDeploys>(v, "deploys") else {
        return cfg;
    };
    if let Some(e) = raw.enabled {
        cfg.enabled = e;
    }
    let within = |d: Option<Dur>, lo: Duration, hi: Duration, key: &str, errs: &mut Errs| {
        let d = d?.0;
        if d < lo || d > hi {
            errs.push(
                format!("deploys.{key}"),
                format!(
                    "must be between {} and {}",
                    crate::units::format_duration(lo),
                    crate::units::format_duration(hi)
                ),
            );
            None
        } else {
            Some(d)
        }
    };
    let s = Duration::from_secs;
    if let Some(d) = within(raw.block, s(1), s(600), "block", errs) {
        cfg.block = d;
    }
    if let Some(d) = within(raw.before, s(10), s(6 * 3600), "before", errs) {
        cfg.before = d;
    }
    if let Some(d) = within(raw.after, s(10), s(6 * 3600), "after", errs) {
        cfg.after = d;
    }
    if let Some(d) = within(raw.settle, s(0), s(3600), "settle", errs) {
        cfg.settle = d;
    }
    if let Some(d) = within(raw.debounce, s(0), s(3600), "debounce", errs) {
        cfg.debounce = d;
    }
    if let Some(d) = within(raw.poll, s(1), s(600), "poll", errs) {
        cfg.poll = d;
    }
    if let Some(d) = within(raw.history, s(0), s(7 * 86_400), "history", errs) {
        cfg.history = d;
    }
    for (key, w) in [("before", cfg.before), ("after", cfg.after)] {
        let blocks = w.as_secs_f64() / cfg.block.as_secs_f64();
        if blocks < MIN_WINDOW_BLOCKS as f64 {
            errs.push(
                format!("deploys.{key}"),
                format!(
                    "{} is {blocks:.0} blocks of {}; a window needs at least {MIN_WINDOW_BLOCKS} (lengthen it or shorten deploys.block)",
                    crate::units::format_duration(w),
                    crate::units::format_duration(cfg.block),
                ),
            );
        }
    }
    if let Some(b) = raw.baseline {
        cfg.baseline = match b {
            RawBaseline::Before => Baseline::Before,
            RawBaseline::Yesterday => Baseline::Yesterday,
        };
    }
    if let Some(r) = raw.false_alarm {
        if r.0 <= 0.0 || r.0 > 0.2 {
            errs.push("deploys.false_alarm", "must be above 0 and at most 20%");
        } else {
            cfg.false_alarm = r.0;
        }
    }
    if let Some(m) = raw.min_effect {
        if let Some(r) = m.latency {
            cfg.min_latency = r.0;
        }
        if let Some(r) = m.errors {
            cfg.min_errors = r.0;
        }
    }
    if cfg.blocks_kept() > MAX_BLOCKS {
        errs.push(
            "deploys.block",
            format!(
                "the windows need {} blocks of {} per op; at most {MAX_BLOCKS} are kept (lengthen deploys.block)",
                cfg.blocks_kept(),
                crate::units::format_duration(cfg.block)
            ),
        );
    }
    for (k, t) in &raw.canaries {
        let ok = k
            .split_once('/')
            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'));
        if !ok {
            errs.push(
                format!("deploys.canaries.{k}"),
                "a Canary is named `namespace/name`",
            );
        } else {
            cfg.canaries.insert(k.clone(), t.clone());
        }
    }
    for (t, c) in &raw.controls {
        if t == c {
            errs.push(
                format!("deploys.controls.{t}"),
                "a target cannot be its own control: name another target its deploys do not touch",
            );
        } else {
            cfg.controls.insert(t.clone(), c.clone());
        }
    }
    if let Some(k) = raw.keep {
        if k == 0 || k > MAX_KEEP {
            errs.push("deploys.keep", format!("must be between 1 and {MAX_KEEP}"));
        } else {
            cfg.keep = k;
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_section_for_test as parse;

    #[test]
    fn defaults_bounds_and_errors_with_their_lines() {
        let c = parse("").unwrap();
        assert_eq!(c.deploys, DeploysConfig::default());
        assert_eq!(c.deploys.blocks_kept(), 66);
        let c = parse("deploys: {before: 20s, after: 20s, settle: 2s, block: 2s, debounce: 1s}")
            .unwrap();
        assert_eq!(c.deploys.block, Duration::from_secs(2));
        assert_eq!(c.deploys.blocks_kept(), 25);
        // The drift check's day, in blocks (at most MAX_HISTORY); 0 turns it off.
        assert_eq!(c.deploys.history_kept(), MAX_HISTORY);
        let c = parse("deploys: {history: 6h}").unwrap();
        assert_eq!(c.deploys.history_kept(), 360);
        assert_eq!(
            parse("deploys: {history: 0s}")
                .unwrap()
                .deploys
                .history_kept(),
            0
        );
        let e = parse("deploys: {history: 8d}").unwrap_err().to_string();
        assert!(
            e.contains("deploys.history: must be between 0s and 7d"),
            "{e}"
        );
        let c = parse("deploys: {baseline: yesterday}").unwrap();
        assert_eq!(c.deploys.baseline, Baseline::Yesterday);
        assert_eq!(c.deploys.blocks_kept(), 1476);
        let e = parse("deploys: {baseline: yesterday, block: 2s, before: 20s, after: 20s}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("deploys.block: the windows need 43274 blocks of 2s per op; at most 2000"),
            "{e}"
        );
        let e = parse("deploys:\n  before: 5m\n  block: 1m\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("deploys.before: 5m is 5 blocks of 1m; a window needs at least 10"),
            "{e}"
        );
        assert!(e.contains("(line 4"), "{e}");
        let e = parse("deploys: {false_alarm: 50%}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("deploys.false_alarm: must be above 0 and at most 20%"),
            "{e}"
        );
        let e = parse("deploys: {min_effect: {latncy: 5%}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("deploys.min_effect.latncy: unknown field `latncy`"),
            "{e}"
        );
        let e = parse(
            "verdicts: {prometheus: http://p:9090, scrape_interval: 15s}\ndeploys: {before: 5m, after: 5m, block: 20s}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("deploys.block: a block (20s) must hold at least 2 of Prometheus's scrapes (verdicts.scrape_interval = 15s)"),
            "{e}"
        );
        let e = parse("deploys: {controls: {api: api, web: static}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("deploys.controls.api: a target cannot be its own control"),
            "{e}"
        );
        assert!(
            e.contains("deploys.controls.web: no target named \"web\"")
                && e.contains("no target named \"static\" (the control)"),
            "{e}"
        );
        let e = parse("deploys: {baseline: lastweek}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("deploys.baseline: unknown variant `lastweek`"),
            "{e}"
        );
    }
}
