//! The `search:` and `results:` sections: capacity search over discrete load levels,
//! and where its results are kept.

use super::{resolve, Errs, Scenario, Secret, Target, TargetKind};
use crate::units::{Dur, Rate};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the searched scenarios are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// One scenario at a time, the other searched scenarios held at 0.
    #[default]
    Isolated,
    /// Two scenarios: for each level of the first, step the second until it breaks.
    Matrix,
}

/// One searched scenario: its ladder of levels and where to go afterwards.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct SearchScenario {
    pub name: String,
    /// Ascending.
    pub levels: Vec<f64>,
    /// The soak rate after the search; None: back to the scenario's own schedule.
    pub then: Option<f64>,
}

/// Where the target's own CPU and memory come from, when known.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub enum TargetProcess {
    /// A local process: read /proc/PID.
    Pid(u32),
    /// A Prometheus endpoint exporting `process_cpu_seconds_total` and
    /// `process_resident_memory_bytes`.
    MetricsUrl(String),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct SearchConfig {
    /// Names the run; an interrupted run with the same name and plan resumes.
    pub name: String,
    pub mode: SearchMode,
    /// How long each level is held, warm-up included.
    pub each: Duration,
    /// Excluded from the measurement window at the start of each level.
    pub warmup: Duration,
    /// Bisection steps between the last good and the first bad level.
    pub refine: u32,
    /// Schedule lag p99 above this makes a level invalid (soakd was late, not the target).
    pub lag_limit: Duration,
    /// Achieved below this fraction of offered makes a level invalid.
    pub min_achieved: f64,
    /// A postgres target whose database is measured per level (transactions, cache hit
    /// ratio, dead tuples, connections by state, top statements).
    pub postgres: Option<String>,
    pub target_process: Option<TargetProcess>,
    /// The targets served by that process (empty: every searched scenario's).
    #[serde(default)]
    pub target_process_targets: Vec<String>,
    pub scenarios: Vec<SearchScenario>,
    /// How much worse a run may be than the baseline before a comparison calls it
    /// regressed (and `CapacityRegressed` fires). A policy for comparing runs, not part
    /// of the plan: not stored with a run, not in its fingerprint.
    #[serde(skip, default = "default_regression_tolerance")]
    pub regression_tolerance: f64,
}

/// `search.regression_tolerance` when not configured.
pub const DEFAULT_REGRESSION_TOLERANCE: f64 = 0.10;

