//! What a reload changes, as a pure function of the running config and the new one
//! (vector's `ConfigDiff` is the model): every scenario and target is added, changed
//! (with the reasons), unchanged or removed. The engine builds plans only for what the
//! diff says changed or was added, so this decides which runners keep their state; it
//! needs no runtime and is tested on configs alone.

use crate::config::{Config, Scenario, Target};
use serde::Serialize;
use std::collections::BTreeMap;

/// Why a scenario needs a new plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// One of the scenario's own keys (`schedule`, `ops`, `target`, …) differs.
    Key(&'static str),
    /// A target it uses (its own, or one its visibility probes poll) was reconfigured.
    Target(String),
    /// The top-level `fixtures:` changed (every scenario renders from them).
    Fixtures,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Key(k) => write!(f, "{k}"),
            Reason::Target(t) => write!(f, "target {t}"),
            Reason::Fixtures => f.write_str("fixtures"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added,
    Changed(Vec<Reason>),
    Unchanged,
    Removed,
}

/// The scenarios and targets of two configs, each with its change, in the new file's
/// order (removed ones after, in the old file's order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigDiff {
    pub scenarios: Vec<(String, Change)>,
    pub targets: Vec<(String, Change)>,
}

impl ConfigDiff {
    pub fn new(old: &Config, new: &Config) -> ConfigDiff {
        let fixtures = old.fixtures != new.fixtures;
        let mut scenarios: Vec<(String, Change)> = new
            .scenarios
            .iter()
            .map(|sc| {
                let change = match old.scenarios.iter().find(|o| o.name == sc.name) {
                    None => Change::Added,
                    Some(o) => {
                        let mut why: Vec<Reason> =
                            changed_keys(o, sc).into_iter().map(Reason::Key).collect();
                        for t in used_targets(sc) {
                            let (a, b) = (find(&old.targets, t), find(&new.targets, t));
                            // A renamed `target:` is already the key `target`.
                            if a.is_some() && a != b {
                                why.push(Reason::Target(t.to_string()));
                            }
                        }
                        if fixtures {
                            why.push(Reason::Fixtures);
                        }
                        if why.is_empty() {
                            Change::Unchanged
                        } else {
                            Change::Changed(why)
                        }
                    }
                };
                (sc.name.clone(), change)
            })
            .collect();
        scenarios.extend(
            old.scenarios
                .iter()
                .filter(|o| !new.scenarios.iter().any(|n| n.name == o.name))
                .map(|o| (o.name.clone(), Change::Removed)),
        );
        let mut targets: Vec<(String, Change)> = new
            .targets
            .iter()
            .map(|t| {
                let change = match find(&old.targets, &t.name) {
                    None => Change::Added,
                    Some(o) if o == t => Change::Unchanged,
                    Some(_) => Change::Changed(vec![]),
                };
                (t.name.clone(), change)
            })
            .collect();
        targets.extend(
            old.targets
                .iter()
                .filter(|o| find(&new.targets, &o.name).is_none())
                .map(|o| (o.name.clone(), Change::Removed)),
        );
        ConfigDiff { scenarios, targets }
    }

    /// The scenario's change (None: in neither config).
    pub fn scenario(&self, name: &str) -> Option<&Change> {
        self.scenarios
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c)
    }

    /// Scenarios with this kind of change (ignoring the reasons).
    pub fn scenarios_where(&self, f: impl Fn(&Change) -> bool) -> Vec<String> {
        self.scenarios
            .iter()
            .filter(|(_, c)| f(c))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

fn find<'a>(targets: &'a [Target], name: &str) -> Option<&'a Target> {
    targets.iter().find(|t| t.name == name)
}

/// The scenario's target and the targets its visibility probes poll.
fn used_targets(sc: &Scenario) -> impl Iterator<Item = &str> {
    std::iter::once(sc.target.as_str()).chain(
        sc.ops
            .iter()
            .filter_map(|o| o.visibility.as_ref().map(|v| v.target.as_str())),
    )
}

