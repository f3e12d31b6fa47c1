//! `type: http` targets and HTTP ops: requests, multi-step flows, status matching and
//! extraction — their schema next to their validation.

use super::tls::TargetTls;
use crate::config::check::{check_roots, check_trace, target_names, valid_name, TraceMode};
use crate::config::errors::Errs;
use crate::template::{Fixture, JsonTemplate, Template};
use crate::units::{Dur, Ratio};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HttpVersion {
    /// HTTP/2 when TLS negotiates it, else HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 with prior knowledge (also over plaintext).
    Http2,
}

/// `targets.<name>` with `type: http`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpTarget {
    /// Base URL; op paths are appended to it.
    pub base_url: String,
    /// Headers sent with every request (templates).
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// Time allowed to open a connection.
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// `auto`, `http1` or `http2`.
    #[serde(default)]
    pub version: HttpVersion,
    /// HTTP/2 connections; requests are spread over them round-robin, each a stream
    /// (up to the server's `max_concurrent_streams` per connection). Default 1.
    #[serde(default)]
    pub connections: Option<usize>,
    /// Accept any TLS certificate (staging self-signed certs).
    #[serde(default)]
    pub tls_skip_verify: bool,
    /// TLS (`https://`): a CA bundle to trust beside the system's roots, a client
    /// certificate and key to present, the name to verify.
    #[serde(default)]
    pub tls: Option<TargetTls>,
    /// Idle connections kept per host.
    #[serde(default)]
    pub pool_max_idle_per_host: Option<usize>,
    /// How long an idle pooled connection is kept.
    #[serde(default)]
    pub pool_idle_timeout: Option<Dur>,
    /// At most this many requests on the wire at once (for HTTP/1.1: connections);
    /// more wait for a free one. Unset: bounded only by the scenarios' `max_in_flight`.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// `on`: a W3C `traceparent` on every request, one trace per iteration (its steps
    /// share it), its id on the latency buckets as exemplars and in `{{trace.id}}`.
    #[serde(default)]
    pub trace: TraceMode,
    /// With `trace: on`, the fraction of traces marked sampled (default 100 %).
    #[serde(default)]
    pub trace_sampled: Option<Ratio>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    #[serde(flatten)]
    pub request: HttpRequest,
    /// Values taken from the JSON response for later steps.
    #[serde(default)]
    pub extract: Vec<Extract>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    #[serde(default = "default_method")]
    pub method: String,
    /// Path and query appended to the target's base URL (template).
    pub path: Template,
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// A raw body (template).
    #[serde(default)]
    pub body: Option<Template>,
    /// A JSON body whose string leaves are templates.
    #[serde(default)]
    pub json: Option<JsonTemplate>,
    /// Statuses that count as success: codes or classes like `2xx`. Default `[2xx]`.
    #[serde(default)]
    pub expect: Option<Vec<StatusMatch>>,
}

pub(super) fn default_method() -> String {
    "GET".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    pub fn matches(&self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => *c == status,
            StatusMatch::Class(c) => status / 100 == *c,
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let bad = || serde::de::Error::custom("expected a status like 200 or a class like \"2xx\"");
        match v {
            Value::Number(n) => match n.as_u64() {
                Some(c @ 100..=599) => Ok(StatusMatch::Code(c as u16)),
                _ => Err(bad()),
            },
            Value::String(s) => {
                let s = s.trim().to_ascii_lowercase();
                match s.strip_suffix("xx").and_then(|d| d.parse::<u16>().ok()) {
                    Some(c @ 1..=5) => Ok(StatusMatch::Class(c)),
                    _ => s
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (100..=599).contains(c))
                        .map(StatusMatch::Code)
                        .ok_or_else(bad),
                }
            }
            _ => Err(bad()),
        }
    }
}

/// Picks values out of a JSON response.
///
/// `from` is a JSON pointer in which `*` matches every element of an array (or every
/// value of an object); `bind` names what is kept: with no wildcard one name for the
/// value itself, otherwise one name per wildcard, each bound to the element that
/// wildcard matched. `where` filters on fields of the last element.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extract {
    pub from: String,
    pub bind: Vec<String>,
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub pick: Pick,
    #[serde(default)]
    pub on_empty: OnEmpty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    #[default]
    First,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnEmpty {
    /// End the operation successfully without the remaining steps (like the seed's
    /// claim, which does nothing when no goal is claimable).
    #[default]
    Skip,
    /// Count the operation as failed with kind `body`.
    Error,
}

impl Extract {
    pub fn wildcards(&self) -> usize {
        self.from.split('/').filter(|s| *s == "*").count()
    }
}

pub(super) fn check_header_names(h: &BTreeMap<String, Template>, path: &str, errs: &mut Errs) {
    for k in h.keys() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            errs.push(format!("{path}.{k}"), "not a valid HTTP header name");
        }
    }
}

