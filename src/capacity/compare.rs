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
//! Where both runs kept their levels in blocks (`ScenarioLevel::blocks`), latency and
//! errors at a level both passed are judged as the deploy judge judges a deploy
//! (`shift::compare`: a block bootstrap and a rank test of p50/p95/p99, a permutation
//! test of each error kind's ratio, Holm over every test of the comparison at a 1 %
//! false-alarm rate, and the minimum effects: 5 % of a quantile, errors 50 % relative
//! and a tenth of the objective) — and, because a rerun differs from a run by more than
//! the noise within either (a 5 ms target once read p95 161 ms and 88 ms in two
//! identical runs), by the spread between runs too:
//!
//! - with **repeated baselines** (`--compare A1,A2,A3 B`), a change must also lie
//!   outside the baselines' own spread: a prediction interval over their values (log
//!   quantiles, error ratios), Student's t with k − 1 degrees of freedom, Holm again;
//! - with **one** baseline that spread is unknown, so a change must also pass the
//!   tolerance rule above.
//!
//! A scenario regressed if anything regressed, improved if something improved and
//! nothing regressed; the comparison's verdict is the worst of its scenarios'.

use crate::capacity::findings::{findings, frontier, isolated_levels};
use crate::capacity::record::{Run, RunStatus, ScenarioLevel, SloView, Verdict};
use crate::shift::{self, Block, Finding, OpWindows, Settings};
use crate::units::format_rate;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

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
    #[error("no reference run to compare with")]
    NoReference,
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

/// One measure of one level tested on its blocks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelTest {
    /// The block test (its `change` is the comparison's, after the spread).
    #[serde(flatten)]
    pub finding: Finding,
    /// With repeated baselines: the Holm-adjusted p-value of B's value against the
    /// baselines' spread between runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread_p: Option<f64>,
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
    /// Where both passed and both kept blocks: every measure tested.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<LevelTest>,
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
    /// Every reference run when there are several (A is the first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<RunRef>,
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
    compare_with(&[a], b, tolerance)
}

