//! A target's release as it is read (`observe.release`: a label on its exposition, a
//! JSON pointer of an HTTP endpoint, a PromQL answer) and the debounce that turns reads
//! into deploys: a new value counts once it has held for `deploys.debounce`, so a
//! version read through a load balancer during a rollout does not flip back and forth.

use crate::config::observe::{ReleaseSource, SeriesSelector};
use std::time::Duration;

/// The longest value taken for a version (anything longer is not one).
pub const MAX_VERSION_LEN: usize = 128;

fn version_of(s: &str, what: &str) -> Result<String, String> {
    let v = s.trim();
    if v.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if v.chars().count() > MAX_VERSION_LEN || v.contains('\n') {
        return Err(format!(
            "{what} is not a version (over {MAX_VERSION_LEN} characters or several lines)"
        ));
    }
    Ok(v.to_string())
}

/// The label `label` of the first sample of `series` in a text exposition.
pub fn label_in_exposition(
    text: &str,
    series: &SeriesSelector,
    label: &str,
) -> Result<String, String> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|e| format!("the exposition does not parse: {e}"))?;
    let hit = scrape.samples.iter().find(|s| {
        s.metric == series.metric
            && series
                .labels
                .iter()
                .all(|(k, v)| s.labels.get(k) == Some(v.as_str()))
    });
    let Some(s) = hit else {
        return Err(format!("no series {} on the exposition", series.metric));
    };
    match s.labels.get(label) {
        Some(v) => version_of(v, &format!("label {label} of {}", series.metric)),
        None => Err(format!("{} has no label {label}", series.metric)),
    }
}

/// The string (or number) at JSON pointer `pointer` of `body`, or the whole body.
pub fn version_in_body(body: &str, pointer: Option<&str>) -> Result<String, String> {
    let Some(p) = pointer else {
        return version_of(body, "the body");
    };
    let doc: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match doc.pointer(p) {
        Some(serde_json::Value::String(s)) => version_of(s, &format!("{p} of the body")),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            version_of(&v.to_string(), &format!("{p} of the body"))
        }
        Some(_) => Err(format!("{p} of the body is not a string or a number")),
        None => Err(format!("the body has nothing at {p}")),
    }
}

/// Reads sources over HTTP.
pub struct Reader {
    http: reqwest::Client,
}

impl Reader {
    pub fn new(timeout: Duration) -> Reader {
        Reader {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .unwrap_or_default(),
        }
    }

    async fn get(&self, url: &str) -> Result<String, String> {
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url} answered {}", r.status()));
        }
        r.text().await.map_err(|e| format!("{url}: {e}"))
    }

    /// The release now, or why it cannot be read. `metrics_url` is the target's
    /// `observe.metrics_url`; None for `release: api` (nothing to read).
    pub async fn read(
        &self,
        source: &ReleaseSource,
        metrics_url: Option<&str>,
        now: f64,
    ) -> Option<Result<String, String>> {
        Some(match source {
            ReleaseSource::Api => return None,
            ReleaseSource::Metrics { series, label } => match metrics_url {
                Some(u) => match self.get(u).await {
                    Ok(text) => label_in_exposition(&text, series, label),
                    Err(e) => Err(e),
                },
                None => Err("no metrics_url to read it from".into()),
            },
            ReleaseSource::Http { url, pointer } => match self.get(url).await {
                Ok(body) => version_in_body(&body, pointer.as_deref()),
                Err(e) => Err(e),
            },
            ReleaseSource::Promql { url, query, label } => {
                let prom = crate::promql::Prom::new(url, "");
                match prom.query(query, now).await {
                    Ok(samples) => match (samples.first(), label) {
                        (None, _) => Err(format!("{query} answered no series")),
                        (Some(s), Some(l)) => match s.labels.get(l) {
                            Some(v) => version_of(v, &format!("label {l}")),
                            None => Err(format!("{query} has no label {l}")),
                        },
                        (Some(s), None) => version_of(&format!("{}", s.value), "the value"),
                    },
                    Err(e) => Err(e.to_string()),
                }
            }
        })
    }
}

