//! The search itself, as a pure function: [`plan_next`] gives the next level from the
//! verdicts so far (steps, bisection, matrix), so a restarted soakd replays the stored
//! levels through it to resume; [`fingerprint`] names a plan, so only a run of the same
//! plan is resumed.

use super::record::{LevelSpec, Phase, SloView, Verdict};
use crate::config::search::{SearchConfig, SearchMode};
use std::collections::BTreeMap;

/// Replays stored verdicts; the first question past them is the next level to run.
struct Replay<'a> {
    done: &'a [Verdict],
    k: usize,
}

impl Replay<'_> {
    fn ask(&mut self, spec: LevelSpec) -> Result<Verdict, LevelSpec> {
        match self.done.get(self.k) {
            Some(v) => {
                self.k += 1;
                Ok(*v)
            }
            None => Err(spec),
        }
    }
}

/// Rounds a bisection midpoint to a rate worth printing.
fn nice_mid(lo: f64, hi: f64) -> f64 {
    let mid = (lo + hi) / 2.0;
    if mid >= 10.0 {
        mid.round()
    } else {
        (mid * 100.0).round() / 100.0
    }
}

/// The next level of the search after the levels whose verdicts are `done` (in the
/// order they ran), or None when the search is complete.
pub fn plan_next(cfg: &SearchConfig, done: &[Verdict]) -> Option<LevelSpec> {
    let mut r = Replay { done, k: 0 };
    walk(cfg, &mut r).err()
}

fn rates_with(cfg: &SearchConfig, set: &[(&str, f64)]) -> Vec<(String, f64)> {
    cfg.scenarios
        .iter()
        .map(|s| {
            let r = set
                .iter()
                .find(|(n, _)| *n == s.name)
                .map(|(_, r)| *r)
                .unwrap_or(0.0);
            (s.name.clone(), r)
        })
        .collect()
}

