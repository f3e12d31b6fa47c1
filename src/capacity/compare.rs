//! Comparing two stored runs: did capacity regress since the reference run?
//!
//! Run A is the reference (a baseline, yesterday's run), run B the candidate. Per
//! scenario the comparison puts side by side the maximum sustainable level (isolated
//! searches) or the frontier (matrix searches), and at every level both runs measured:
//! the verdicts, p95/p99 and the error ratio. Each is judged against a tolerance
//! (`search.regression_tolerance`, default 10 %):
//!
//! - **capacity**: B's maximum sustainable level below A's by more than the tolerance
//!   (or nothing passing in B where something did in A) is a regression, above it an
//!   improvement; a level A passed and B failed is a regression whatever the maxima;
//! - **latency**: at a level both passed, a p95 or p99 worse by more than the tolerance
//!   of A's value *and* by more than the tolerance of the scenario's objective for that
//!   quantile (its p95 objective for p99 without one; 1 ms without either) — so that
//!   a 0.4 → 0.6 ms wobble far below a 50 ms objective is not called a regression;
//! - **errors**: an error ratio higher by more than the tolerance of A's ratio and by
//!   more than 0.1 percentage points.
//!
//! A scenario regressed if anything regressed, improved if something improved and
//! nothing regressed; the comparison's verdict is the worst of its scenarios'.

use crate::capacity::findings::{findings, frontier, isolated_levels};
use crate::capacity::record::{Run, RunStatus, SloView, Verdict};
use crate::units::format_rate;
use serde::Serialize;
use std::collections::BTreeMap;

/// `search.regression_tolerance` when not configured.
pub use crate::config::search::DEFAULT_REGRESSION_TOLERANCE as DEFAULT_TOLERANCE;
/// Latency changes below this count as noise when the scenario has no latency objective.
pub const LATENCY_FLOOR: f64 = 0.001;
/// Error-ratio changes below this (absolute) count as noise.
pub const ERROR_FLOOR: f64 = 0.001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Unchanged,
    Improved,
    Regressed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Unchanged => "unchanged",
            Change::Improved => "improved",
            Change::Regressed => "regressed",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CompareError {
    #[error("runs {a:?} and {b:?} searched no scenario in common ({a:?}: {sa}; {b:?}: {sb})")]
    NothingInCommon {
        a: String,
        b: String,
        sa: String,
        sb: String,
    },
    #[error("the tolerance must be within [0, 1), not {0}")]
    Tolerance(f64),
}

/// Which run a side of the comparison is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRef {
    pub id: String,
    pub name: String,
    pub started_at: f64,
    pub complete: bool,
}

impl RunRef {
    fn of(run: &Run) -> RunRef {
        RunRef {
            id: run.record.id.clone(),
            name: run.record.name.clone(),
            started_at: run.record.started_at,
            complete: run.record.status == RunStatus::Complete,
        }
    }
}

/// One scenario at one offered rate that both runs measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelDelta {
    pub rate: f64,
    pub verdict_a: Verdict,
    pub verdict_b: Verdict,
    pub p95_a: Option<f64>,
    pub p95_b: Option<f64>,
    pub p99_a: Option<f64>,
    pub p99_b: Option<f64>,
    pub error_ratio_a: f64,
    pub error_ratio_b: f64,
}

/// A matrix search's frontier at one rate of its first scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrontierDelta {
    pub row_rate: f64,
    pub best_a: Option<f64>,
    pub best_b: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioComparison {
    pub scenario: String,
    pub max_sustainable_a: Option<f64>,
    pub max_sustainable_b: Option<f64>,
    /// (B − A) / A, when both found one.
    pub max_sustainable_delta: Option<f64>,
    /// The levels both runs measured this scenario at on its own, by rate.
    pub levels: Vec<LevelDelta>,
    pub change: Change,
    /// What made the verdict, one line each (empty when unchanged).
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: RunRef,
    pub b: RunRef,
    pub tolerance: f64,
    pub change: Change,
    pub scenarios: Vec<ScenarioComparison>,
    /// Matrix searches: the frontier rows both runs measured (first scenario's rate →
    /// the highest passing rate of the second).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<FrontierDelta>,
    /// What makes the two runs less comparable (different plans or objectives, a run not
    /// finished, scenarios searched by one only).
    pub notes: Vec<String>,
}

/// The relative change from `a` to `b`.
fn rel(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        if b == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (b - a) / a
    }
}