/// What one read did to a target's release.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing new.
    Same,
    /// The first value seen: the target's release, no deploy.
    First(String),
    /// A new value held for the debounce: a deploy from `from` to `to`, first seen at
    /// `since`.
    Changed {
        from: String,
        to: String,
        since: f64,
    },
}

/// The debounce of one target's release.
#[derive(Debug, Clone, Default)]
pub struct Debounce {
    /// The release that counts.
    pub current: Option<String>,
    /// A different value seen since `.1`, not yet held long enough.
    pending: Option<(String, f64)>,
}

impl Debounce {
    pub fn with(current: Option<String>) -> Debounce {
        Debounce {
            current,
            pending: None,
        }
    }

    /// One read of `value` at `now`.
    pub fn see(&mut self, value: &str, now: f64, hold: Duration) -> Step {
        let Some(cur) = &self.current else {
            self.current = Some(value.to_string());
            return Step::First(value.to_string());
        };
        if cur == value {
            // Back to the release that counts: a flap, forgotten.
            self.pending = None;
            return Step::Same;
        }
        let since = match &self.pending {
            Some((v, t)) if v == value => *t,
            _ => {
                self.pending = Some((value.to_string(), now));
                now
            }
        };
        if now - since >= hold.as_secs_f64() {
            let from = cur.clone();
            self.current = Some(value.to_string());
            self.pending = None;
            return Step::Changed {
                from,
                to: value.to_string(),
                since,
            };
        }
        Step::Same
    }

    /// A value told by the API counts at once.
    pub fn set(&mut self, value: &str) {
        self.current = Some(value.to_string());
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_release_is_one_deploy_after_the_debounce() {
        let hold = Duration::from_secs(30);
        let mut d = Debounce::default();
        assert_eq!(d.see("1.0", 0.0, hold), Step::First("1.0".into()));
        // A rollout through a load balancer: 1.1 and 1.0 alternate for a while.
        let mut deploys = Vec::new();
        for i in 1..60 {
            let t = i as f64 * 2.0;
            let v = if i < 20 && i % 2 == 0 { "1.0" } else { "1.1" };
            if let Step::Changed { from, to, since } = d.see(v, t, hold) {
                deploys.push((from, to, since, t));
            }
        }
        assert_eq!(deploys.len(), 1, "{deploys:?}");
        let (from, to, since, at) = &deploys[0];
        assert_eq!((from.as_str(), to.as_str()), ("1.0", "1.1"));
        // Seen for good from 38 s (after the last 1.0 at 36 s), counted 30 s later.
        assert_eq!((*since, *at), (38.0, 68.0));
    }

    #[test]
    fn versions_are_read_from_labels_bodies_and_pointers() {
        let text = "# TYPE build_info gauge\nbuild_info{version=\"2.4.1\",commit=\"abc\"} 1\n";
        let sel = crate::config::observe::parse_selector("build_info").unwrap();
        assert_eq!(label_in_exposition(text, &sel, "version").unwrap(), "2.4.1");
        let e = label_in_exposition(text, &sel, "release").unwrap_err();
        assert_eq!(e, "build_info has no label release");
        let sel = crate::config::observe::parse_selector("app_info").unwrap();
        assert!(label_in_exposition(text, &sel, "version")
            .unwrap_err()
            .contains("no series app_info"));
        assert_eq!(
            version_in_body("{\"build\":{\"version\":\"v7\"}}", Some("/build/version")).unwrap(),
            "v7"
        );
        assert_eq!(version_in_body("{\"n\":42}", Some("/n")).unwrap(), "42");
        assert_eq!(version_in_body(" 1.2.3\n", None).unwrap(), "1.2.3");
        assert!(version_in_body("<html>", Some("/v"))
            .unwrap_err()
            .contains("not JSON"));
        assert!(version_in_body("{}", Some("/v"))
            .unwrap_err()
            .contains("nothing at /v"));
        assert!(version_in_body(&"x".repeat(200), None)
            .unwrap_err()
            .contains("not a version"));
    }
}
