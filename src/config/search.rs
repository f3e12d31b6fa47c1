//! The `search:` and `results:` sections: capacity search over discrete load levels,
//! and where its results are kept.

use crate::config::check::{resolve, Kind, Secret, TargetKinds};
use crate::config::errors::Errs;
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
    /// The process `targets.NAME.observe` names by a pid file or a pattern, looked up
    /// when the search starts.
    Observed(String),
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
    /// Run the search again periodically from the always-on daemon (None: once, at
    /// start). Scheduling, not plan: not stored with a run, not in its fingerprint.
    #[serde(skip)]
    pub every: Option<Every>,
}

/// When a scheduled search runs (`search.every`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Every {
    /// Start times spaced by this, from the previous run's start.
    Interval(Duration),
    /// Every day at this time of day (seconds after midnight) in a fixed UTC offset
    /// (seconds east of UTC).
    Daily { at: u32, offset: i32 },
}

/// The shortest `every` interval.
pub const MIN_EVERY: Duration = Duration::from_secs(10);

impl Every {
    /// Parses `6h` (any duration of at least 10 s) or `daily HH:MM[:SS][Z|±HH:MM]`.
    pub fn parse(s: &str) -> Result<Every, String> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("daily") {
            return Self::parse_daily(rest.trim());
        }
        match crate::units::parse_duration(t) {
            Some(d) if d >= MIN_EVERY => Ok(Every::Interval(d)),
            Some(_) => Err(format!(
                "must be at least {}",
                crate::units::format_duration(MIN_EVERY)
            )),
            None => Err(format!(
                "expected a duration like 6h or a time of day like \"daily 03:00+01:00\", got {s:?}"
            )),
        }
    }

    fn parse_daily(s: &str) -> Result<Every, String> {
        let bad = || {
            format!("expected \"daily HH:MM\", optionally with seconds and a UTC offset (\"daily 03:00:00+01:00\", \"daily 22:30Z\"), got \"daily {s}\"")
        };
        let (time, offset) = match s.find(['+', '-', 'Z', ' ']) {
            Some(i) => (&s[..i], s[i..].trim()),
            None => (s, ""),
        };
        let hms: Vec<u32> = time
            .split(':')
            .map(|p| p.parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let (h, m, sec) = match hms.as_slice() {
            [h, m] => (*h, *m, 0),
            [h, m, s] => (*h, *m, *s),
            _ => return Err(bad()),
        };
        if h > 23 || m > 59 || sec > 59 {
            return Err(bad());
        }
        let offset = match offset {
            "" | "Z" => 0,
            o => {
                let (sign, rest) = match o.as_bytes().first() {
                    Some(b'+') => (1, &o[1..]),
                    Some(b'-') => (-1, &o[1..]),
                    _ => return Err(bad()),
                };
                let (oh, om) = rest.split_once(':').unwrap_or((rest, "0"));
                let (oh, om): (i32, i32) = (
                    oh.parse().map_err(|_| bad())?,
                    om.parse().map_err(|_| bad())?,
                );
                if oh > 14 || om > 59 {
                    return Err(bad());
                }
                sign * (oh * 3600 + om * 60)
            }
        };
        Ok(Every::Daily {
            at: h * 3600 + m * 60 + sec,
            offset,
        })
    }

    /// The first start after `now` (Unix seconds) for a schedule whose previous run
    /// started at `prev` (None: no run yet). Slots a run overlapped are skipped, never
    /// queued: the search never overlaps itself.
    pub fn next_after(&self, prev: Option<f64>, now: f64) -> f64 {
        match *self {
            Every::Interval(d) => {
                let d = d.as_secs_f64();
                match prev {
                    None => now,
                    Some(p) if p + d >= now => p + d,
                    Some(p) => p + ((now - p) / d).ceil() * d,
                }
            }
            Every::Daily { at, offset } => {
                let local = now + offset as f64;
                let midnight = (local / 86_400.0).floor() * 86_400.0;
                let mut t = midnight + at as f64 - offset as f64;
                if t < now {
                    t += 86_400.0;
                }
                t
            }
        }
    }

    pub fn describe(&self) -> String {
        match *self {
            Every::Interval(d) => format!("every {}", crate::units::format_duration(d)),
            Every::Daily { at, offset } => {
                let sign = if offset < 0 { '-' } else { '+' };
                let o = offset.unsigned_abs();
                format!(
                    "daily at {:02}:{:02}:{:02} UTC{sign}{:02}:{:02}",
                    at / 3600,
                    at % 3600 / 60,
                    at % 60,
                    o / 3600,
                    o % 3600 / 60
                )
            }
        }
    }
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
    #[serde(default)]
    every: Option<String>,
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

/// What a search checks of a scenario it names.
pub(super) struct Candidate<'a> {
    pub name: &'a str,
    /// `arrival: closed`: it cannot be offered rates.
    pub closed: bool,
    /// It has an `slo` for the search to find the limit of.
    pub has_slo: bool,
}

