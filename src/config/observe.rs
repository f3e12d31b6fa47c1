//! `targets.NAME.observe`: what soakd watches of the system under test, beside the
//! load it sends — a local process, a cgroup, the target's own exposition, PromQL
//! against the user's Prometheus. Every source is optional and they combine; the soak
//! judge (`soak:`) reads what they give.
//!
//! ```yaml
//! targets:
//!   api:
//!     type: http
//!     base_url: http://127.0.0.1:8080
//!     observe:
//!       process: "api-server"               # or pid: 1234, or pid_file: /run/api.pid
//!       cgroup: /sys/fs/cgroup/system.slice/api.service
//!       metrics_url: http://127.0.0.1:8080/metrics
//!       series: {queue_depth: 'jobs_queued{queue="default"}'}
//!       promql:
//!         url: http://prometheus:9090
//!         queries: {working_set_bytes: 'sum(container_memory_working_set_bytes{pod=~"api-.*"})'}
//! ```

use crate::config::check::valid_name;
use crate::config::errors::Errs;
use crate::units::Dur;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// At most this many named series (`series:` plus `promql.queries`) per target.
pub const MAX_NAMED: usize = 32;

/// The names soakd gives the resources it reads itself; a named series may not take one.
pub const RESERVED: &[&str] = &[
    "rss_bytes",
    "anon_bytes",
    "open_fds",
    "max_fds",
    "threads",
    "cpu_seconds",
    "start_time_seconds",
    "heap_bytes",
    "goroutines",
    "cgroup_memory_bytes",
    "cgroup_anon_bytes",
    "cgroup_file_bytes",
    "cgroup_cpu_seconds",
    "oom_kills",
];

/// How the target's process is found.
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessRef {
    Pid(u32),
    /// A file holding the pid, read again when the process is gone.
    PidFile(PathBuf),
    /// The process whose name (`comm`) equals it, or else whose command line contains
    /// it; the oldest such process (so a worker it forks is not taken for it),
    /// looked up again when the one found exits.
    Pattern(String),
}

/// One exposition series by name and equality label matchers:
/// `jobs_queued{queue="default"}`; several matching samples are summed.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSelector {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromqlSource {
    pub url: String,
    /// Resource name → an expression answering one number (the first sample is taken).
    pub queries: BTreeMap<String, String>,
}

/// Where a target's release (its version) is read: `observe.release`.
#[derive(Debug, Clone, PartialEq)]
pub enum ReleaseSource {
    /// A label of a series on the target's exposition (`metrics_url`):
    /// `{metrics: build_info, label: version}`.
    Metrics {
        series: SeriesSelector,
        label: String,
    },
    /// An HTTP endpoint (a full URL once the config is built: a path is joined to an
    /// http target's `base_url`) and a JSON pointer into its body, or the whole body:
    /// `{http: /version, json: /version}`.
    Http {
        url: String,
        pointer: Option<String>,
    },
    /// A PromQL expression: the `label` of its first series, or without one its value:
    /// `{promql: 'max by (version) (build_info{job="api"})', label: version}`. `url`
    /// defaults to `observe.promql.url`, then `verdicts.prometheus`.
    Promql {
        url: String,
        query: String,
        label: Option<String>,
    },
    /// Only what `POST /api/v1/deploys` says (`release: api`).
    Api,
}

impl ReleaseSource {
    /// Which kind, for the page and the reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            ReleaseSource::Metrics { .. } => "metrics",
            ReleaseSource::Http { .. } => "http",
            ReleaseSource::Promql { .. } => "promql",
            ReleaseSource::Api => "api",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    #[serde(default)]
    metrics: Option<String>,
    #[serde(default)]
    http: Option<String>,
    #[serde(default)]
    promql: Option<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    json: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()))
}

