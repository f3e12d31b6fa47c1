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
//!           eq: 7
//!       every: 50ms
//!       backoff: 1.5
//!       max_every: 500ms
//!       deadline: 10s
//! ```

use super::http::{check_request, HttpRequest, StatusMatch};
use super::postgres::{check_statement, SqlOp};
use crate::config::check::{check_roots, no_such_target, Kind, TargetKinds, TargetRef};
use crate::config::errors::Errs;
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
    targets: &TargetKinds,
    fixtures: &[Fixture],
    write: &WriteNames,
    errs: &mut Errs,
) -> Option<Visibility> {
    let path = format!("{path}.visibility");
    let mut raw = errs.decode::<RawVisibility>(v, &path)?;
    // A wrong piece of the poll itself drops the probe; errors inside its templates are
    // reported without dropping it (the config is refused either way).
    let errors = |errs: &Errs| errs.list.len();
    let start = errors(errs);
    let target = targets.iter().find(|t| t.name == raw.target).copied();
    let poll = poll_of(&raw, target, targets, &path, errs);
    let mut broken = errors(errs) > start;
    // What the poll's templates may name besides the fixtures.
    let mut known = write.bound.clone();
    known.insert("write".into());
    if target.is_some_and(|t| t.traced) {
        known.insert("trace".into());
    }
    if let Some(p) = &poll {
        broken |= !check_poll(p, &path, fixtures, &known, errs);
    }
    let mut until = Vec::new();
    for (i, c) in std::mem::take(&mut raw.until).into_iter().enumerate() {
        let cp = format!("{path}.until[{i}]");
        let before = errors(errs);
        let c = condition(c, &cp, poll.as_ref(), errs);
        broken |= errors(errs) > before;
        if let Some(c) = c {
            if let Condition::Compare { value, .. } = &c {
                check_roots(&value.roots(), fixtures, &known, &cp, errs);
            }
            until.push(c);
        }
    }
    let before = errors(errs);
    let timing = timing(&raw, &path, errs);
    if broken || errors(errs) > before {
        return None;
    }
    Some(Visibility {
        target: raw.target,
        poll: poll?,
        until,
        every: timing.every,
        backoff: timing.backoff,
        max_every: timing.max_every,
        deadline: timing.deadline,
    })
}

/// The poll: an `http` request on an HTTP target or a `sql` statement on a postgres one.
fn poll_of(
    raw: &RawVisibility,
    target: Option<TargetRef>,
    targets: &TargetKinds,
    path: &str,
    errs: &mut Errs,
) -> Option<Poll> {
    match (&raw.http, &raw.sql, target.map(|t| t.kind)) {
        (_, _, None) => {
            errs.push(
                format!("{path}.target"),
                no_such_target(&raw.target, targets),
            );
            None
        }
        (Some(h), None, Some(Kind::Http)) => Some(Poll::Http(h.clone())),
        (None, Some(s), Some(Kind::Postgres)) => Some(Poll::Sql(s.clone())),
        (Some(_), Some(_), _) => {
            errs.push(path, "give either `http` or `sql` for the poll, not both");
            None
        }
        (_, _, Some(k)) => {
            let want = match k {
                Kind::Http => "an `http` request",
                Kind::Postgres => "a `sql` statement",
                Kind::Grpc => "an http or postgres target (a gRPC target cannot be polled)",
            };
            errs.push(
                path,
                format!(
                    "target {:?} is {}: the poll needs {want}",
                    raw.target,
                    k.type_name()
                ),
            );
            None
        }
    }
}

/// The poll's request or statement, with the names its templates may use; false when
/// the poll itself is wrong (an `expect` on it).
fn check_poll(
    poll: &Poll,
    path: &str,
    fixtures: &[Fixture],
    known: &HashSet<String>,
    errs: &mut Errs,
) -> bool {
    match poll {
        Poll::Http(r) => {
            let hp = format!("{path}.http");
            let expects = r.expect.is_some();
            if expects {
                errs.push(
                    format!("{hp}.expect"),
                    "a poll has no expected status: say what counts as visible in `until` (e.g. `- status: 200`)",
                );
            }
            check_request(r, &hp, fixtures, known, errs);
            !expects
        }
        Poll::Sql(s) => {
            check_statement(s, &format!("{path}.sql"), fixtures, known, errs);
            true
        }
    }
}