fn signed_pct(r: f64) -> String {
    if r.is_infinite() {
        "new".into()
    } else {
        format!("{:+.0}%", r * 100.0)
    }
}

/// Compares run `b` against the reference run `a`.
pub fn compare(a: &Run, b: &Run, tolerance: f64) -> Result<Comparison, CompareError> {
    if !(0.0..1.0).contains(&tolerance) {
        return Err(CompareError::Tolerance(tolerance));
    }
    let names = |r: &Run| -> Vec<String> {
        r.record
            .search
            .scenario_names()
            .into_iter()
            .map(String::from)
            .collect()
    };
    let (na, nb) = (names(a), names(b));
    let common: Vec<&String> = na.iter().filter(|n| nb.contains(n)).collect();
    if common.is_empty() {
        return Err(CompareError::NothingInCommon {
            a: a.record.id.clone(),
            b: b.record.id.clone(),
            sa: na.join(", "),
            sb: nb.join(", "),
        });
    }
    let mut notes = Vec::new();
    for (run, side, other) in [(a, "A", &nb), (b, "B", &na)] {
        if run.record.status != RunStatus::Complete {
            notes.push(format!(
                "run {side} ({}) is not finished: its levels so far are compared",
                run.record.id
            ));
        }
        for n in names(run).iter().filter(|n| !other.contains(n)) {
            notes.push(format!("{n} was searched in run {side} only"));
        }
    }
    if a.record.name != b.record.name {
        notes.push(format!(
            "different searches: {:?} and {:?}",
            a.record.name, b.record.name
        ));
    }
    if a.record.search.mode != b.record.search.mode {
        notes.push("one search is isolated, the other a matrix".into());
    }
    let fa = findings(a);
    let fb = findings(b);
    let mut scenarios = Vec::new();
    for name in &common {
        let slo_a = a.record.slos.get(*name).cloned().unwrap_or_default();
        let slo_b = b.record.slos.get(*name).cloned().unwrap_or_default();
        if slo_a != slo_b {
            notes.push(format!(
                "{name}'s objectives differ between the runs: the verdicts were judged against different limits"
            ));
        }
        let ladder_b = b
            .record
            .search
            .scenarios
            .iter()
            .find(|s| &s.name == *name)
            .and_then(|s| s.levels.last().copied());
        let max_a = fa
            .iter()
            .find(|f| &f.scenario == *name)
            .and_then(|f| f.max_sustainable);
        let max_b = fb
            .iter()
            .find(|f| &f.scenario == *name)
            .and_then(|f| f.max_sustainable);
        scenarios.push(scenario(
            name,
            a,
            b,
            (max_a, max_b),
            ladder_b,
            &slo_a,
            tolerance,
        ));
    }
    let mut frontier_rows = Vec::new();
    let mut change = scenarios
        .iter()
        .map(|s| s.change)
        .max()
        .unwrap_or(Change::Unchanged);
    if a.record.search.mode == crate::config::search::SearchMode::Matrix
        && b.record.search.mode == a.record.search.mode
    {
        let fb = frontier(b);
        for (row, best_a) in frontier(a) {
            if let Some((_, best_b)) = fb.iter().find(|(r, _)| *r == row) {
                frontier_rows.push(FrontierDelta {
                    row_rate: row,
                    best_a,
                    best_b: *best_b,
                });
            }
        }
        let (c, reasons) = judge_frontier(a, &frontier_rows, tolerance);
        change = change.max(c);
        if let Some(s) = scenarios.first_mut() {
            s.change = s.change.max(c);
            s.reasons.extend(reasons);
        }
    }
    Ok(Comparison {
        a: RunRef::of(a),
        b: RunRef::of(b),
        tolerance,
        change,
        scenarios,
        frontier: frontier_rows,
        notes,
    })
}

/// The smallest latency change worth a verdict for a quantile with objective `limit`.
fn latency_floor(limit: Option<f64>, slo: &SloView, tolerance: f64) -> f64 {
    limit
        .or(slo.p95)
        .map(|l| l * tolerance)
        .unwrap_or(LATENCY_FLOOR)
        .max(LATENCY_FLOOR)
}