/// `observe.release` at `path`; a relative `http` path and a missing PromQL `url` are
/// resolved once the target and `verdicts:` are known (`observe_link`).
fn build_release(v: &Value, path: &str, errs: &mut Errs) -> Option<ReleaseSource> {
    if let Some(s) = v.as_str() {
        if s == "api" {
            return Some(ReleaseSource::Api);
        }
        errs.push(
            path,
            format!("expected `api` or one of {{metrics, label}}, {{http, json}} or {{promql, label}}, got {s:?}"),
        );
        return None;
    }
    let raw = errs.decode::<RawRelease>(v, path)?;
    let label = |errs: &mut Errs| -> Option<String> {
        let l = raw.label.clone()?;
        if valid_label(&l) {
            Some(l)
        } else {
            errs.push(
                format!("{path}.label"),
                format!("{l:?} is not a label name"),
            );
            None
        }
    };
    let extra = |key: &str, given: bool, errs: &mut Errs| {
        if given {
            errs.push(
                format!("{path}.{key}"),
                format!("`{key}` does not go with this source"),
            );
        }
    };
    match (&raw.metrics, &raw.http, &raw.promql) {
        (Some(m), None, None) => {
            extra("json", raw.json.is_some(), errs);
            extra("url", raw.url.is_some(), errs);
            let series = match parse_selector(m) {
                Ok(s) => s,
                Err(e) => {
                    errs.push(format!("{path}.metrics"), e);
                    return None;
                }
            };
            let Some(label) = label(errs) else {
                if raw.label.is_none() {
                    errs.push(path, "name the `label` that holds the version");
                }
                return None;
            };
            Some(ReleaseSource::Metrics { series, label })
        }
        (None, Some(h), None) => {
            extra("label", raw.label.is_some(), errs);
            extra("url", raw.url.is_some(), errs);
            if !(h.starts_with('/') || check_url(h).is_ok()) {
                errs.push(
                    format!("{path}.http"),
                    "expected a path (/version) or an http(s) URL",
                );
                return None;
            }
            if let Some(p) = &raw.json {
                if !(p.is_empty() || p.starts_with('/')) {
                    errs.push(
                        format!("{path}.json"),
                        "a JSON pointer starts with '/' (RFC 6901)",
                    );
                    return None;
                }
            }
            Some(ReleaseSource::Http {
                url: h.clone(),
                pointer: raw.json.clone(),
            })
        }
        (None, None, Some(q)) => {
            extra("json", raw.json.is_some(), errs);
            if q.trim().is_empty() {
                errs.push(format!("{path}.promql"), "must not be empty");
                return None;
            }
            if let Some(u) = &raw.url {
                if let Err(e) = check_url(u) {
                    errs.push(format!("{path}.url"), e);
                    return None;
                }
            }
            let label = if raw.label.is_some() {
                Some(label(errs)?)
            } else {
                None
            };
            Some(ReleaseSource::Promql {
                url: raw
                    .url
                    .clone()
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_string(),
                query: q.clone(),
                label,
            })
        }
        _ => {
            errs.push(
                path,
                "give exactly one of `metrics`, `http` or `promql` (or `release: api`)",
            );
            None
        }
    }
}

/// `targets.NAME.observe`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observe {
    pub target: String,
    pub process: Option<ProcessRef>,
    /// A cgroup: a v2 directory, a v1 memory controller directory, or a path relative
    /// to the cgroup mounts (`/system.slice/api.service`), looked up in each.
    pub cgroup: Option<PathBuf>,
    pub metrics_url: Option<String>,
    pub series: BTreeMap<String, SeriesSelector>,
    pub promql: Option<PromqlSource>,
    /// How long one read of a URL may take (default 5s).
    pub timeout: Duration,
    /// Tables named under `tables:` (a postgres target's, beside those its ops' SQL names).
    pub tables: Vec<String>,
    /// `postgres: false` turns off a postgres target's statistics source.
    pub postgres_enabled: bool,
    /// A postgres target's statistics: filled once the target's kind and ops are known.
    pub postgres: Option<PgObserve>,
    /// Where the target's release is read, for the deploy judge.
    pub release: Option<ReleaseSource>,
}

/// At most this many tables are judged per postgres target.
pub const MAX_TABLES: usize = 8;

/// A postgres target's own statistics, read on a connection of the soak's own.
#[derive(Debug, Clone, PartialEq)]
pub struct PgObserve {
    pub url: String,
    /// The tables to judge (bounded by [`MAX_TABLES`]): those named under `tables:`,
    /// then those its ops' SQL names, in order; names that are no table are skipped
    /// when read.
    pub tables: Vec<String>,
}

