//! The alert and recording rules: promtool accepts them, their unit tests pass, and every
//! alert carries what an operator needs (severity, summary, description with the value,
//! a runbook section that exists, a firing and a silent test case).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn promtool() -> PathBuf {
    let p = PathBuf::from("/usr/bin/promtool");
    assert!(
        p.exists(),
        "promtool is missing: run scripts/test.sh (it installs the Debian package prometheus)"
    );
    p
}

fn run(args: &[&str], dir: &Path) -> String {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_and_unit_tests_pass() {
    let rules = root().join("rules");
    run(
        &[
            "check",
            "rules",
            "thresholds.yml",
            "recording.yml",
            "alerts.yml",
        ],
        &rules,
    );
    let out = run(
        &["test", "rules", "recording_test.yml", "alerts_test.yml"],
        &rules.join("tests"),
    );
    assert_eq!(out.matches("SUCCESS").count(), 2, "{out}");
}

fn alerts() -> Vec<serde_json::Value> {
    let doc: serde_json::Value = soakd::config::yaml::parse(
        &std::fs::read_to_string(root().join("rules/alerts.yml")).unwrap(),
    )
    .unwrap();
    doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn every_alert_is_complete_and_tested() {
    let runbooks = std::fs::read_to_string(root().join("docs/runbooks.md")).unwrap();
    let tests = std::fs::read_to_string(root().join("rules/tests/alerts_test.yml")).unwrap();
    let all = alerts();
    assert!(all.len() >= 19, "{} alerts", all.len());
    for a in &all {
        let name = a["alert"].as_str().unwrap();
        let sev = a["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&sev),
            "{name}: severity {sev:?}"
        );
        let ann = &a["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                ann[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        assert!(
            ann["description"].as_str().unwrap().contains("$value")
                || ann["summary"].as_str().unwrap().contains("$value"),
            "{name}: the text should carry the value"
        );
        let url = ann["runbook_url"].as_str().unwrap();
        let anchor = name.to_lowercase();
        assert_eq!(url, format!("docs/runbooks.md#{anchor}"), "{name}");
        assert!(
            runbooks.contains(&format!("\n## {name}\n")),
            "docs/runbooks.md has no section for {name}"
        );
        assert!(
            tests.contains(&format!("# {name} fires\n")),
            "{name} has no firing test"
        );
        assert!(
            tests.contains(&format!("# {name} silent\n")),
            "{name} has no silent test"
        );
    }
    // The seeds' five are there.
    for seed in [
        "DatabaseConnectionPoolHigh",
        "HighAPILatency",
        "HighEventLatency",
        "HighErrorRate",
        "BufferSizeHigh",
    ] {
        assert!(all.iter().any(|a| a["alert"] == seed), "missing {seed}");
    }
}

#[test]
fn rules_only_use_series_soakd_exports() {
    // Every soakd_* / pg_* series a rule reads is documented in docs/METRICS.md (which a
    // test keeps in step with the code by listing what /metrics serves).
    let metrics_doc = std::fs::read_to_string(root().join("docs/METRICS.md")).unwrap();
    let mut text = String::new();
    for f in ["alerts.yml", "recording.yml"] {
        text.push_str(&std::fs::read_to_string(root().join("rules").join(f)).unwrap());
    }
    let mut missing = Vec::new();
    for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if word.contains(':') || !(word.starts_with("soakd_") || word.starts_with("pg_")) {
            continue;
        }
        let base = word
            .trim_end_matches("_bucket")
            .trim_end_matches("_count")
            .trim_end_matches("_sum");
        // Grouped rows like pg_stat_database_{blks_hit, ...} document a family.
        let documented = metrics_doc.contains(base)
            || base.rsplit_once('_').is_some_and(|_| {
                let mut parts: Vec<&str> = base.split('_').collect();
                let mut ok = false;
                while parts.len() > 2 && !ok {
                    let last = parts.pop().unwrap_or_default();
                    let prefix = parts.join("_");
                    ok =
                        metrics_doc.contains(&format!("{prefix}_{{")) && metrics_doc.contains(last);
                }
                ok
            });
        if !documented && !["pg_locks_count"].contains(&base) {
            missing.push(word.to_string());
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "rules read undocumented series: {missing:?}"
    );
}

/// Grafana variables replaced by what a query needs to parse and match everything.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".*")
        .replace("$scenario", ".*")
        .replace("$datname", ".*")
}

#[test]
fn dashboards_are_well_formed_and_every_query_parses() {
    let dir = root().join("grafana/dashboards");
    let mut rules = String::from("groups:\n  - name: dashboard-queries\n    rules:\n");
    let mut uids = std::collections::HashSet::new();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let uid = d["uid"].as_str().unwrap().to_string();
        assert!(uids.insert(uid.clone()), "duplicate uid {uid}");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert!(
            vars.contains(&"datasource"),
            "{uid}: no datasource variable"
        );
        for p in d["panels"].as_array().unwrap() {
            let title = p["title"].as_str().unwrap();
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{uid}/{title}");
            assert!(
                p["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{uid}/{title}: no unit"
            );
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                assert!(
                    !expr.contains("instance=\""),
                    "{uid}/{title}: hard-coded instance"
                );
                if expr.contains("rate(") || expr.contains("increase(") {
                    assert!(expr.contains("$__rate_interval"), "{uid}/{title}: {expr}");
                }
                n += 1;
                rules.push_str(&format!(
                    "      - record: dashboard:q{n}\n        expr: {}\n",
                    serde_json::to_string(&substitute(expr)).unwrap()
                ));
            }
        }
    }
    assert!(
        uids.len() >= 3 && n > 30,
        "{} dashboards, {n} queries",
        uids.len()
    );
    // The annotation queries (what soakd changed, on every panel's time axis) parse too,
    // and every dashboard has the same set.
    let mut sets = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let list = d["annotations"]["list"].as_array().unwrap().clone();
        for a in &list {
            assert_eq!(a["datasource"]["uid"], "${datasource}", "{}", a["name"]);
            assert!(a["titleFormat"].as_str().is_some_and(|t| !t.is_empty()));
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:q{n}\n        expr: {}\n",
                serde_json::to_string(&substitute(a["expr"].as_str().unwrap())).unwrap()
            ));
        }
        sets.push(list);
    }
    assert!(sets[0].len() >= 6, "{:?}", sets[0]);
    assert!(sets.iter().all(|l| *l == sets[0]));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("dashboard-queries.yml"), rules).unwrap();
    run(&["check", "rules", "dashboard-queries.yml"], tmp.path());
}

#[test]
fn prometheus_config_loads_the_rules() {
    // The shipped config with its rule paths pointed at this checkout.
    let text = std::fs::read_to_string(root().join("prometheus/prometheus.yml")).unwrap();
    let rules_dir = root().join("rules");
    let text = text.replace("/etc/prometheus/rules", rules_dir.to_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("prometheus.yml"), text).unwrap();
    let out = run(&["check", "config", "prometheus.yml"], tmp.path());
    let want = format!("SUCCESS: {} rules found", alerts().len());
    assert!(out.contains(&want), "{want}: {out}");
}