/// Compares run `b` against reference runs `refs` (one, or repeated baselines whose
/// spread a change must exceed); the first is run A of the report.
pub fn compare_with(refs: &[&Run], b: &Run, tolerance: f64) -> Result<Comparison, CompareError> {
    if !(0.0..1.0).contains(&tolerance) {
        return Err(CompareError::Tolerance(tolerance));
    }
    let Some(a) = refs.first().copied() else {
        return Err(CompareError::NoReference);
    };
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
    let tests = level_tests(refs, b, &common, &mut notes);
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
        // Repeated baselines: B is worse only below the lowest of them, better only
        // above the highest.
        let maxima: Vec<Option<f64>> = refs
            .iter()
            .map(|r| {
                findings(r)
                    .into_iter()
                    .find(|f| &f.scenario == *name)
                    .and_then(|f| f.max_sustainable)
            })
            .collect();
        let range = if maxima.iter().all(Option::is_some) {
            let v: Vec<f64> = maxima.iter().flatten().copied().collect();
            (
                v.iter().copied().fold(f64::INFINITY, f64::min),
                v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        } else {
            (f64::NAN, f64::NAN)
        };
        let max_b = fb
            .iter()
            .find(|f| &f.scenario == *name)
            .and_then(|f| f.max_sustainable);
        scenarios.push(scenario(
            name,
            a,
            b,
            (max_a, max_b),
            range,
            ladder_b,
            &slo_a,
            tolerance,
            &tests,
            refs.len(),
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
        baselines: if refs.len() > 1 {
            refs.iter().map(|r| RunRef::of(r)).collect()
        } else {
            Vec::new()
        },
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

#[allow(clippy::too_many_arguments)]
fn scenario(
    name: &str,
    a: &Run,
    b: &Run,
    (max_a, max_b): (Option<f64>, Option<f64>),
    (lowest, highest): (f64, f64),
    ladder_top_b: Option<f64>,
    slo: &SloView,
    tolerance: f64,
    tests: &LevelTests,
    refs: usize,
) -> ScenarioComparison {
    let mut levels = paired_levels(a, b, name);
    let mut worse = Vec::new();
    let mut better = Vec::new();
    let max_delta = max_sustainable_delta(
        (max_a, max_b),
        ladder_top_b,
        tolerance,
        (&mut worse, &mut better),
    );
    if refs > 1 && lowest.is_finite() {
        // Against the baselines' range, not run A alone.
        worse.retain(|l| !l.starts_with("maximum sustainable"));
        better.retain(|l| !l.starts_with("maximum sustainable"));
        if let Some(y) = max_b {
            let b_capped = ladder_top_b.is_some_and(|t| t <= y) && y < lowest;
            let line = |x: f64| {
                format!(
                    "maximum sustainable {} against the {refs} baselines' {}–{} ({})",
                    format_rate(y),
                    format_rate(lowest),
                    format_rate(highest),
                    signed_pct(rel(x, y))
                )
            };
            if rel(lowest, y) < -tolerance && !b_capped {
                worse.push(line(lowest));
            } else if rel(highest, y) > tolerance {
                better.push(line(highest));
            }
        }
    }
    for d in levels.iter_mut() {
        if let Some(t) = tests.get(&(name.to_string(), d.rate.to_bits())) {
            d.tests = t.clone();
        }
        level_changes(d, slo, tolerance, refs, (&mut worse, &mut better));
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
            tests: Vec::new(),
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

/// What changed at one level: its verdict, and (where both passed) its latency and
/// error ratio — by its block tests where it has them (with one baseline, only what
/// also passes the tolerance rule), else by the tolerance and the floor.
fn level_changes(
    d: &LevelDelta,
    slo: &SloView,
    tolerance: f64,
    refs: usize,
    (worse, better): Lines,
) {
    let at = format_rate(d.rate);
    match (d.verdict_a, d.verdict_b) {
        (Verdict::Pass, Verdict::Fail) => worse.push(format!("{at}: passed in A, failed in B")),
        (Verdict::Fail, Verdict::Pass) => better.push(format!("{at}: failed in A, passed in B")),
        _ => {}
    }
    if d.verdict_a != Verdict::Pass || d.verdict_b != Verdict::Pass {
        return;
    }
    if !d.tests.is_empty() {
        let (mut tol_worse, mut tol_better) = (Vec::new(), Vec::new());
        tolerance_changes(d, slo, tolerance, (&mut tol_worse, &mut tol_better));
        let tol = |lines: &[String], measure: &str| {
            let m = if measure.starts_with("errors") {
                "errors"
            } else {
                measure
            };
            lines.iter().any(|l| l.starts_with(&format!("{at}: {m} ")))
        };
        for t in &d.tests {
            let f = &t.finding;
            let line = format!("{at}: {}", f.why);
            match f.change {
                shift::Change::Worse if refs > 1 || tol(&tol_worse, &f.measure) => worse.push(line),
                shift::Change::Better if refs > 1 || tol(&tol_better, &f.measure) => {
                    better.push(line)
                }
                _ => {}
            }
        }
        return;
    }
    tolerance_changes(d, slo, tolerance, (worse, better));
}

/// A passed level's latency beyond the tolerance and the floor, and its error ratio.
fn tolerance_changes(d: &LevelDelta, slo: &SloView, tolerance: f64, (worse, better): Lines) {
    let at = format_rate(d.rate);
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

/// Blocks with operations each side of a level needs to be tested: with fewer, a rank
/// test cannot reach a 1 % false-alarm rate after Holm's correction (5 against 5 at
/// best p = 0.008), so the level is judged by the tolerance.
pub const LEVEL_MIN_BLOCKS: usize = 8;

/// Each level's block tests, by `(scenario, rate bits)`.
type LevelTests = HashMap<(String, u64), Vec<LevelTest>>;

/// A tested level: its key, and each reference run's blocks at it.
type Tested<'r> = ((String, u64), Vec<Vec<&'r Block>>);

/// A run's last measurement of `name` at `rate`, when it passed.
fn passed_at<'r>(run: &'r Run, name: &str, rate: f64) -> Option<&'r ScenarioLevel> {
    isolated_levels(run, name)
        .into_iter()
        .rev()
        .map(|(_, s)| s)
        .find(|s| s.offered_rate == rate)
        .filter(|s| s.verdict == Some(Verdict::Pass))
}

fn busy(blocks: &[&Block]) -> usize {
    blocks.iter().filter(|b| b.count() > 0).count()
}

/// Tests every level that B and every reference passed and that kept its blocks: the
/// references' blocks pooled against B's (`shift::compare`, Holm over the whole
/// comparison), then — with repeated baselines — B's value against their spread.
fn level_tests(refs: &[&Run], b: &Run, common: &[&String], notes: &mut Vec<String>) -> LevelTests {
    let settings = Settings::default();
    let mut ops: Vec<OpWindows> = Vec::new();
    // Per tested level: its key and each reference's blocks.
    let mut keys: HashMap<String, Tested> = HashMap::new();
    let mut untested = 0usize;
    for name in common {
        // The last measurement at a rate wins (a resumed run can repeat one).
        let mut seen: Vec<u64> = Vec::new();
        for (_, lb) in isolated_levels(b, name).into_iter().rev() {
            if seen.contains(&lb.offered_rate.to_bits()) {
                continue;
            }
            seen.push(lb.offered_rate.to_bits());
            if lb.verdict != Some(Verdict::Pass) {
                continue;
            }
            let Some(levels) = refs
                .iter()
                .map(|r| passed_at(r, name, lb.offered_rate))
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let own: Vec<Vec<&Block>> = levels.iter().map(|l| l.blocks.iter().collect()).collect();
            let after: Vec<&Block> = lb.blocks.iter().collect();
            if busy(&after) < LEVEL_MIN_BLOCKS || own.iter().any(|o| busy(o) < LEVEL_MIN_BLOCKS) {
                untested += 1;
                continue;
            }
            let subject = format!("{name} at {}", format_rate(lb.offered_rate));
            let floor = b
                .record
                .slos
                .get(name.as_str())
                .and_then(|s| s.error_rate)
                .map_or(0.001, |r| r / 10.0);
            ops.push(OpWindows {
                subject: subject.clone(),
                before: own.iter().flatten().copied().collect(),
                after,
                errors_floor: floor,
                control: None,
                drift: None,
            });
            keys.insert(
                subject,
                ((name.to_string(), lb.offered_rate.to_bits()), own),
            );
        }
    }
    if untested > 0 {
        notes.push(format!(
            "{untested} levels both passed without at least {LEVEL_MIN_BLOCKS} blocks with operations on each side (runs stored before levels kept blocks, or windows under 4 s): judged by the tolerance alone"
        ));
    }
    if ops.is_empty() {
        return LevelTests::new();
    }
    let ids: Vec<&str> = refs
        .iter()
        .map(|r| r.record.id.as_str())
        .chain([b.record.id.as_str()])
        .collect();
    let seed = shift::compare::seed_of(&ids);
    let found: Vec<Finding> = shift::compare(&ops, &[], &settings, seed);
    // B's value against each reference's own, for every finding.
    let spread: Vec<Option<f64>> = found
        .iter()
        .map(|f| {
            let (_, own) = keys.get(&f.subject)?;
            let xs: Vec<f64> = own
                .iter()
                .map(|blocks| value_of(blocks, &f.measure))
                .collect::<Option<Vec<f64>>>()?;
            let y = if f.measure.starts_with('p') {
                f.after.ln()
            } else {
                f.after
            };
            shift::stats::prediction_p(&xs, y)
        })
        .collect();
    let with: Vec<f64> = spread.iter().flatten().copied().collect();
    let adjusted = shift::stats::holm(&with);
    let mut next = adjusted.into_iter();
    let mut out = LevelTests::new();
    for (mut f, p) in found.into_iter().zip(spread) {
        let spread_p = p.and_then(|_| next.next());
        if let Some(sp) = spread_p {
            if f.change != shift::Change::None && sp > settings.false_alarm {
                f.change = shift::Change::None;
                f.why = format!(
                    "{} — but within the {} baselines' own spread from run to run (p = {sp:.3})",
                    f.why,
                    refs.len()
                );
            }
        }
        let Some((key, _)) = keys.get(&f.subject) else {
            continue;
        };
        // The level's rate leads the reason line already.
        f.why = f.why.replace(&f.subject, &key.0);
        out.entry(key.clone()).or_default().push(LevelTest {
            finding: f,
            spread_p,
        });
    }
    if refs.len() > 1 {
        notes.push(format!(
            "the spread between the {} baselines is measured: a change must lie outside it as well as beyond the noise within the runs",
            refs.len()
        ));
    } else {
        notes.push(
            "one baseline: the spread between reruns is unknown, so a change the block tests find must also exceed the tolerance; compare against repeated baselines (--compare A1,A2,A3 B) to measure it".into(),
        );
    }
    out
}

/// A reference run's own value of `measure` over its blocks: a quantile's log, or an
/// error kind's ratio.
fn value_of(blocks: &[&Block], measure: &str) -> Option<f64> {
    if let Some(kind) = measure.strip_prefix("errors:") {
        let n: u64 = blocks.iter().map(|b| b.requests).sum();
        let e: u64 = blocks
            .iter()
            .map(|b| b.errors.get(kind).copied().unwrap_or(0))
            .sum();
        return (n > 0).then(|| e as f64 / n as f64);
    }
    let q: f64 = measure.strip_prefix('p')?.parse::<f64>().ok()? / 100.0;
    let mut h: Vec<(i32, u32)> = blocks.iter().flat_map(|b| b.hist.iter().copied()).collect();
    h.sort_unstable();
    Some(shift::block::quantile_of(&h, q)?.ln())
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

    /// `n` blocks of 2,000 exponential latencies with a mean of 50 ms × `scale`.
    fn blocks(rng: &mut rand::rngs::StdRng, n: usize, scale: f64) -> Vec<Block> {
        use rand::Rng;
        (0..n)
            .map(|i| {
                let mut h = crate::metrics::window::new_hist::<u64>();
                for _ in 0..2000 {
                    let u: f64 = rng.random_range(1e-9..1.0);
                    h.record((-u.ln() * 50_000.0 * scale).max(1.0) as u64)
                        .unwrap();
                }
                Block {
                    t: i as f64,
                    secs: 1.0,
                    hist: Block::hist_of(&h),
                    requests: 2000,
                    errors: BTreeMap::new(),
                }
            })
            .collect()
    }

    /// The sample run with its 10/s level kept in blocks at `scale`.
    fn run_at(id: &str, rng: &mut rand::rngs::StdRng, scale: f64) -> Run {
        let mut r = run(id);
        let l = at(&mut r, 10.0);
        l.blocks = blocks(rng, 10, scale);
        let refs: Vec<&Block> = l.blocks.iter().collect();
        let q = |m: &str| value_of(&refs, m).map(f64::exp);
        (l.latency.p50, l.latency.p95, l.latency.p99) = (q("p50"), q("p95"), q("p99"));
        r
    }

    fn latency_lines(c: &Comparison) -> Vec<String> {
        c.scenarios[0]
            .reasons
            .iter()
            .filter(|r| r.starts_with("10/s: p"))
            .cloned()
            .collect()
    }

    #[test]
    fn levels_with_blocks_are_judged_by_the_block_tests() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // One baseline, B 30 % slower at every quantile: found by the tests, with
        // intervals, and beyond the tolerance.
        let a = run_at("a", &mut rng, 1.0);
        let b = run_at("b", &mut rng, 1.3);
        let c = compare(&a, &b, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Regressed, "{:?}", c.scenarios[0].reasons);
        let lines = latency_lines(&c);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("10/s: p95 of sleepy ") && l.contains("95 % interval")),
            "{lines:?}"
        );
        let t = &c.scenarios[0].levels[0].tests;
        assert!(t.iter().any(|t| t.finding.measure == "p95"), "{t:?}");
        assert!(t.iter().all(|t| t.spread_p.is_none()));
        assert!(
            c.notes.iter().any(|n| n.starts_with("one baseline")),
            "{:?}",
            c.notes
        );
        // The same run again: nothing.
        let same = run_at("c", &mut rng, 1.0);
        let c = compare(&a, &same, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Unchanged, "{:?}", c.scenarios[0].reasons);
        // 3 % slower: significant with this many operations, but under the minimum
        // effect (5 %) and the tolerance.
        let b = run_at("d", &mut rng, 1.03);
        let c = compare(&a, &b, DEFAULT_TOLERANCE).unwrap();
        assert!(latency_lines(&c).is_empty(), "{:?}", latency_lines(&c));
    }

    #[test]
    fn repeated_baselines_measure_the_spread_between_runs() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        // Reruns that wander by tens of percent (as a loaded machine's do): B 30 %
        // slower than the first lies inside their spread, so it is no change.
        let wide: Vec<Run> = [1.0, 1.5, 0.75, 1.2, 0.9]
            .iter()
            .enumerate()
            .map(|(i, s)| run_at(&format!("w{i}"), &mut rng, *s))
            .collect();
        let b = run_at("b", &mut rng, 1.3);
        let refs: Vec<&Run> = wide.iter().collect();
        let c = compare_with(&refs, &b, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Unchanged, "{:?}", c.scenarios[0].reasons);
        assert_eq!(c.baselines.len(), 5);
        let t = &c.scenarios[0].levels[0].tests;
        let p95 = t.iter().find(|t| t.finding.measure == "p95").unwrap();
        assert!(p95.spread_p.unwrap() > 0.01, "{p95:?}");
        assert_eq!(p95.finding.change, shift::Change::None, "{p95:?}");
        // Reruns that agree: the same B is a regression.
        let tight: Vec<Run> = (0..5)
            .map(|i| run_at(&format!("t{i}"), &mut rng, 1.0))
            .collect();
        let refs: Vec<&Run> = tight.iter().collect();
        let c = compare_with(&refs, &b, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Regressed, "{:?}", c.scenarios[0].reasons);
        let p95 = c.scenarios[0].levels[0]
            .tests
            .iter()
            .find(|t| t.finding.measure == "p95")
            .unwrap()
            .clone();
        assert!(p95.spread_p.unwrap() < 0.01, "{p95:?}");
        assert!(c
            .notes
            .iter()
            .any(|n| n.contains("spread between the 5 baselines")));
        // The maximum sustainable is judged against the baselines' range.
        let mut low = run_at("low", &mut rng, 1.0);
        set_verdict(&mut low, 10.0, Verdict::Fail);
        let c = compare_with(&refs, &low, DEFAULT_TOLERANCE).unwrap();
        assert_eq!(c.change, Change::Regressed);
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