/// Checks a `type: http` target: its URL, connection cap and header templates.
pub(super) fn check_target(
    h: &mut HttpTarget,
    path: &str,
    base_dir: &Path,
    fixtures: &[Fixture],
    errs: &mut Errs,
) {
    if !(h.base_url.starts_with("http://") || h.base_url.starts_with("https://")) {
        errs.push(
            format!("{path}.base_url"),
            "expected an http:// or https:// URL",
        );
    }
    if h.max_connections == Some(0) {
        errs.push(format!("{path}.max_connections"), "must be at least 1");
    }
    if h.connections.is_some_and(|n| n == 0 || n > 1024) {
        errs.push(format!("{path}.connections"), "must be between 1 and 1024");
    }
    if let Some(t) = h.tls.as_mut() {
        super::tls::check(t, base_dir, path, errs);
    }
    check_trace(h.trace, h.trace_sampled, path, errs);
    check_header_names(&h.headers, &format!("{path}.headers"), errs);
    let roots: Vec<&str> = h.headers.values().flat_map(|t| t.roots()).collect();
    check_roots(
        &roots,
        fixtures,
        &target_names(h.trace),
        &format!("{path}.headers"),
        errs,
    );
}

/// The steps of an HTTP op — `http:` is one step, `steps:` a sequence — checked in order:
/// names bound by a step's `extract` are visible to the steps after it.
/// Checks one request at `sp`: its method, path, body and headers, and that its
/// templates read only fixtures and the `bound` names.
pub(super) fn check_request(
    r: &HttpRequest,
    sp: &str,
    fixtures: &[Fixture],
    bound: &HashSet<String>,
    errs: &mut Errs,
) {
    if reqwest::Method::from_bytes(r.method.as_bytes()).is_err() {
        errs.push(format!("{sp}.method"), "not a valid HTTP method");
    }
    if !r.path.source().starts_with('/') {
        errs.push(format!("{sp}.path"), "must start with '/'");
    }
    if r.body.is_some() && r.json.is_some() {
        errs.push(sp, "give either `body` or `json`, not both");
    }
    check_header_names(&r.headers, &format!("{sp}.headers"), errs);
    let mut roots: Vec<&str> = r.path.roots().collect();
    roots.extend(r.headers.values().flat_map(|t| t.roots()));
    roots.extend(r.body.iter().flat_map(|t| t.roots()));
    if let Some(j) = &r.json {
        roots.extend(j.roots());
    }
    check_roots(&roots, fixtures, bound, sp, errs);
}

pub(super) fn build_steps(
    http: Option<HttpRequest>,
    steps: Option<Vec<Value>>,
    extract: Vec<Extract>,
    path: &str,
    fixtures: &[Fixture],
    traced: bool,
    errs: &mut Errs,
) -> Option<Vec<HttpStep>> {
    let steps: Vec<HttpStep> = match (http, steps) {
        (Some(request), None) => vec![HttpStep { request, extract }],
        (None, Some(steps)) => {
            if !extract.is_empty() {
                errs.push(
                    format!("{path}.extract"),
                    "with `steps`, put `extract` inside a step",
                );
            }
            if steps.is_empty() {
                errs.push(format!("{path}.steps"), "needs at least one step");
            }
            let mut out = Vec::new();
            for (i, s) in steps.iter().enumerate() {
                let sp = format!("{path}.steps[{i}]");
                // A step is `{http: {...}, extract: [...]}`.
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct RawStep {
                    http: HttpRequest,
                    #[serde(default)]
                    extract: Vec<Extract>,
                }
                if let Some(st) = errs.decode::<RawStep>(s, &sp) {
                    out.push(HttpStep {
                        request: st.http,
                        extract: st.extract,
                    });
                }
            }
            if out.len() != steps.len() {
                return None;
            }
            out
        }
        _ => return None,
    };
    // Validate each step in order: names bound by a step are visible after it.
    let mut bound: HashSet<String> = if traced {
        target_names(TraceMode::On)
    } else {
        HashSet::new()
    };
    let single = steps.len() == 1;
    for (i, st) in steps.iter().enumerate() {
        let sp = if single {
            format!("{path}.http")
        } else {
            format!("{path}.steps[{i}].http")
        };
        check_request(&st.request, &sp, fixtures, &bound, errs);
        let ep = if single {
            format!("{path}.extract")
        } else {
            format!("{path}.steps[{i}].extract")
        };
        for (j, ex) in st.extract.iter().enumerate() {
            let xp = format!("{ep}[{j}]");
            if !(ex.from.is_empty() || ex.from.starts_with('/')) {
                errs.push(format!("{xp}.from"), "a JSON pointer starts with '/'");
            }
            let want = ex.wildcards().max(1);
            if ex.bind.len() != want {
                errs.push(
                    format!("{xp}.bind"),
                    format!(
                        "`from` has {} wildcard(s), so `bind` needs {want} name(s), got {}",
                        ex.wildcards(),
                        ex.bind.len()
                    ),
                );
            }
            for b in &ex.bind {
                if !valid_name(b) || fixtures.iter().any(|f| &f.name == b) {
                    errs.push(
                        format!("{xp}.bind"),
                        format!("{b:?} must be a plain name that is not a fixture"),
                    );
                }
                bound.insert(b.clone());
            }
        }
    }
    Some(steps)
}
