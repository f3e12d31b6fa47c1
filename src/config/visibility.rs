//! `visibility:` on an op: after the op (the write) succeeds, poll another target until
//! what was written can be read there, or a deadline passes. The schema next to its
//! validation; the engine's side is `engine/visibility.rs`.
//!
//! ```yaml
//! ops:
//!   stat_update:
//!     grpc: {...}                      # the write: any op, recorded as usual
//!     visibility:
//!       target: challenge-api          # an http or postgres target
//!       http: {method: GET, path: /v1/challenges}   # or sql: {query, params}
//!       until:
//!         - status: 200
//!         - json: /challenges/0/goals/0/progress
//!           eq: "{{probe.value}}"
//!       every: 50ms
//!       backoff: 1.5
//!       max_every: 500ms
//!       deadline: 10s
//! ```

use super::http::{check_header_names, HttpRequest, StatusMatch};
use super::postgres::SqlOp;
use super::{check_roots, Errs, Target, TargetKind};
use crate::template::{Fixture, JsonTemplate};
use crate::units::Dur;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::Duration;

/// Defaults and bounds.
pub const DEFAULT_EVERY: Duration = Duration::from_millis(50);
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);
/// `max_pending` when a scenario with visibility ops sets none.
pub const DEFAULT_MAX_PENDING: usize = 1000;