fn walk(cfg: &SearchConfig, r: &mut Replay) -> Result<(), LevelSpec> {
    match cfg.mode {
        SearchMode::Isolated => {
            for s in &cfg.scenarios {
                let mut last_pass: Option<f64> = None;
                let mut first_fail: Option<f64> = None;
                for &rate in &s.levels {
                    let v = r.ask(LevelSpec {
                        phase: Phase::Step,
                        rates: rates_with(cfg, &[(&s.name, rate)]),
                    })?;
                    match v {
                        Verdict::Pass => last_pass = Some(rate),
                        Verdict::Fail => {
                            first_fail = Some(rate);
                            break;
                        }
                        Verdict::Invalid => break,
                    }
                }
                if let Some(mut hi) = first_fail {
                    let mut lo = last_pass.unwrap_or(0.0);
                    for _ in 0..cfg.refine {
                        let mid = nice_mid(lo, hi);
                        if mid <= lo || mid >= hi || hi - lo < (0.02 * hi).max(0.01) {
                            break;
                        }
                        let v = r.ask(LevelSpec {
                            phase: Phase::Refine,
                            rates: rates_with(cfg, &[(&s.name, mid)]),
                        })?;
                        match v {
                            Verdict::Pass => lo = mid,
                            Verdict::Fail => hi = mid,
                            Verdict::Invalid => break,
                        }
                    }
                }
            }
        }
        SearchMode::Matrix => {
            let (Some(a), Some(b)) = (cfg.scenarios.first(), cfg.scenarios.get(1)) else {
                return Ok(());
            };
            for &ra in &a.levels {
                for (j, &rb) in b.levels.iter().enumerate() {
                    let v = r.ask(LevelSpec {
                        phase: Phase::Matrix,
                        rates: rates_with(cfg, &[(&a.name, ra), (&b.name, rb)]),
                    })?;
                    if v != Verdict::Pass {
                        if j == 0 {
                            // Even the lightest column breaks: higher rows will too.
                            return Ok(());
                        }
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// 64-bit FNV-1a over the plan's JSON: stable across builds, unlike `DefaultHasher`.
pub fn fingerprint(search: &SearchConfig, slos: &BTreeMap<String, SloView>) -> String {
    let text = serde_json::json!({ "search": search, "slos": slos }).to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A search config for the unit tests of the search and the judge.
#[cfg(test)]
pub(crate) fn test_search(mode: SearchMode, refine: u32) -> SearchConfig {
    SearchConfig {
        name: "t".into(),
        mode,
        each: std::time::Duration::from_secs(10),
        warmup: std::time::Duration::from_secs(2),
        refine,
        lag_limit: std::time::Duration::from_millis(100),
        min_achieved: 0.95,
        postgres: None,
        target_process: None,
        target_process_targets: vec![],
        scenarios: vec![
            crate::config::search::SearchScenario {
                name: "api".into(),
                levels: vec![50.0, 100.0, 200.0, 500.0, 1000.0],
                then: Some(20.0),
            },
            crate::config::search::SearchScenario {
                name: "events".into(),
                levels: vec![100.0, 500.0, 1000.0],
                then: None,
            },
        ],
        regression_tolerance: crate::capacity::compare::DEFAULT_TOLERANCE,
        every: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: SearchMode, refine: u32) -> SearchConfig {
        test_search(mode, refine)
    }

    /// Runs the search against a system that passes below `limit_api`/`limit_ev`
    /// (and is invalid above `gen_limit`), returning the levels asked for.
    fn simulate(
        c: &SearchConfig,
        ok: impl Fn(&[(String, f64)]) -> Verdict,
    ) -> Vec<(LevelSpec, Verdict)> {
        let mut done = Vec::new();
        let mut asked = Vec::new();
        while let Some(spec) = plan_next(c, &done) {
            let v = ok(&spec.rates);
            done.push(v);
            asked.push((spec, v));
            assert!(asked.len() < 100, "search does not end");
        }
        asked
    }

    fn rate(r: &[(String, f64)], n: &str) -> f64 {
        r.iter().find(|(s, _)| s == n).map(|x| x.1).unwrap_or(0.0)
    }

    #[test]
    fn isolated_steps_until_breach_then_bisects() {
        let c = cfg(SearchMode::Isolated, 3);
        let asked = simulate(&c, |r| {
            if rate(r, "api") > 300.0 || rate(r, "events") > 700.0 {
                Verdict::Fail
            } else {
                Verdict::Pass
            }
        });
        let api: Vec<f64> = asked
            .iter()
            .filter(|(s, _)| rate(&s.rates, "api") > 0.0)
            .map(|(s, _)| rate(&s.rates, "api"))
            .collect();
        // Steps 50, 100, 200, 500 (fail), then 350 (fail), 275 (pass), 313 (fail).
        assert_eq!(api, vec![50.0, 100.0, 200.0, 500.0, 350.0, 275.0, 313.0]);
        // While api is searched, events is held at 0 and vice versa.
        for (s, _) in &asked {
            assert!(rate(&s.rates, "api") == 0.0 || rate(&s.rates, "events") == 0.0);
        }
        let ev: Vec<f64> = asked
            .iter()
            .filter(|(s, _)| rate(&s.rates, "events") > 0.0)
            .map(|(s, _)| rate(&s.rates, "events"))
            .collect();
        assert_eq!(ev, vec![100.0, 500.0, 1000.0, 750.0, 625.0, 688.0]);
        assert_eq!(asked[4].0.phase, Phase::Refine);
    }

    #[test]
    fn invalid_level_ends_a_scenario_without_refining() {
        let c = cfg(SearchMode::Isolated, 3);
        let asked = simulate(&c, |r| {
            if rate(r, "api") >= 200.0 {
                Verdict::Invalid
            } else {
                Verdict::Pass
            }
        });
        let api: Vec<f64> = asked
            .iter()
            .map(|(s, _)| rate(&s.rates, "api"))
            .filter(|r| *r > 0.0)
            .collect();
        assert_eq!(api, vec![50.0, 100.0, 200.0]);
    }

    #[test]
    fn resume_replays_to_the_same_next_level() {
        let c = cfg(SearchMode::Isolated, 2);
        let done = [Verdict::Pass, Verdict::Pass, Verdict::Pass, Verdict::Fail];
        let next = plan_next(&c, &done).unwrap();
        assert_eq!(next.phase, Phase::Refine);
        assert_eq!(rate(&next.rates, "api"), 350.0);
    }

    #[test]
    fn matrix_walks_rows_and_stops_when_the_first_column_breaks() {
        let c = cfg(SearchMode::Matrix, 0);
        let asked = simulate(&c, |r| {
            // Combined capacity: api + events/2 <= 700.
            if rate(r, "api") + rate(r, "events") / 2.0 <= 700.0 {
                Verdict::Pass
            } else {
                Verdict::Fail
            }
        });
        let cells: Vec<(f64, f64)> = asked
            .iter()
            .map(|(s, _)| (rate(&s.rates, "api"), rate(&s.rates, "events")))
            .collect();
        assert_eq!(
            cells,
            vec![
                (50.0, 100.0),
                (50.0, 500.0),
                (50.0, 1000.0),
                (100.0, 100.0),
                (100.0, 500.0),
                (100.0, 1000.0),
                (200.0, 100.0),
                (200.0, 500.0),
                (200.0, 1000.0),
                (500.0, 100.0),
                (500.0, 500.0),
                (1000.0, 100.0),
            ]
        );
    }

    #[test]
    fn fingerprint_changes_with_the_plan() {
        let a = cfg(SearchMode::Isolated, 0);
        let mut b = a.clone();
        b.scenarios[0].levels.push(2000.0);
        let s = BTreeMap::new();
        assert_eq!(fingerprint(&a, &s), fingerprint(&a.clone(), &s));
        assert_ne!(fingerprint(&a, &s), fingerprint(&b, &s));
    }
}
