//! The `verdicts:` section: one verdict across shards. With `--shard i/n` every replica
//! runs 1/n of the load, so its own numbers are 1/n of the picture; with
//! `verdicts.prometheus` the rolling SLOs and the capacity search judge from PromQL over
//! the series of every shard (sums of counters and histogram buckets), shard 0 drives the
//! search, and the other shards follow the level it applies (read from
//! `verdicts.leader`'s `/api/v1/search`).
//!
//! ```yaml
//! verdicts:
//!   prometheus: http://prometheus:9090
//!   selector: 'job="soakd", namespace="staging"'   # picks this deployment's series
//!   leader: http://soakd-0.soakd:9477              # shard 0's admin address
//!   scrape_interval: 15s                           # Prometheus's, for soakd's waits
//!   interval: 10s                                  # how often SLOs are re-queried
//! ```

use crate::config::errors::Errs;
use crate::units::Dur;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct VerdictsConfig {
    /// The Prometheus that scrapes every shard (base URL).
    pub prometheus: String,
    /// Label matchers added to every query, so that only this deployment's series count
    /// (empty: every series with the scenario's name).
    pub selector: String,
    /// Shard 0's admin URL, where the other shards read the search's state; needed on
    /// shards other than 0 when a search is configured.
    pub leader: Option<String>,
    /// How often Prometheus scrapes the shards: after a level's window closes, the search
    /// waits this long plus a second before it asks for the window's sums.
    pub scrape_interval: Duration,
    /// How often the rolling SLOs are asked for (each shard asks on its own).
    pub interval: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerdicts {
    prometheus: String,
    #[serde(default)]
    selector: Option<String>,
    #[serde(default)]
    leader: Option<String>,
    #[serde(default)]
    scrape_interval: Option<Dur>,
    #[serde(default)]
    interval: Option<Dur>,
}

/// An http(s) URL, or the error to report for it.
fn check_url(s: &str) -> Result<(), String> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "expected an http:// or https:// URL with a host, not {:?}",
            u.as_str()
        )),
        Err(e) => Err(format!("not a URL ({e}): {s:?}")),
    }
}

pub(super) fn build_verdicts(
    v: Option<&Value>,
    search: Option<&super::search::SearchConfig>,
    errs: &mut Errs,
) -> Option<VerdictsConfig> {
    let raw = errs.decode::<RawVerdicts>(v?, "verdicts")?;
    let mut ok = true;
    if let Err(e) = check_url(&raw.prometheus) {
        errs.push("verdicts.prometheus", e);
        ok = false;
    }
    if let Some(Err(e)) = raw.leader.as_deref().map(check_url) {
        errs.push("verdicts.leader", e);
        ok = false;
    }
    let selector = raw.selector.unwrap_or_default();
    if let Err(e) = crate::promql::check_selector(&selector) {
        errs.push(
            "verdicts.selector",
            format!("expected label matchers such as job=\"soakd\": {e}"),
        );
        ok = false;
    }
    let scrape_interval = raw.scrape_interval.map_or(Duration::from_secs(15), |d| d.0);
    if scrape_interval < Duration::from_secs(1) || scrape_interval > Duration::from_secs(300) {
        errs.push("verdicts.scrape_interval", "must be between 1s and 5m");
        ok = false;
    }
    let interval = raw.interval.map_or(Duration::from_secs(10), |d| d.0);
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(300) {
        errs.push("verdicts.interval", "must be between 1s and 5m");
        ok = false;
    }
    if let Some(s) = search {
        // increase() needs at least two samples of every shard inside a window.
        let window = s.each.saturating_sub(s.warmup);
        if ok && window < scrape_interval * 4 {
            errs.push(
                "verdicts.scrape_interval",
                format!(
                    "a search level's window (search.each - search.warmup = {}) must hold at least 4 scrapes to be summed from Prometheus; lengthen search.each or scrape more often",
                    crate::units::format_duration(window)
                ),
            );
            ok = false;
        }
    }
    ok.then(|| VerdictsConfig {
        prometheus: raw.prometheus.trim_end_matches('/').to_string(),
        selector: selector.trim().to_string(),
        leader: raw.leader.map(|l| l.trim_end_matches('/').to_string()),
        scrape_interval,
        interval,
    })
}

#[cfg(test)]
mod tests {
    fn parse(section: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        let text = format!(
            "targets: {{api: {{type: http, base_url: \"http://127.0.0.1:1\"}}}}\nscenarios:\n  api:\n    target: api\n    slo: {{p95: 100ms}}\n    schedule: {{hold: {{rate: 1/s}}}}\n    ops: {{a: {{http: {{path: /}}}}}}\n{section}\n"
        );
        crate::config::parse_for_test(&text)
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("").unwrap().verdicts, None);
        let v = parse("verdicts: {prometheus: \"http://prom:9090/\"}")
            .unwrap()
            .verdicts
            .unwrap();
        assert_eq!(v.prometheus, "http://prom:9090");
        assert_eq!(v.selector, "");
        assert_eq!(v.leader, None);
        assert_eq!(v.scrape_interval.as_secs(), 15);
        assert_eq!(v.interval.as_secs(), 10);
        let v = parse(
            "verdicts:\n  prometheus: http://prom:9090\n  selector: 'job=\"soakd\"'\n  leader: http://soakd-0.soakd:9477/\n  scrape_interval: 5s\n  interval: 2s",
        )
        .unwrap()
        .verdicts
        .unwrap();
        assert_eq!(v.selector, "job=\"soakd\"");
        assert_eq!(v.leader.as_deref(), Some("http://soakd-0.soakd:9477"));
        assert_eq!((v.scrape_interval.as_secs(), v.interval.as_secs()), (5, 2));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = parse(
            "verdicts:\n  prometheus: prom:9090\n  leader: ftp://x\n  selector: '{job=\"a\"}'\n  scrape_interval: 10m\n  interval: 0s\n  colour: red",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = parse(
            "verdicts:\n  prometheus: prom:9090\n  leader: ftp://x\n  selector: '{job=\"a\"}'\n  scrape_interval: 10m\n  interval: 0s",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("verdicts.prometheus: expected an http:// or https:// URL"),
            "{e}"
        );
        assert!(
            e.contains("verdicts.leader: expected an http:// or https:// URL"),
            "{e}"
        );
        assert!(
            e.contains("verdicts.selector: expected label matchers such as job=\"soakd\": expected a label name at character 1 (line 11"),
            "{e}"
        );
        assert!(
            e.contains("verdicts.scrape_interval: must be between 1s and 5m (line 12"),
            "{e}"
        );
        assert!(
            e.contains("verdicts.interval: must be between 1s and 5m (line 13"),
            "{e}"
        );
        let e = parse("verdicts: {}").unwrap_err().to_string();
        assert!(e.contains("missing field `prometheus`"), "{e}");
    }

    #[test]
    fn a_search_window_must_hold_four_scrapes() {
        let search =
            "search:\n  each: 30s\n  warmup: 10s\n  scenarios: {api: {levels: [1/s, 2/s]}}\n";
        let e = parse(&format!(
            "{search}verdicts: {{prometheus: \"http://prom:9090\", scrape_interval: 15s}}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("verdicts.scrape_interval: a search level's window (search.each - search.warmup = 20s) must hold at least 4 scrapes"),
            "{e}"
        );
        assert!(parse(&format!(
            "{search}verdicts: {{prometheus: \"http://prom:9090\", scrape_interval: 5s}}"
        ))
        .is_ok());
    }
}