fn scenario(
    name: &str,
    a: &Run,
    b: &Run,
    (max_a, max_b): (Option<f64>, Option<f64>),
    ladder_top_b: Option<f64>,
    slo: &SloView,
    tolerance: f64,
) -> ScenarioComparison {
    let levels = paired_levels(a, b, name);
    let mut worse = Vec::new();
    let mut better = Vec::new();
    let max_delta = max_sustainable_delta(
        (max_a, max_b),
        ladder_top_b,
        tolerance,
        (&mut worse, &mut better),
    );
    for d in &levels {
        level_changes(d, slo, tolerance, (&mut worse, &mut better));
    }
    let (change, reasons) = verdict(worse, better);
    ScenarioComparison {
        scenario: name.to_string(),
        max_sustainable_a: max_a,
        max_sustainable_b: max_b,
        max_sustainable_delta: max_delta,
        levels,
        change,
        reasons,
    }
}

/// The levels both runs measured at the same offered rate, one row per rate.
fn paired_levels(a: &Run, b: &Run, name: &str) -> Vec<LevelDelta> {
    let la = isolated_levels(a, name);
    let lb = isolated_levels(b, name);
    let mut levels = Vec::new();
    for (_, sa) in &la {
        // The last measurement at a rate wins (a resumed run can repeat one).
        let Some((_, sb)) = lb
            .iter()
            .rev()
            .find(|(_, s)| s.offered_rate == sa.offered_rate)
        else {
            continue;
        };
        let d = LevelDelta {
            rate: sa.offered_rate,
            verdict_a: sa.verdict.unwrap_or(Verdict::Invalid),
            verdict_b: sb.verdict.unwrap_or(Verdict::Invalid),
            p95_a: sa.latency.p95,
            p95_b: sb.latency.p95,
            p99_a: sa.latency.p99,
            p99_b: sb.latency.p99,
            error_ratio_a: sa.error_ratio,
            error_ratio_b: sb.error_ratio,
        };
        match levels
            .iter_mut()
            .find(|x: &&mut LevelDelta| x.rate == d.rate)
        {
            Some(x) => *x = d,
            None => levels.push(d),
        }
    }
    levels
}

type Lines<'a> = (&'a mut Vec<String>, &'a mut Vec<String>);

/// The relative change of the maximum sustainable rate, with the line it adds to worse
/// or better.
fn max_sustainable_delta(
    (max_a, max_b): (Option<f64>, Option<f64>),
    ladder_top_b: Option<f64>,
    tolerance: f64,
    (worse, better): Lines,
) -> Option<f64> {
    match (max_a, max_b) {
        (Some(x), Some(y)) => {
            let r = rel(x, y);
            let line = format!(
                "maximum sustainable {} → {} ({})",
                format_rate(x),
                format_rate(y),
                signed_pct(r)
            );
            // B's ladder may simply end lower than A's maximum: then B never tried.
            let b_capped = ladder_top_b.is_some_and(|t| t <= y) && y < x;
            if r < -tolerance && !b_capped {
                worse.push(line);
            } else if r > tolerance {
                better.push(line);
            }
            Some(r)
        }
        (Some(x), None) => {
            worse.push(format!(
                "no level passed in run B (run A sustained {})",
                format_rate(x)
            ));
            None
        }
        (None, Some(y)) => {
            better.push(format!(
                "run B sustained {} where no level passed in run A",
                format_rate(y)
            ));
            None
        }
        (None, None) => None,
    }
}

/// What changed at one level: its verdict, and (where both passed) its latency beyond
/// the tolerance and the floor, and its error ratio.
fn level_changes(d: &LevelDelta, slo: &SloView, tolerance: f64, (worse, better): Lines) {
    let at = format_rate(d.rate);
    match (d.verdict_a, d.verdict_b) {
        (Verdict::Pass, Verdict::Fail) => worse.push(format!("{at}: passed in A, failed in B")),
        (Verdict::Fail, Verdict::Pass) => better.push(format!("{at}: failed in A, passed in B")),
        _ => {}
    }
    if d.verdict_a != Verdict::Pass || d.verdict_b != Verdict::Pass {
        return;
    }
    for (q, va, vb, limit) in [
        ("p95", d.p95_a, d.p95_b, slo.p95),
        ("p99", d.p99_a, d.p99_b, slo.p99),
    ] {
        let (Some(va), Some(vb)) = (va, vb) else {
            continue;
        };
        let floor = latency_floor(limit, slo, tolerance);
        let r = rel(va, vb);
        let line = format!(
            "{at}: {q} {} → {} ({})",
            crate::units::format_latency(va),
            crate::units::format_latency(vb),
            signed_pct(r)
        );
        if r > tolerance && vb - va > floor {
            worse.push(line);
        } else if r < -tolerance && va - vb > floor {
            better.push(line);
        }
    }
    let (ea, eb) = (d.error_ratio_a, d.error_ratio_b);
    let line = format!("{at}: errors {:.2}% → {:.2}%", ea * 100.0, eb * 100.0);
    if eb - ea > (ea * tolerance).max(ERROR_FLOOR) {
        worse.push(line);
    } else if ea - eb > (ea * tolerance).max(ERROR_FLOOR) {
        better.push(line);
    }
}