/// The scenario keys whose values differ, by their config names.
fn changed_keys(a: &Scenario, b: &Scenario) -> Vec<&'static str> {
    let Scenario {
        name: _,
        target,
        max_in_flight,
        timeout,
        arrival,
        schedule,
        slo,
        guard,
        ops,
        buffer,
        max_pending,
    } = a;
    [
        ("target", *target != b.target),
        ("max_in_flight", *max_in_flight != b.max_in_flight),
        ("timeout", *timeout != b.timeout),
        ("arrival", *arrival != b.arrival),
        ("schedule", *schedule != b.schedule),
        ("slo", *slo != b.slo),
        ("guard", *guard != b.guard),
        ("ops", *ops != b.ops),
        ("buffer", *buffer != b.buffer),
        ("max_pending", *max_pending != b.max_pending),
    ]
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(k, _)| k)
    .collect()
}

/// What a successful apply changed: scenario names by change, and why each changed one
/// did (`schedule`, `ops`, `target api`, `fixtures`, …).
#[derive(Debug, Default, Clone, Serialize)]
pub struct ApplySummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    pub why: BTreeMap<String, Vec<String>>,
}

impl From<&ConfigDiff> for ApplySummary {
    fn from(d: &ConfigDiff) -> ApplySummary {
        let mut s = ApplySummary::default();
        for (name, change) in &d.scenarios {
            match change {
                Change::Added => s.added.push(name.clone()),
                Change::Unchanged => s.unchanged.push(name.clone()),
                Change::Removed => s.removed.push(name.clone()),
                Change::Changed(why) => {
                    s.changed.push(name.clone());
                    s.why
                        .insert(name.clone(), why.iter().map(|r| r.to_string()).collect());
                }
            }
        }
        s
    }
}