/// One `until` condition at `cp`: a status match, or one comparison of a JSON pointer's
/// value (HTTP) or a column (SQL). None when it cannot be one (the errors say why).
fn condition(c: RawCondition, cp: &str, poll: Option<&Poll>, errs: &mut Errs) -> Option<Condition> {
    let is_sql = matches!(poll, Some(Poll::Sql(_)));
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
                errs.push(
                    cp,
                    "`status` is a match by itself (`status: 200` or `status: 2xx`), without eq/ne/gt/ge/lt/le",
                );
                return None;
            }
            if is_sql {
                errs.push(cp, "a SQL poll has no status: use `column`");
                return None;
            }
            return Some(Condition::Status(s));
        }
        (None, Some(p), None) => {
            if is_sql {
                errs.push(
                    cp,
                    "a SQL poll's conditions name a `column` of its first row",
                );
            }
            if !(p.is_empty() || p.starts_with('/')) {
                errs.push(
                    format!("{cp}.json"),
                    "a JSON pointer starts with '/' (e.g. /items/0/id)",
                );
            }
            Subject::Json(p)
        }
        (None, None, Some(col)) => {
            if !is_sql && poll.is_some() {
                errs.push(
                    cp,
                    "an HTTP poll's conditions name a `json` pointer or a `status`",
                );
            }
            Subject::Column(col)
        }
        _ => {
            errs.push(
                cp,
                "a condition is exactly one of `status`, `json` (a pointer into the body) or `column` (of the first row)",
            );
            return None;
        }
    };
    if cmps.len() != 1 {
        errs.push(cp, "compare with exactly one of eq, ne, gt, ge, lt, le");
        return None;
    }
    let (cmp, value) = cmps.into_iter().next()?;
    Some(Condition::Compare {
        subject,
        cmp,
        value,
    })
}

/// How often the poll runs and for how long.
struct Timing {
    every: Duration,
    backoff: f64,
    max_every: Duration,
    deadline: Duration,
}

