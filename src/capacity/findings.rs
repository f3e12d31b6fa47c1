//! What a run found: per scenario the highest passing level and the first failure
//! ([`findings`]), a matrix search's frontier, and the levels of an isolated search.

use super::record::{LevelResult, Phase, Run, ScenarioLevel, Verdict};
use serde::Serialize;

/// One scenario's isolated levels with the level each belongs to, by offered rate.
pub type Levels<'a> = [(&'a LevelResult, &'a ScenarioLevel)];

/// What a finished (or partial) run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub scenario: String,
    /// The highest passing level (None: not even the first level passed).
    pub max_sustainable: Option<f64>,
    /// The lowest failing level above it, if the search reached one.
    pub first_failure: Option<f64>,
    /// The lowest invalid level, if soakd could not offer one.
    pub first_invalid: Option<f64>,
}

/// Isolated searches: per scenario, the highest passing level among levels where it was
/// the only searched scenario under load.
pub fn findings(run: &Run) -> Vec<Finding> {
    run.record
        .search
        .scenarios
        .iter()
        .map(|s| {
            let mut f = Finding {
                scenario: s.name.clone(),
                max_sustainable: None,
                first_failure: None,
                first_invalid: None,
            };
            for l in &run.levels {
                let active: Vec<&(String, f64)> =
                    l.spec.rates.iter().filter(|(_, r)| *r > 0.0).collect();
                let [(name, rate)] = active.as_slice() else {
                    continue;
                };
                if *name != s.name {
                    continue;
                }
                let rate = *rate;
                match l.verdict {
                    Verdict::Pass => {
                        f.max_sustainable = Some(f.max_sustainable.map_or(rate, |m| m.max(rate)))
                    }
                    Verdict::Fail => {
                        f.first_failure = Some(f.first_failure.map_or(rate, |m| m.min(rate)))
                    }
                    Verdict::Invalid => {
                        f.first_invalid = Some(f.first_invalid.map_or(rate, |m| m.min(rate)))
                    }
                }
            }
            f
        })
        .collect()
}

/// The levels where `scenario` was the only searched scenario under load, by offered
/// rate (the report's tables and charts, and a comparison's common levels).
pub fn isolated_levels<'a>(
    run: &'a Run,
    scenario: &str,
) -> Vec<(&'a LevelResult, &'a ScenarioLevel)> {
    let mut v: Vec<(&LevelResult, &ScenarioLevel)> = run
        .levels
        .iter()
        .filter(|l| l.spec.phase != Phase::Matrix)
        .filter_map(|l| match l.scenarios.as_slice() {
            [s] if s.scenario == scenario => Some((l, s)),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.1.offered_rate.total_cmp(&b.1.offered_rate));
    v
}

/// Matrix searches: for each row rate, the highest passing column rate.
pub fn frontier(run: &Run) -> Vec<(f64, Option<f64>)> {
    let (Some(a), Some(b)) = (
        run.record.search.scenarios.first(),
        run.record.search.scenarios.get(1),
    ) else {
        return vec![];
    };
    let mut rows: Vec<(f64, Option<f64>)> = Vec::new();
    for l in run.levels.iter().filter(|l| l.spec.phase == Phase::Matrix) {
        let (ra, rb) = (l.spec.rate_of(&a.name), l.spec.rate_of(&b.name));
        let i = match rows.iter().position(|(r, _)| *r == ra) {
            Some(i) => i,
            None => {
                rows.push((ra, None));
                rows.len() - 1
            }
        };
        if l.verdict == Verdict::Pass {
            let best = &mut rows[i].1;
            *best = Some(best.map_or(rb, |m: f64| m.max(rb)));
        }
    }
    rows
}