pub(super) fn build_search(
    v: &Value,
    scenarios: &[Candidate],
    targets: &TargetKinds,
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
    let every = match raw.every.as_deref().map(Every::parse) {
        Some(Ok(e)) => Some(e),
        Some(Err(m)) => {
            errs.push("search.every", m);
            None
        }
        None => None,
    };
    if let Some(p) = &raw.postgres {
        let ok = targets
            .iter()
            .any(|t| t.name == p.as_str() && t.kind == Kind::Postgres);
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
    if !crate::config::check::valid_name(&name) {
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
        every,
    })
}

/// `target_process`: the system under test's own process (a pid here, or a /metrics URL),
/// for CPU and RSS per level, and which targets it serves.
fn target_process(
    raw: Option<RawTargetProcess>,
    targets: &TargetKinds,
    errs: &mut Errs,
) -> (Option<TargetProcess>, Vec<String>) {
    if raw.is_some() {
        errs.warn(
            "search.target_process",
            "deprecated: name the target's process once, under targets.NAME.observe (pid or metrics_url), where the soak judge and the capacity search both read it",
        );
    }
    let tp_targets = raw.as_ref().map(|t| t.targets.clone()).unwrap_or_default();
    for (i, t) in tp_targets.iter().enumerate() {
        if !targets.iter().any(|x| x.name == t.as_str()) {
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
    scenarios: &[Candidate],
    errs: &mut Errs,
) -> Option<SearchScenario> {
    let name = crate::config::check::key_name(k, "search.scenarios", errs)?;
    let path = format!("search.scenarios.{name}");
    let r = errs.decode::<RawSearchScenario>(v, &path)?;
    match scenarios.iter().find(|s| s.name == name) {
        None => errs.push(&path, format!("no scenario named {name:?}")),
        Some(s) => {
            if s.closed {
                errs.push(
                    &path,
                    format!("scenario {name:?} has `arrival: closed`: a search offers rates, so it needs an open-model scenario (uniform or poisson)"),
                );
            }
            if !s.has_slo {
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
        if let Some(e) = &self.every {
            out.push_str(&format!(
                "  runs {}; a start that falls during a run is skipped\n",
                e.describe()
            ));
        }
        out.push_str(&format!(
            "  regressed when {:.0}% below the baseline (soakd_capacity_max_sustainable vs soakd_capacity_baseline)\n",
            self.regression_tolerance * 100.0
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parses_intervals_and_times_of_day() {
        assert_eq!(
            Every::parse("6h"),
            Ok(Every::Interval(Duration::from_secs(6 * 3600)))
        );
        assert!(Every::parse("5s").unwrap_err().contains("at least 10s"));
        assert_eq!(
            Every::parse("daily 03:00"),
            Ok(Every::Daily {
                at: 3 * 3600,
                offset: 0
            })
        );
        assert_eq!(
            Every::parse("daily 22:30:15Z"),
            Ok(Every::Daily {
                at: 22 * 3600 + 30 * 60 + 15,
                offset: 0
            })
        );
        assert_eq!(
            Every::parse("daily 03:00+01:00"),
            Ok(Every::Daily {
                at: 3 * 3600,
                offset: 3600
            })
        );
        assert_eq!(
            Every::parse("daily 03:00 -05:30"),
            Ok(Every::Daily {
                at: 3 * 3600,
                offset: -(5 * 3600 + 1800)
            })
        );
        for bad in [
            "daily 24:00",
            "daily 3",
            "daily 03:00+1x",
            "weekly",
            "daily 03:61",
        ] {
            assert!(Every::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Every::parse("daily 03:00-05:30").unwrap().describe(),
            "daily at 03:00:00 UTC-05:30"
        );
    }

    #[test]
    fn the_next_start_never_overlaps_a_run() {
        let h = Every::Interval(Duration::from_secs(3600));
        // The first run starts now; then an hour after the previous start.
        assert_eq!(h.next_after(None, 1000.0), 1000.0);
        assert_eq!(h.next_after(Some(1000.0), 1500.0), 4600.0);
        // A run that took 2.5 h skips the slots it overlapped: the next is at +3 h.
        assert_eq!(
            h.next_after(Some(1000.0), 1000.0 + 9000.0),
            1000.0 + 10800.0
        );
        // 03:00 at UTC+01:00 is 02:00 UTC. 2026-12-02 00:00 UTC = 1_796_169_600.
        let day = 1_796_169_600.0;
        let d = Every::Daily {
            at: 3 * 3600,
            offset: 3600,
        };
        assert_eq!(d.next_after(None, day + 3600.0), day + 2.0 * 3600.0);
        assert_eq!(
            d.next_after(Some(day), day + 2.0 * 3600.0 + 1.0),
            day + 86_400.0 + 2.0 * 3600.0
        );
        // Near midnight local time (23:30 local = 22:30 UTC): tomorrow's 03:00 local.
        assert_eq!(
            d.next_after(None, day + 22.5 * 3600.0),
            day + 86_400.0 + 2.0 * 3600.0
        );
        // A negative offset: 03:00 at UTC-05:00 is 08:00 UTC.
        let w = Every::Daily {
            at: 3 * 3600,
            offset: -5 * 3600,
        };
        assert_eq!(w.next_after(None, day + 3600.0), day + 8.0 * 3600.0);
    }
}