/// A matrix frontier row regresses when B's highest passing rate of the second scenario
/// is lower by more than the tolerance (or none passed).
fn judge_frontier(a: &Run, rows: &[FrontierDelta], tolerance: f64) -> (Change, Vec<String>) {
    let names = a.record.search.scenario_names();
    let (first, second) = (
        names.first().copied().unwrap_or("?"),
        names.get(1).copied().unwrap_or("?"),
    );
    let mut worse = Vec::new();
    let mut better = Vec::new();
    for r in rows {
        let at = format!("{first} {}", format_rate(r.row_rate));
        let show = |v: Option<f64>| v.map(format_rate).unwrap_or_else(|| "none".into());
        let line = format!(
            "{at}: highest {second} {} → {}",
            show(r.best_a),
            show(r.best_b)
        );
        match (r.best_a, r.best_b) {
            (Some(x), Some(y)) if rel(x, y) < -tolerance => worse.push(line),
            (Some(x), Some(y)) if rel(x, y) > tolerance => better.push(line),
            (Some(_), None) => worse.push(line),
            (None, Some(_)) => better.push(line),
            _ => {}
        }
    }
    verdict(worse, better)
}

/// Regressed if anything got worse (with those reasons), else improved if anything got
/// better, else unchanged.
fn verdict(worse: Vec<String>, better: Vec<String>) -> (Change, Vec<String>) {
    if !worse.is_empty() {
        (Change::Regressed, worse)
    } else if !better.is_empty() {
        (Change::Improved, better)
    } else {
        (Change::Unchanged, vec![])
    }
}