/// `every`, `backoff`, `max_every` and `deadline`, with their defaults and bounds.
fn timing(raw: &RawVisibility, path: &str, errs: &mut Errs) -> Timing {
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
        errs.push(format!("{path}.every"), "must be at least 1ms");
    }
    if deadline.is_zero() || deadline > MAX_DEADLINE {
        errs.push(format!("{path}.deadline"), "must be above 0 and at most 1h");
    } else if every > deadline {
        errs.push(
            format!("{path}.every"),
            "must not be longer than the deadline",
        );
    }
    if !(1.0..=10.0).contains(&backoff) {
        errs.push(
            format!("{path}.backoff"),
            "must be between 1 (a fixed period) and 10",
        );
    }
    if max_every < every {
        errs.push(
            format!("{path}.max_every"),
            "must not be shorter than `every`",
        );
    }
    Timing {
        every,
        backoff,
        max_every,
        deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigErrors};

    /// A config with an http target `api`, a grpc target `ev`, a postgres target `db`
    /// and scenario `s` on `target` whose op `w` is `op` (YAML flow) plus `scenario`
    /// keys.
    fn parse(target: &str, op: &str, scenario: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            "targets:\n  api: {{type: http, base_url: \"http://127.0.0.1:1\"}}\n  ev: {{type: grpc, endpoint: \"http://127.0.0.1:2\"}}\n  db: {{type: postgres, url: \"postgres://u@127.0.0.1:3/d\", stats: {{enabled: false}}}}\nscenarios:\n  s:\n    target: {target}\n    schedule: {{hold: {{rate: 1/s}}}}\n{scenario}    ops:\n      w:\n{op}\n"
        );
        crate::config::parse_for_test(&text)
    }

    const WRITE: &str =
        "        http: {method: POST, path: /e}\n        extract: [{from: /id, bind: [id]}]\n";

    #[test]
    fn a_full_block_and_the_defaults() {
        let c = parse(
            "api",
            &format!("{WRITE}        visibility:\n          target: api\n          http: {{path: \"/e/{{{{write.id}}}}\"}}\n          until:\n            - status: 2xx\n            - {{json: /state, eq: done}}\n            - {{json: /n, ge: \"{{{{id}}}}\"}}\n          every: 20ms\n          backoff: 2\n          max_every: 400ms\n          deadline: 5s"),
            "    max_pending: 7\n",
        )
        .unwrap();
        let s = &c.scenarios[0];
        assert_eq!(s.max_pending, 7);
        let v = s.ops[0].visibility.as_ref().unwrap();
        assert_eq!(v.target, "api");
        assert!(matches!(v.poll, Poll::Http(_)));
        assert_eq!(v.until.len(), 3);
        assert!(matches!(
            v.until[0],
            Condition::Status(StatusMatch::Class(2))
        ));
        assert!(matches!(
            &v.until[2],
            Condition::Compare { subject: Subject::Json(p), cmp: Cmp::Ge, .. } if p == "/n"
        ));
        assert_eq!(
            (v.every, v.backoff, v.max_every, v.deadline),
            (
                Duration::from_millis(20),
                2.0,
                Duration::from_millis(400),
                Duration::from_secs(5)
            )
        );
        // Defaults: 50 ms, no backoff, 30 s; max_pending 1000.
        let c = parse(
            "api",
            &format!("{WRITE}        visibility: {{target: db, sql: {{query: \"SELECT 1 AS x WHERE $1 = 'a'\", params: [\"{{{{write.id}}}}\"]}}}}"),
            "",
        )
        .unwrap();
        let v = c.scenarios[0].ops[0].visibility.as_ref().unwrap();
        assert!(matches!(v.poll, Poll::Sql(_)));
        assert!(v.until.is_empty());
        assert_eq!(
            (v.every, v.backoff, v.max_every, v.deadline),
            (DEFAULT_EVERY, 1.0, DEFAULT_EVERY, DEFAULT_DEADLINE)
        );
        assert_eq!(c.scenarios[0].max_pending, DEFAULT_MAX_PENDING);
        // With a backoff and no max_every: ten times every.
        let c = parse(
            "api",
            &format!(
                "{WRITE}        visibility: {{target: api, http: {{path: /x}}, backoff: 1.5}}"
            ),
            "",
        )
        .unwrap();
        let v = c.scenarios[0].ops[0].visibility.as_ref().unwrap();
        assert_eq!(v.max_every, DEFAULT_EVERY * 10);
    }

    fn errors(target: &str, op: &str, scenario: &str) -> String {
        parse(target, op, scenario).unwrap_err().to_string()
    }

    #[test]
    fn mistakes_are_reported_with_their_key_and_line() {
        let vis = |body: &str| format!("{WRITE}        visibility:\n{body}");
        let e = errors(
            "api",
            &vis("          target: nope\n          http: {path: /x}"),
            "",
        );
        assert!(
            e.contains("scenarios.s.ops.w.visibility.target: no target named \"nope\" (known: api, ev, db)"),
            "{e}"
        );
        let e = errors(
            "api",
            &vis("          target: ev\n          http: {path: /x}"),
            "",
        );
        assert!(
            e.contains("target \"ev\" is grpc: the poll needs an http or postgres target"),
            "{e}"
        );
        let e = errors(
            "api",
            &vis("          target: db\n          http: {path: /x}"),
            "",
        );
        assert!(
            e.contains("target \"db\" is postgres: the poll needs a `sql` statement"),
            "{e}"
        );
        let e = errors(
            "api",
            &vis("          target: api\n          http: {path: /x}\n          sql: {query: SELECT 1}"),
            "",
        );
        assert!(
            e.contains("give either `http` or `sql` for the poll, not both"),
            "{e}"
        );
        let e = errors(
            "api",
            &vis("          target: api\n          http: {path: x, expect: [200]}\n          until:\n            - {status: 200, eq: 1}\n            - {json: a, eq: 1}\n            - {json: /a}\n            - {json: /a, eq: 1, ne: 2}\n            - {column: c, eq: 1}\n            - {json: /b, eq: \"{{nobody.x}}\"}\n          every: 2s\n          deadline: 1s\n          backoff: 11\n          colour: red"),
            "",
        );
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = errors(
            "api",
            &vis("          target: api\n          http: {path: x, expect: [200]}\n          until:\n            - {status: 200, eq: 1}\n            - {json: a, eq: 1}\n            - {json: /a}\n            - {json: /a, eq: 1, ne: 2}\n            - {column: c, eq: 1}\n            - {json: /b, eq: \"{{nobody.x}}\"}\n          every: 2s\n          deadline: 1s\n          backoff: 11"),
            "",
        );
        for want in [
            "scenarios.s.ops.w.visibility.http.path: must start with '/'",
            "scenarios.s.ops.w.visibility.http.expect: a poll has no expected status",
            "scenarios.s.ops.w.visibility.until[0]: `status` is a match by itself",
            "scenarios.s.ops.w.visibility.until[1].json: a JSON pointer starts with '/'",
            "scenarios.s.ops.w.visibility.until[2]: compare with exactly one of eq, ne, gt, ge, lt, le",
            "scenarios.s.ops.w.visibility.until[3]: compare with exactly one of",
            "scenarios.s.ops.w.visibility.until[4]: an HTTP poll's conditions name a `json` pointer or a `status`",
            "scenarios.s.ops.w.visibility.until[5]: template uses \"nobody\"",
            "scenarios.s.ops.w.visibility.every: must not be longer than the deadline",
            "scenarios.s.ops.w.visibility.backoff: must be between 1 (a fixed period) and 10",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
        // The line of the key is given.
        assert!(
            e.contains("visibility.backoff: must be between 1 (a fixed period) and 10 (line"),
            "{e}"
        );
        let e = errors(
            "api",
            &vis("          target: db\n          sql: {query: \"SELECT x FROM t WHERE id = $1\"}\n          until: [{status: 200}, {json: /x, eq: 1}]"),
            "",
        );
        for want in [
            "visibility.sql.params: the query uses $1 as its highest placeholder, but 0 param(s) are given",
            "visibility.until[0]: a SQL poll has no status: use `column`",
            "visibility.until[1]: a SQL poll's conditions name a `column` of its first row",
        ] {
            assert!(e.contains(want), "{want} not in {e}");
        }
        // The scenario: no closed loop, max_pending only with probes, and in range.
        let e = errors(
            "api",
            &vis("          target: api\n          http: {path: /x}"),
            "    arrival: closed\n    max_pending: 0\n",
        );
        assert!(
            e.contains("scenarios.s.arrival: visibility probes need an open arrival model"),
            "{e}"
        );
        assert!(
            e.contains("scenarios.s.max_pending: must be between 1 and 1000000"),
            "{e}"
        );
        let e = errors("api", WRITE, "    max_pending: 5\n");
        assert!(
            e.contains("scenarios.s.max_pending: max_pending bounds visibility probes, and no op of this scenario has `visibility`"),
            "{e}"
        );
    }
}