impl Observe {
    /// A source is configured (an empty `observe: {}` is refused, so always true for a
    /// built one).
    pub fn has_source(&self) -> bool {
        self.process.is_some()
            || self.cgroup.is_some()
            || self.metrics_url.is_some()
            || self.promql.is_some()
            || self.postgres.is_some()
    }

    /// An entry for a target with no `observe:` of its own (a postgres target's
    /// statistics, a deprecated `search.target_process`).
    pub fn empty(target: &str) -> Observe {
        Observe {
            target: target.to_string(),
            process: None,
            cgroup: None,
            metrics_url: None,
            series: BTreeMap::new(),
            promql: None,
            timeout: Duration::from_secs(5),
            tables: Vec::new(),
            postgres_enabled: true,
            postgres: None,
            release: None,
        }
    }
}

/// The tables a SQL statement reads or writes (its relations: CTE names are kept and
/// skipped later, as any name that is no table), unquoted and without a schema; empty
/// when it does not parse (soakd's templates may stand where SQL allows no value).
pub fn tables_of(sql: &str) -> Vec<String> {
    use sqlparser::ast::{visit_relations, ObjectNamePart};
    use sqlparser::dialect::PostgreSqlDialect;
    use std::ops::ControlFlow;
    let Ok(statements) = sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    let _ = visit_relations(&statements, |name| {
        if let Some(ObjectNamePart::Identifier(id)) = name.0.last() {
            let table = if id.quote_style.is_some() {
                id.value.clone()
            } else {
                id.value.to_lowercase()
            };
            if !out.contains(&table) {
                out.push(table);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserve {
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    pid_file: Option<String>,
    #[serde(default)]
    process: Option<String>,
    #[serde(default)]
    cgroup: Option<String>,
    #[serde(default)]
    metrics_url: Option<String>,
    #[serde(default)]
    series: BTreeMap<String, String>,
    #[serde(default)]
    promql: Option<RawPromql>,
    #[serde(default)]
    timeout: Option<Dur>,
    /// A postgres target's tables to judge, beside those its ops' SQL names.
    #[serde(default)]
    tables: Vec<String>,
    /// A postgres target's statistics source (default on).
    #[serde(default)]
    postgres: Option<bool>,
    /// The target's release (`observe.release`).
    #[serde(default)]
    release: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromql {
    url: String,
    queries: BTreeMap<String, String>,
}

fn check_url(u: &str) -> Result<(), &'static str> {
    if u.starts_with("http://") || u.starts_with("https://") {
        Ok(())
    } else {
        Err("expected an http(s) URL")
    }
}

/// Builds `targets.NAME.observe` (at `path`), resolving files against `base`.
pub(super) fn build_observe(
    target: &str,
    v: &Value,
    path: &str,
    base: &std::path::Path,
    errs: &mut Errs,
) -> Option<Observe> {
    let raw = errs.decode::<RawObserve>(v, path)?;
    let before = errs.list.len();
    let process = match (raw.pid, raw.pid_file, raw.process) {
        (None, None, None) => None,
        (Some(p), None, None) => Some(ProcessRef::Pid(p)),
        (None, Some(f), None) => Some(ProcessRef::PidFile(super::check::resolve(base, &f))),
        (None, None, Some(p)) if p.trim().is_empty() => {
            errs.push(format!("{path}.process"), "must not be empty");
            None
        }
        (None, None, Some(p)) => Some(ProcessRef::Pattern(p)),
        _ => {
            errs.push(path, "give at most one of `pid`, `pid_file` or `process`");
            None
        }
    };
    let cgroup = raw.cgroup.map(PathBuf::from);
    if let Some(u) = &raw.metrics_url {
        if let Err(e) = check_url(u) {
            errs.push(format!("{path}.metrics_url"), e);
        }
    }
    if !raw.series.is_empty() && raw.metrics_url.is_none() {
        errs.push(
            format!("{path}.series"),
            "needs `metrics_url` to read them from",
        );
    }
    let mut names: Vec<String> = Vec::new();
    let mut check_name = |name: &str, at: String, errs: &mut Errs| {
        if !valid_name(name) {
            errs.push(
                at,
                "names must be 1-64 characters of letters, digits, '_' or '-'",
            );
        } else if RESERVED.contains(&name) {
            errs.push(
                at,
                format!("{name:?} is a resource soakd reads itself; choose another name"),
            );
        } else if names.iter().any(|n| n == name) {
            errs.push(at, format!("{name:?} is named twice"));
        }
        names.push(name.to_string());
    };
    let mut series = BTreeMap::new();
    for (name, sel) in raw.series {
        let at = format!("{path}.series.{name}");
        check_name(&name, at.clone(), errs);
        match parse_selector(&sel) {
            Ok(s) => {
                series.insert(name, s);
            }
            Err(e) => errs.push(at, e),
        }
    }
    let promql = raw.promql.map(|p| {
        if let Err(e) = check_url(&p.url) {
            errs.push(format!("{path}.promql.url"), e);
        }
        if p.queries.is_empty() {
            errs.push(format!("{path}.promql.queries"), "name at least one query");
        }
        for (name, q) in &p.queries {
            let at = format!("{path}.promql.queries.{name}");
            check_name(name, at.clone(), errs);
            if q.trim().is_empty() {
                errs.push(at, "must not be empty");
            }
        }
        PromqlSource {
            url: p.url.trim_end_matches('/').to_string(),
            queries: p.queries,
        }
    });
    if names.len() > MAX_NAMED {
        errs.push(
            path,
            format!(
                "at most {MAX_NAMED} named series (series and promql.queries), got {}",
                names.len()
            ),
        );
    }
    let timeout = raw.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(5));
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
        errs.push(format!("{path}.timeout"), "must be between 100ms and 60s");
    }
    for (i, t) in raw.tables.iter().enumerate() {
        if t.trim().is_empty() || t.len() > 63 {
            errs.push(
                format!("{path}.tables[{i}]"),
                "a table name is 1-63 characters",
            );
        }
    }
    if raw.tables.len() > MAX_TABLES {
        errs.push(
            format!("{path}.tables"),
            format!("at most {MAX_TABLES} tables are judged per target"),
        );
    }
    let release = raw
        .release
        .as_ref()
        .and_then(|v| build_release(v, &format!("{path}.release"), errs));
    if let (Some(ReleaseSource::Metrics { .. }), None) = (&release, &raw.metrics_url) {
        errs.push(
            format!("{path}.release.metrics"),
            "needs `metrics_url` to read it from",
        );
    }
    let o = Observe {
        target: target.to_string(),
        release,
        process,
        cgroup,
        metrics_url: raw.metrics_url,
        series,
        promql,
        timeout,
        postgres_enabled: raw.postgres.unwrap_or(true),
        tables: raw.tables,
        postgres: None,
    };
    // A postgres target's statistics are a source of their own (checked once its kind
    // is known); `postgres: false` or `tables:` say something even alone.
    if !o.has_source()
        && o.release.is_none()
        && raw.postgres.is_none()
        && o.tables.is_empty()
        && errs.list.len() == before
    {
        errs.push(
            path,
            "name at least one source: pid, pid_file, process, cgroup, metrics_url, promql, release or (on a postgres target) tables",
        );
    }
    (errs.list.len() == before).then_some(o)
}

/// `metric` or `metric{a="x",b="y"}` (equality matchers only).
pub fn parse_selector(s: &str) -> Result<SeriesSelector, String> {
    let s = s.trim();
    let (metric, rest) = match s.find('{') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let metric = metric.trim();
    let metric_ok = !metric.is_empty()
        && metric.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
    if !metric_ok {
        return Err(format!(
            "expected a metric name with optional {{label=\"value\"}} matchers, got {s:?}"
        ));
    }
    let mut labels = BTreeMap::new();
    if let Some(rest) = rest {
        let Some(body) = rest.trim_end().strip_suffix('}') else {
            return Err(format!("unclosed '{{' in {s:?}"));
        };
        for m in split_matchers(body) {
            let m = m.trim();
            if m.is_empty() {
                continue;
            }
            let Some((k, v)) = m.split_once('=') else {
                return Err(format!("expected label=\"value\" in {s:?}, got {m:?}"));
            };
            let (k, v) = (k.trim(), v.trim());
            if k.ends_with('!') || v.starts_with('~') {
                return Err(format!(
                    "only equality matchers (label=\"value\") are supported, got {m:?}"
                ));
            }
            let Some(v) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
                return Err(format!("label values are quoted: {m:?}"));
            };
            labels.insert(k.to_string(), v.replace("\\\"", "\""));
        }
    }
    Ok(SeriesSelector {
        metric: metric.to_string(),
        labels,
    })
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_matchers(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&body[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(observe: &str) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        crate::config::parse_for_test(&format!(
            "targets:\n  api:\n    type: http\n    base_url: http://127.0.0.1:1\n    observe: {observe}\nscenarios: {{}}\n"
        ))
    }

    #[test]
    fn every_source_is_read_and_combined() {
        let c = parse(
            r#"{process: api-server, cgroup: /sys/fs/cgroup/x, metrics_url: "http://127.0.0.1:9/metrics", series: {queue: 'jobs{q="a",r="b,c"}'}, promql: {url: "http://p:9090/", queries: {ws: 'sum(x)'}}}"#,
        )
        .unwrap();
        let o = &c.observe[0];
        assert_eq!(o.target, "api");
        assert_eq!(o.process, Some(ProcessRef::Pattern("api-server".into())));
        assert_eq!(o.cgroup, Some(PathBuf::from("/sys/fs/cgroup/x")));
        let q = &o.series["queue"];
        assert_eq!(q.metric, "jobs");
        assert_eq!(q.labels["r"], "b,c");
        assert_eq!(o.promql.as_ref().unwrap().url, "http://p:9090");
        assert_eq!(o.timeout, Duration::from_secs(5));
        // Observing is not part of the target: the load's config is unchanged.
        assert_eq!(c.targets[0].name, "api");
    }

    #[test]
    fn the_tables_sql_names_are_found() {
        assert_eq!(
            tables_of("UPDATE Orders o SET v = v + 1 FROM public.\"Items\" i WHERE o.id = $1 AND i.id = o.item"),
            vec!["orders", "Items"]
        );
        assert_eq!(
            tables_of("WITH recent AS (SELECT * FROM events WHERE t > now() - interval '1h') SELECT count(*) FROM recent JOIN users USING (user_id)"),
            vec!["events", "recent", "users"]
        );
        assert_eq!(tables_of("INSERT INTO log (v) VALUES ($1)"), vec!["log"]);
        assert_eq!(tables_of("SELECT pg_sleep(0.1)"), Vec::<String>::new());
        assert_eq!(tables_of("not sql at all"), Vec::<String>::new());
    }

    #[test]
    fn a_postgres_target_is_observed_through_its_ops_tables() {
        let pg = |observe: &str| {
            crate::config::parse_for_test(&format!(
                r#"
targets:
  db: {{type: postgres, url: "postgres://u@127.0.0.1/d"{observe}}}
  api: {{type: http, base_url: "http://127.0.0.1:1"}}
scenarios:
  s:
    target: db
    schedule: {{hold: {{rate: 1/s}}}}
    ops:
      a: {{sql: {{query: "UPDATE accounts SET n = n + 1 WHERE id = $1", params: ["1"]}}}}
      b: {{sql: {{query: "SELECT * FROM accounts JOIN audit USING (id)"}}}}
"#
            ))
        };
        let c = pg("").unwrap();
        assert_eq!(
            c.observe.len(),
            1,
            "the http target has no observe: of its own"
        );
        let p = c.observe[0].postgres.as_ref().unwrap();
        assert_eq!(p.url, "postgres://u@127.0.0.1/d");
        assert_eq!(p.tables, vec!["accounts", "audit"]);
        let c = pg(", observe: {tables: [ledger]}").unwrap();
        assert_eq!(
            c.observe[0].postgres.as_ref().unwrap().tables,
            vec!["ledger", "accounts", "audit"]
        );
        let c = pg(", observe: {postgres: false}").unwrap();
        assert!(c.observe.is_empty());
        let c = pg(", observe: {postgres: false, pid: 1}").unwrap();
        assert!(c.observe[0].postgres.is_none() && c.observe[0].process.is_some());
        let e = parse("{tables: [x]}").unwrap_err().to_string();
        assert!(
            e.contains("targets.api.observe: `tables` and `postgres` are for postgres targets"),
            "{e}"
        );
        let e = pg(", observe: {tables: [a, b, c, d, e, f, g, h, i]}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("targets.db.observe.tables: at most 8 tables"),
            "{e}"
        );
    }

    #[test]
    fn the_search_reads_the_target_process_from_observe() {
        use crate::config::search::TargetProcess;
        let cfg = |target_extra: &str, search_extra: &str| {
            crate::config::parse_for_test(&format!(
                r#"
targets:
  api: {{type: http, base_url: "http://127.0.0.1:1"{target_extra}}}
  other: {{type: http, base_url: "http://127.0.0.1:2"}}
scenarios:
  s:
    target: api
    schedule: {{hold: {{rate: 1/s}}}}
    slo: {{p99: 1s}}
    ops: {{a: {{http: {{path: /}}}}}}
  t:
    target: other
    schedule: {{hold: {{rate: 1/s}}}}
    slo: {{p99: 1s}}
    ops: {{a: {{http: {{path: /}}}}}}
search:
  each: 10s
  scenarios: {{s: {{levels: [1/s, 2/s]}}, t: {{levels: [1/s, 2/s]}}}}{search_extra}
"#
            ))
        };
        // The one way in: what the target observes.
        let c = cfg(", observe: {process: api-server}", "").unwrap();
        let s = c.search.as_ref().unwrap();
        assert_eq!(
            s.target_process,
            Some(TargetProcess::Observed("api".into()))
        );
        assert_eq!(s.target_process_targets, vec!["api"]);
        assert!(c.warnings.is_empty());
        let c = cfg(", observe: {pid: 42}", "").unwrap();
        assert_eq!(
            c.search.as_ref().unwrap().target_process,
            Some(TargetProcess::Pid(42))
        );
        // The old key: accepted with a warning naming it, and moved onto the target.
        let c = cfg("", "\n  target_process: {pid: 7, targets: [api]}").unwrap();
        assert_eq!(
            c.search.as_ref().unwrap().target_process,
            Some(TargetProcess::Pid(7))
        );
        assert_eq!(c.observe[0].target, "api");
        assert_eq!(c.observe[0].process, Some(ProcessRef::Pid(7)));
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with("search.target_process: deprecated")
                && c.warnings[0].contains("(line 19"),
            "{:?}",
            c.warnings
        );
        // Both ways at once for one target is an error.
        let e = cfg(
            ", observe: {pid: 1}",
            "\n  target_process: {pid: 7, targets: [api]}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("search.target_process: targets.api.observe already names its process"),
            "{e}"
        );
        // Nothing observed: nothing measured.
        assert_eq!(cfg("", "").unwrap().search.unwrap().target_process, None);
    }

    #[test]
    fn mistakes_name_their_key_and_line() {
        let cases = [
            ("{pid: 1, process: x}", "targets.api.observe: give at most one"),
            ("{}", "targets.api.observe: name at least one source"),
            ("{metrics_url: ftp://x}", "targets.api.observe.metrics_url: expected an http(s) URL"),
            ("{process: x, series: {a: b}}", "targets.api.observe.series: needs `metrics_url`"),
            (
                "{metrics_url: 'http://x/m', series: {rss_bytes: y}}",
                "targets.api.observe.series.rss_bytes: \"rss_bytes\" is a resource soakd reads itself",
            ),
            (
                "{metrics_url: 'http://x/m', series: {a: 'y{b=~\"c\"}'}}",
                "targets.api.observe.series.a: only equality matchers",
            ),
            ("{process: x, proces: y}", "targets.api.observe.proces: unknown field `proces`"),
            ("{promql: {url: 'http://p', queries: {}}}", "targets.api.observe.promql.queries: name at least one"),
        ];
        for (yaml, want) in cases {
            let e = parse(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
            assert!(e.contains("(line 5"), "{yaml}: {e}");
        }
    }

    #[test]
    fn selectors() {
        let s = parse_selector("go_memstats_heap_inuse_bytes").unwrap();
        assert!(s.labels.is_empty());
        let s = parse_selector(r#"x{a="1", b="q\"uote"}"#).unwrap();
        assert_eq!(s.labels["b"], "q\"uote");
        assert!(parse_selector("9x").is_err());
        assert!(parse_selector("x{a=1}").is_err());
        assert!(parse_selector("x{a=\"1\"").is_err());
    }
}