/// Per scenario, a run's maximum sustainable level — 0 when no level passed — as
/// `soakd_capacity_max_sustainable` and `soakd_capacity_baseline` export it. Empty for a
/// matrix search, which finds a frontier rather than one rate per scenario.
pub fn max_sustainable(run: &Run) -> BTreeMap<String, f64> {
    if run.record.search.mode == crate::config::search::SearchMode::Matrix {
        return BTreeMap::new();
    }
    findings(run)
        .into_iter()
        .map(|f| (f.scenario, f.max_sustainable.unwrap_or(0.0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored sample: `sleepy` passes 10/s (p95 55 ms), fails 200/s; SLO p95 150 ms.
    fn run(id: &str) -> Run {
        let mut r: Run = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/sample-run.json"
            ))
            .expect("tests/data/sample-run.json"),
        )
        .expect("the sample run parses");
        r.record.id = id.into();
        r
    }

    fn at(r: &mut Run, rate: f64) -> &mut crate::capacity::ScenarioLevel {
        r.levels
            .iter_mut()
            .flat_map(|l| l.scenarios.iter_mut())
            .find(|s| s.offered_rate == rate)
            .expect("a level at that rate")
    }

    fn set_verdict(r: &mut Run, rate: f64, v: Verdict) {
        at(r, rate).verdict = Some(v);
        for l in &mut r.levels {
            if l.scenarios.iter().any(|s| s.offered_rate == rate) {
                l.verdict = v;
            }
        }
    }

    #[test]
    fn identical_runs_are_unchanged() {
        let c = compare(&run("a"), &run("b"), DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Unchanged);
        let s = &c.scenarios[0];
        assert_eq!(
            (s.max_sustainable_a, s.max_sustainable_b),
            (Some(10.0), Some(10.0))
        );
        assert_eq!(s.max_sustainable_delta, Some(0.0));
        assert_eq!(s.levels.len(), 2);
        assert!(s.reasons.is_empty(), "{:?}", s.reasons);
    }

    #[test]
    fn a_slower_target_regresses_with_the_delta() {
        let mut b = run("b");
        at(&mut b, 10.0).latency.p95 = Some(0.090);
        let c = compare(&run("a"), &b, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Regressed);
        assert_eq!(
            c.scenarios[0].reasons,
            vec!["10/s: p95 55ms → 90ms (+64%)".to_string()]
        );
        // The other way round it is an improvement.
        let c = compare(&b, &run("a"), DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Improved);
    }

    #[test]
    fn small_changes_are_not_verdicts() {
        let mut b = run("b");
        // +9.5 %: under the tolerance.
        at(&mut b, 10.0).latency.p95 = Some(0.060);
        assert_eq!(
            compare(&run("a"), &b, 0.1).unwrap().change,
            Change::Unchanged
        );
        // +18 %, but 10 ms is under 10 % of the 150 ms objective.
        at(&mut b, 10.0).latency.p95 = Some(0.065);
        assert_eq!(
            compare(&run("a"), &b, 0.1).unwrap().change,
            Change::Unchanged
        );
        // A tolerance of 5 % of the objective is 7.5 ms: now it counts.
        assert_eq!(
            compare(&run("a"), &b, 0.05).unwrap().change,
            Change::Regressed
        );
        // The failing level's latency is not compared (both failed).
        let mut b = run("b");
        at(&mut b, 200.0).latency.p95 = Some(9.0);
        assert_eq!(
            compare(&run("a"), &b, 0.1).unwrap().change,
            Change::Unchanged
        );
    }

    #[test]
    fn capacity_lost_or_gained() {
        let mut b = run("b");
        set_verdict(&mut b, 10.0, Verdict::Fail);
        let c = compare(&run("a"), &b, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Regressed);
        assert_eq!(c.scenarios[0].max_sustainable_b, None);
        assert!(
            c.scenarios[0]
                .reasons
                .contains(&"no level passed in run B (run A sustained 10/s)".to_string())
                && c.scenarios[0]
                    .reasons
                    .contains(&"10/s: passed in A, failed in B".to_string()),
            "{:?}",
            c.scenarios[0].reasons
        );
        let mut b = run("b");
        set_verdict(&mut b, 200.0, Verdict::Pass);
        let c = compare(&run("a"), &b, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Improved);
        assert_eq!(c.scenarios[0].max_sustainable_delta, Some(19.0));
        assert_eq!(
            c.scenarios[0].reasons[0],
            "maximum sustainable 10/s → 200/s (+1900%)"
        );
        // Improved on capacity but slower at a level both passed: regressed wins.
        at(&mut b, 10.0).latency.p95 = Some(0.2);
        assert_eq!(
            compare(&run("a"), &b, 0.1).unwrap().change,
            Change::Regressed
        );
    }

    #[test]
    fn more_errors_regress() {
        let mut b = run("b");
        at(&mut b, 10.0).error_ratio = 0.005;
        let c = compare(&run("a"), &b, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Regressed);
        assert_eq!(
            c.scenarios[0].reasons,
            vec!["10/s: errors 0.00% → 0.50%".to_string()]
        );
        // 0.05 percentage points is noise.
        at(&mut b, 10.0).error_ratio = 0.0005;
        assert_eq!(
            compare(&run("a"), &b, 0.1).unwrap().change,
            Change::Unchanged
        );
    }

    #[test]
    fn a_shorter_ladder_is_not_a_regression() {
        // A passed 200/s; B's ladder stopped at 10/s, which it passed: B never tried more.
        let mut a = run("a");
        set_verdict(&mut a, 200.0, Verdict::Pass);
        let mut b = run("b");
        b.levels.retain(|l| l.spec.rate_of("sleepy") == 10.0);
        b.record.search.scenarios[0].levels = vec![10.0];
        let c = compare(&a, &b, 0.1).unwrap();
        assert_eq!(c.change, Change::Unchanged, "{:?}", c.scenarios[0].reasons);
    }

    #[test]
    fn runs_without_a_common_scenario_or_with_a_bad_tolerance_are_errors() {
        let mut b = run("b");
        b.record.search.scenarios[0].name = "other".into();
        assert!(matches!(
            compare(&run("a"), &b, 0.1),
            Err(CompareError::NothingInCommon { .. })
        ));
        assert_eq!(
            compare(&run("a"), &run("b"), 1.5),
            Err(CompareError::Tolerance(1.5))
        );
    }

    #[test]
    fn exported_maxima() {
        let mut r = run("a");
        assert_eq!(max_sustainable(&r).get("sleepy"), Some(&10.0));
        set_verdict(&mut r, 10.0, Verdict::Fail);
        assert_eq!(max_sustainable(&r).get("sleepy"), Some(&0.0));
    }
}