impl ApplySummary {
    /// One line for the event log: "changed a (schedule); added b".
    pub fn describe(&self) -> String {
        let mut what = Vec::new();
        if !self.added.is_empty() {
            what.push(format!("added {}", self.added.join(", ")));
        }
        if !self.changed.is_empty() {
            let names: Vec<String> = self
                .changed
                .iter()
                .map(|n| match self.why.get(n) {
                    Some(why) if !why.is_empty() => format!("{n} ({})", why.join(", ")),
                    _ => n.clone(),
                })
                .collect();
            what.push(format!("changed {}", names.join(", ")));
        }
        if !self.removed.is_empty() {
            what.push(format!("removed {}", self.removed.join(", ")));
        }
        if what.is_empty() {
            what.push("nothing changed".into());
        }
        what.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> Config {
        match crate::config::parse_for_test(yaml) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    const BASE: &str = "
targets:
  api: {type: http, base_url: 'http://127.0.0.1:1'}
  other: {type: http, base_url: 'http://127.0.0.1:2'}
scenarios:
  a:
    target: api
    schedule: {stages: [{hold: {rate: 10/s}}]}
    ops: {get: {http: {path: /a}}}
  b:
    target: other
    schedule: {stages: [{hold: {rate: 5/s}}]}
    ops: {get: {http: {path: /b}}}
";

    #[test]
    fn the_same_config_changes_nothing() {
        let d = ConfigDiff::new(&cfg(BASE), &cfg(BASE));
        assert!(
            d.scenarios.iter().all(|(_, c)| *c == Change::Unchanged),
            "{d:?}"
        );
        assert!(
            d.targets.iter().all(|(_, c)| *c == Change::Unchanged),
            "{d:?}"
        );
        assert_eq!(d.scenarios.len(), 2);
    }

    #[test]
    fn a_scenario_key_names_itself_as_the_reason() {
        let new = BASE.replace("rate: 10/s", "rate: 20/s");
        let d = ConfigDiff::new(&cfg(BASE), &cfg(&new));
        assert_eq!(
            d.scenario("a"),
            Some(&Change::Changed(vec![Reason::Key("schedule")]))
        );
        assert_eq!(d.scenario("b"), Some(&Change::Unchanged));
        let new = BASE.replace("path: /a", "path: /a2");
        let d = ConfigDiff::new(&cfg(BASE), &cfg(&new));
        assert_eq!(
            d.scenario("a"),
            Some(&Change::Changed(vec![Reason::Key("ops")]))
        );
    }

    #[test]
    fn a_reconfigured_target_changes_only_the_scenarios_that_use_it() {
        let new = BASE.replace("127.0.0.1:2", "127.0.0.1:3");
        let d = ConfigDiff::new(&cfg(BASE), &cfg(&new));
        assert_eq!(d.scenario("a"), Some(&Change::Unchanged));
        assert_eq!(
            d.scenario("b"),
            Some(&Change::Changed(vec![Reason::Target("other".into())]))
        );
        assert!(d
            .targets
            .contains(&("other".to_string(), Change::Changed(vec![]))));
        assert!(d.targets.contains(&("api".to_string(), Change::Unchanged)));
    }

    #[test]
    fn pointing_a_scenario_at_another_target_is_its_target_key() {
        let new = BASE.replace("target: api", "target: other");
        let d = ConfigDiff::new(&cfg(BASE), &cfg(&new));
        assert_eq!(
            d.scenario("a"),
            Some(&Change::Changed(vec![Reason::Key("target")]))
        );
    }

    #[test]
    fn added_and_removed_scenarios_and_targets_are_listed() {
        let new = "
targets:
  api: {type: http, base_url: 'http://127.0.0.1:1'}
  third: {type: http, base_url: 'http://127.0.0.1:4'}
scenarios:
  a:
    target: api
    schedule: {stages: [{hold: {rate: 10/s}}]}
    ops: {get: {http: {path: /a}}}
  c:
    target: third
    schedule: {stages: [{hold: {rate: 1/s}}]}
    ops: {get: {http: {path: /c}}}
";
        let d = ConfigDiff::new(&cfg(BASE), &cfg(new));
        assert_eq!(
            d.scenarios,
            vec![
                ("a".to_string(), Change::Unchanged),
                ("c".to_string(), Change::Added),
                ("b".to_string(), Change::Removed),
            ]
        );
        assert_eq!(d.scenarios_where(|c| *c == Change::Added), ["c"]);
        assert!(d.targets.contains(&("third".to_string(), Change::Added)));
        assert!(d.targets.contains(&("other".to_string(), Change::Removed)));
    }

    #[test]
    fn every_scenario_changes_with_the_fixtures_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let with = |rows: &str| {
            let f = dir.path().join(format!("ids-{}.json", rows.len()));
            std::fs::write(&f, rows).unwrap();
            format!(
                "fixtures:\n  ids: {{file: '{}'}}\n{}",
                f.display(),
                BASE.trim_start()
            )
        };
        let d = ConfigDiff::new(
            &cfg(&with("[{\"id\": 1}]")),
            &cfg(&with("[{\"id\": 1}, {\"id\": 2}]")),
        );
        for name in ["a", "b"] {
            assert_eq!(
                d.scenario(name),
                Some(&Change::Changed(vec![Reason::Fixtures])),
                "{name}"
            );
        }
    }

    #[test]
    fn several_reasons_are_all_given() {
        let new = BASE
            .replace("rate: 10/s", "rate: 20/s")
            .replace("path: /a", "path: /z")
            .replace("127.0.0.1:1", "127.0.0.1:9");
        let d = ConfigDiff::new(&cfg(BASE), &cfg(&new));
        assert_eq!(
            d.scenario("a"),
            Some(&Change::Changed(vec![
                Reason::Key("schedule"),
                Reason::Key("ops"),
                Reason::Target("api".into())
            ]))
        );
    }

    #[test]
    fn a_summary_lists_each_change_and_its_reasons() {
        let d = ConfigDiff {
            scenarios: vec![
                ("a".into(), Change::Unchanged),
                (
                    "b".into(),
                    Change::Changed(vec![Reason::Key("schedule"), Reason::Target("api".into())]),
                ),
                ("c".into(), Change::Added),
                ("d".into(), Change::Removed),
            ],
            targets: vec![],
        };
        let s = ApplySummary::from(&d);
        assert_eq!(s.unchanged, ["a"]);
        assert_eq!(s.changed, ["b"]);
        assert_eq!(s.added, ["c"]);
        assert_eq!(s.removed, ["d"]);
        assert_eq!(s.why["b"], ["schedule", "target api"]);
        assert_eq!(
            s.describe(),
            "added c; changed b (schedule, target api); removed d"
        );
        assert_eq!(ApplySummary::default().describe(), "nothing changed");
    }
}