fn default_regression_tolerance() -> f64 {
    DEFAULT_REGRESSION_TOLERANCE
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResultsConfig {
    /// Append-only JSONL files, one per run.
    Dir(PathBuf),
    /// PostgreSQL tables (runs, levels, statements), created by migrations.
    Postgres(Secret),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mode: SearchMode,
    each: Dur,
    #[serde(default)]
    warmup: Option<Dur>,
    #[serde(default)]
    refine: u32,
    #[serde(default)]
    lag_limit: Option<Dur>,
    #[serde(default)]
    min_achieved: Option<crate::units::Ratio>,
    #[serde(default)]
    postgres: Option<String>,
    #[serde(default)]
    target_process: Option<RawTargetProcess>,
    #[serde(default)]
    regression_tolerance: Option<crate::units::Ratio>,
    scenarios: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargetProcess {
    #[serde(default)]
    pid: Option<u32>,
    /// Which targets this process serves (default: all).
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    metrics_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSearchScenario {
    levels: Vec<Rate>,
    #[serde(default)]
    then: Option<Rate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResults {
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

pub(super) fn build_results(v: Option<&Value>, base_dir: &Path, errs: &mut Errs) -> ResultsConfig {
    // The default is relative to the working directory, where `soakd report` looks.
    let default = ResultsConfig::Dir(PathBuf::from("results"));
    let Some(v) = v else { return default };
    let Some(raw) = errs.decode::<RawResults>(v, "results") else {
        return default;
    };
    match (raw.url.filter(|u| !u.is_empty()), raw.dir) {
        (Some(_), Some(_)) => {
            errs.push("results", "give either `dir` or `url`, not both");
            default
        }
        (Some(u), None) => {
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                errs.push("results.url", "expected a postgres:// URL");
            }
            ResultsConfig::Postgres(Secret(u))
        }
        (None, Some(d)) => ResultsConfig::Dir(resolve(base_dir, &d)),
        (None, None) => default,
    }
}

pub(super) fn build_search(
    v: &Value,
    scenarios: &[Scenario],
    targets: &[Target],
    errs: &mut Errs,
) -> Option<SearchConfig> {
    let raw = errs.decode::<RawSearch>(v, "search")?;
    let each = raw.each.0;
    let warmup = raw.warmup.map(|d| d.0).unwrap_or(each / 6);
    if each < Duration::from_secs(1) {
        errs.push("search.each", "must be at least 1s");
    }
    if warmup >= each {
        errs.push(
            "search.warmup",
            "must be shorter than `each` (the rest of the level is the measurement window)",
        );
    }
    if raw.refine > 10 {
        errs.push("search.refine", "at most 10 bisection steps");
    }
    let min_achieved = raw.min_achieved.map(|r| r.0).unwrap_or(0.95);
    if !(0.0..=1.0).contains(&min_achieved) || min_achieved == 0.0 {
        errs.push("search.min_achieved", "must be within (0, 100%]");
    }
    let regression_tolerance = raw
        .regression_tolerance
        .map(|r| r.0)
        .unwrap_or_else(default_regression_tolerance);
    if !(0.0..1.0).contains(&regression_tolerance) {
        errs.push("search.regression_tolerance", "must be within [0, 100%)");
    }
    if let Some(p) = &raw.postgres {
        let ok = targets
            .iter()
            .any(|t| t.name == *p && matches!(t.kind, TargetKind::Postgres(_)));
        if !ok {
            errs.push("search.postgres", format!("no postgres target named {p:?}"));
        }
    }
    let (target_process, tp_targets) = target_process(raw.target_process, targets, errs);
    let mut list = Vec::new();
    for (k, v) in &raw.scenarios {
        if let Some(sc) = search_scenario(k, v, scenarios, errs) {
            list.push(sc);
        }
    }
    if list.is_empty() {
        errs.push("search.scenarios", "name at least one scenario to search");
    }
    if raw.mode == SearchMode::Matrix && list.len() != 2 {
        errs.push(
            "search.mode",
            "matrix searches exactly two scenarios (rows: the first, columns: the second)",
        );
    }
    let name = raw.name.unwrap_or_else(|| "search".into());
    if !super::valid_name(&name) {
        errs.push(
            "search.name",
            "1-64 characters of letters, digits, '_' or '-'",
        );
    }
    Some(SearchConfig {
        name,
        mode: raw.mode,
        each,
        warmup,
        refine: raw.refine,
        lag_limit: raw
            .lag_limit
            .map(|d| d.0)
            .unwrap_or(Duration::from_millis(100)),
        min_achieved,
        postgres: raw.postgres,
        target_process,
        target_process_targets: tp_targets,
        scenarios: list,
        regression_tolerance,
    })
}

/// `target_process`: the system under test's own process (a pid here, or a /metrics URL),
/// for CPU and RSS per level, and which targets it serves.
fn target_process(
    raw: Option<RawTargetProcess>,
    targets: &[Target],
    errs: &mut Errs,
) -> (Option<TargetProcess>, Vec<String>) {
    let tp_targets = raw.as_ref().map(|t| t.targets.clone()).unwrap_or_default();
    for (i, t) in tp_targets.iter().enumerate() {
        if !targets.iter().any(|x| x.name == *t) {
            errs.push(
                format!("search.target_process.targets[{i}]"),
                format!("no target named {t:?}"),
            );
        }
    }
    let target_process = match raw {
        None => None,
        Some(RawTargetProcess {
            pid: Some(p),
            metrics_url: None,
            ..
        }) => Some(TargetProcess::Pid(p)),
        Some(RawTargetProcess {
            pid: None,
            metrics_url: Some(u),
            ..
        }) => {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                errs.push(
                    "search.target_process.metrics_url",
                    "expected an http(s) URL",
                );
            }
            Some(TargetProcess::MetricsUrl(u))
        }
        Some(_) => {
            errs.push(
                "search.target_process",
                "give exactly one of `pid` or `metrics_url`",
            );
            None
        }
    };
    (target_process, tp_targets)
}

/// One `search.scenarios.NAME`: an open-model scenario with an SLO, and its levels in
/// ascending order.
fn search_scenario(
    k: &str,
    v: &Value,
    scenarios: &[Scenario],
    errs: &mut Errs,
) -> Option<SearchScenario> {
    let name = super::key_name(k, "search.scenarios", errs)?;
    let path = format!("search.scenarios.{name}");
    let r = errs.decode::<RawSearchScenario>(v, &path)?;
    match scenarios.iter().find(|s| s.name == name) {
        None => errs.push(&path, format!("no scenario named {name:?}")),
        Some(s) => {
            if s.arrival == super::Arrival::Closed {
                errs.push(
                    &path,
                    format!("scenario {name:?} has `arrival: closed`: a search offers rates, so it needs an open-model scenario (uniform or poisson)"),
                );
            }
            let slo = &s.slo;
            if !slo.is_set() {
                errs.push(
                    &path,
                    format!("scenario {name:?} has no `slo`: a search needs a limit to find"),
                );
            }
        }
    }
    let levels: Vec<f64> = r.levels.iter().map(|r| r.0).collect();
    if levels.is_empty() {
        errs.push(format!("{path}.levels"), "needs at least one level");
    }
    if levels.iter().any(|r| *r <= 0.0) {
        errs.push(format!("{path}.levels"), "levels must be above 0/s");
    }
    if levels.windows(2).any(|w| w[1] <= w[0]) {
        errs.push(
            format!("{path}.levels"),
            "levels must be in ascending order",
        );
    }
    Some(SearchScenario {
        name,
        levels,
        then: r.then.map(|r| r.0),
    })
}

impl SearchConfig {
    /// Levels the search runs at most (steps and refinements; matrix: every cell).
    pub fn max_levels(&self) -> usize {
        match self.mode {
            SearchMode::Isolated => self
                .scenarios
                .iter()
                .map(|s| s.levels.len() + self.refine as usize)
                .sum(),
            SearchMode::Matrix => self.scenarios.iter().map(|s| s.levels.len()).product(),
        }
    }

    /// The searched scenarios' names, in order.
    pub fn scenario_names(&self) -> Vec<&str> {
        self.scenarios.iter().map(|s| s.name.as_str()).collect()
    }

    pub fn describe(&self) -> String {
        let mut out = format!(
            "search {:?} ({}): each level {} (warm-up {}), refine {} step{}, invalid when lag p99 > {} or achieved < {:.0}% of offered\n",
            self.name,
            match self.mode {
                SearchMode::Isolated => "isolated",
                SearchMode::Matrix => "matrix",
            },
            crate::units::format_duration(self.each),
            crate::units::format_duration(self.warmup),
            self.refine,
            if self.refine == 1 { "" } else { "s" },
            crate::units::format_duration(self.lag_limit),
            self.min_achieved * 100.0
        );
        for s in &self.scenarios {
            let l: Vec<String> = s
                .levels
                .iter()
                .map(|r| crate::units::format_rate(*r))
                .collect();
            out.push_str(&format!(
                "  {}: [{}] then {}\n",
                s.name,
                l.join(", "),
                s.then
                    .map(crate::units::format_rate)
                    .unwrap_or_else(|| "its schedule".into())
            ));
        }
        let n = self.max_levels();
        out.push_str(&format!(
            "  at most {n} levels, {} at most\n",
            crate::units::format_duration(self.each * n as u32)
        ));
        out.push_str(&format!(
            "  regressed when {:.0}% below the baseline (soakd_capacity_max_sustainable vs soakd_capacity_baseline)\n",
            self.regression_tolerance * 100.0
        ));
        out
    }
}