/// A validated `visibility:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Visibility {
    /// The target polled (http or postgres).
    pub target: String,
    pub poll: Poll,
    /// Every condition must hold. Empty: an HTTP answer with a 2xx status, or a SQL
    /// statement that returns a row.
    pub until: Vec<Condition>,
    /// The first poll goes out as soon as the write returns; the next `every` later,
    /// each gap multiplied by `backoff` up to `max_every`.
    pub every: Duration,
    pub backoff: f64,
    pub max_every: Duration,
    /// From the write's intended start: no satisfying answer by then is `not_visible`.
    pub deadline: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    Http(HttpRequest),
    Sql(SqlOp),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// The HTTP answer's status matches (a code or a class like `2xx`).
    Status(StatusMatch),
    /// A value in the answer compared with a literal or a template: the JSON body at a
    /// pointer (HTTP), or a column of the first row (SQL).
    Compare {
        subject: Subject,
        cmp: Cmp,
        value: JsonTemplate,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A JSON pointer (`/challenges/0/goals/0/progress`) into the HTTP body.
    Json(String),
    /// A column of the SQL statement's first row.
    Column(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    pub fn word(self) -> &'static str {
        match self {
            Cmp::Eq => "eq",
            Cmp::Ne => "ne",
            Cmp::Gt => "gt",
            Cmp::Ge => "ge",
            Cmp::Lt => "lt",
            Cmp::Le => "le",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVisibility {
    target: String,
    #[serde(default)]
    http: Option<HttpRequest>,
    #[serde(default)]
    sql: Option<SqlOp>,
    #[serde(default)]
    until: Vec<RawCondition>,
    #[serde(default)]
    every: Option<Dur>,
    #[serde(default)]
    backoff: Option<f64>,
    #[serde(default)]
    max_every: Option<Dur>,
    #[serde(default)]
    deadline: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    #[serde(default)]
    status: Option<StatusMatch>,
    #[serde(default)]
    json: Option<String>,
    #[serde(default)]
    column: Option<String>,
    #[serde(default)]
    eq: Option<JsonTemplate>,
    #[serde(default)]
    ne: Option<JsonTemplate>,
    #[serde(default)]
    gt: Option<JsonTemplate>,
    #[serde(default)]
    ge: Option<JsonTemplate>,
    #[serde(default)]
    lt: Option<JsonTemplate>,
    #[serde(default)]
    le: Option<JsonTemplate>,
}

/// What the poll's templates may read besides the fixtures: `write` (everything the
/// write bound), the names the write's steps extracted, `trace` on a traced target.
pub(super) struct WriteNames {
    pub bound: HashSet<String>,
}

/// Decodes and checks `visibility` of the op at `path` (`path.visibility`).
pub(super) fn build(
    v: &serde_json::Value,
    path: &str,
    targets: &[Target],
    fixtures: &[Fixture],
    write: &WriteNames,
    errs: &mut Errs,
) -> Option<Visibility> {
    let path = format!("{path}.visibility");
    let raw = errs.decode::<RawVisibility>(v, &path)?;
    let target = targets.iter().find(|t| t.name == raw.target);
    let mut ok = true;
    let mut fail = |errs: &mut Errs, p: String, m: String| {
        errs.push(p, m);
        ok = false;
    };
    let poll = match (raw.http, raw.sql, target.map(|t| &t.kind)) {
        (_, _, None) => {
            let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
            fail(
                errs,
                format!("{path}.target"),
                format!(
                    "no target named {:?} (known: {})",
                    raw.target,
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            None
        }
        (Some(h), None, Some(TargetKind::Http(_))) => Some(Poll::Http(h)),
        (None, Some(s), Some(TargetKind::Postgres(_))) => Some(Poll::Sql(s)),
        (Some(_), Some(_), _) => {
            fail(
                errs,
                path.clone(),
                "give either `http` or `sql` for the poll, not both".into(),
            );
            None
        }
        (_, _, Some(k)) => {
            let want = match k {
                TargetKind::Http(_) => "an `http` request",
                TargetKind::Postgres(_) => "a `sql` statement",
                TargetKind::Grpc(_) => {
                    "an http or postgres target (a gRPC target cannot be polled)"
                }
            };
            fail(
                errs,
                path.clone(),
                format!(
                    "target {:?} is {}: the poll needs {want}",
                    raw.target,
                    k.type_name()
                ),
            );
            None
        }
    };
    let mut known = write.bound.clone();
    known.insert("write".into());
    if target.is_some_and(|t| t.kind.trace_sampled().is_some()) {
        known.insert("trace".into());
    }
    match &poll {
        Some(Poll::Http(r)) => {
            let hp = format!("{path}.http");
            if reqwest::Method::from_bytes(r.method.as_bytes()).is_err() {
                fail(
                    errs,
                    format!("{hp}.method"),
                    "not a valid HTTP method".into(),
                );
            }
            if !r.path.source().starts_with('/') {
                fail(errs, format!("{hp}.path"), "must start with '/'".into());
            }
            if r.body.is_some() && r.json.is_some() {
                fail(
                    errs,
                    hp.clone(),
                    "give either `body` or `json`, not both".into(),
                );
            }
            if r.expect.is_some() {
                fail(
                    errs,
                    format!("{hp}.expect"),
                    "a poll has no expected status: say what counts as visible in `until` (e.g. `- status: 200`)".into(),
                );
            }
            check_header_names(&r.headers, &format!("{hp}.headers"), errs);
            let mut roots: Vec<&str> = r.path.roots().collect();
            roots.extend(r.headers.values().flat_map(|t| t.roots()));
            roots.extend(r.body.iter().flat_map(|t| t.roots()));
            if let Some(j) = &r.json {
                roots.extend(j.roots());
            }
            check_roots(&roots, fixtures, &known, &hp, errs);
        }
        Some(Poll::Sql(s)) => {
            let sp = format!("{path}.sql");
            if s.query.trim().is_empty() {
                fail(errs, format!("{sp}.query"), "must not be empty".into());
            }
            let highest = super::postgres::highest_placeholder(&s.query);
            if highest != s.params.len() {
                fail(
                    errs,
                    format!("{sp}.params"),
                    format!(
                        "the query uses ${highest} as its highest placeholder, but {} param(s) are given",
                        s.params.len()
                    ),
                );
            }
            let roots: Vec<&str> = s.params.iter().flat_map(|p| p.value.roots()).collect();
            check_roots(&roots, fixtures, &known, &sp, errs);
        }
        None => {}
    }
    let is_sql = matches!(poll, Some(Poll::Sql(_)));
    let mut until = Vec::new();
    for (i, c) in raw.until.into_iter().enumerate() {
        let cp = format!("{path}.until[{i}]");
        let cmps: Vec<(Cmp, JsonTemplate)> = [
            (Cmp::Eq, c.eq),
            (Cmp::Ne, c.ne),
            (Cmp::Gt, c.gt),
            (Cmp::Ge, c.ge),
            (Cmp::Lt, c.lt),
            (Cmp::Le, c.le),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let subject = match (c.status, c.json, c.column) {
            (Some(s), None, None) => {
                if !cmps.is_empty() {
                    fail(
                        errs,
                        cp,
                        "`status` is a match by itself (`status: 200` or `status: 2xx`), without eq/ne/gt/ge/lt/le".into(),
                    );
                } else if is_sql {
                    fail(errs, cp, "a SQL poll has no status: use `column`".into());
                } else {
                    until.push(Condition::Status(s));
                }
                continue;
            }
            (None, Some(p), None) => {
                if is_sql {
                    fail(
                        errs,
                        cp.clone(),
                        "a SQL poll's conditions name a `column` of its first row".into(),
                    );
                }
                if !(p.is_empty() || p.starts_with('/')) {
                    fail(
                        errs,
                        format!("{cp}.json"),
                        "a JSON pointer starts with '/' (e.g. /items/0/id)".into(),
                    );
                }
                Subject::Json(p)
            }
            (None, None, Some(col)) => {
                if !is_sql && poll.is_some() {
                    fail(
                        errs,
                        cp.clone(),
                        "an HTTP poll's conditions name a `json` pointer or a `status`".into(),
                    );
                }
                Subject::Column(col)
            }
            _ => {
                fail(
                    errs,
                    cp,
                    "a condition is exactly one of `status`, `json` (a pointer into the body) or `column` (of the first row)".into(),
                );
                continue;
            }
        };
        if cmps.len() != 1 {
            fail(
                errs,
                cp,
                "compare with exactly one of eq, ne, gt, ge, lt, le".into(),
            );
            continue;
        }
        let Some((cmp, value)) = cmps.into_iter().next() else {
            continue;
        };
        let roots: Vec<&str> = value.roots();
        check_roots(&roots, fixtures, &known, &cp, errs);
        until.push(Condition::Compare {
            subject,
            cmp,
            value,
        });
    }
    let every = raw.every.map_or(DEFAULT_EVERY, |d| d.0);
    let deadline = raw.deadline.map_or(DEFAULT_DEADLINE, |d| d.0);
    let backoff = raw.backoff.unwrap_or(1.0);
    let max_every = raw.max_every.map_or(
        if backoff > 1.0 {
            (every * 10).min(deadline)
        } else {
            every
        },
        |d| d.0,
    );
    if every < Duration::from_millis(1) {
        fail(errs, format!("{path}.every"), "must be at least 1ms".into());
    }
    if deadline.is_zero() || deadline > MAX_DEADLINE {
        fail(
            errs,
            format!("{path}.deadline"),
            "must be above 0 and at most 1h".into(),
        );
    } else if every > deadline {
        fail(
            errs,
            format!("{path}.every"),
            "must not be longer than the deadline".into(),
        );
    }
    if !(1.0..=10.0).contains(&backoff) {
        fail(
            errs,
            format!("{path}.backoff"),
            "must be between 1 (a fixed period) and 10".into(),
        );
    }
    if max_every < every {
        fail(
            errs,
            format!("{path}.max_every"),
            "must not be shorter than `every`".into(),
        );
    }
    if !ok {
        return None;
    }
    Some(Visibility {
        target: raw.target,
        poll: poll?,
        until,
        every,
        backoff,
        max_every,
        deadline,
    })
}
