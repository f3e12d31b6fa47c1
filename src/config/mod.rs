//! The config file: typed schema, loading, `${ENV}` interpolation and validation.
//!
//! Loading never stops at the first problem. The document is decoded piece by piece
//! (each fixture, target, scenario, op and schedule stage on its own) and then
//! validated as a whole; every error carries its key path and, from [`yaml`], the
//! line and column it points at.
//!
//! Like `drivers/`, the schema is split by what it configures, each component's types
//! next to their validation: `http.rs`, `postgres.rs` (SQL, events, the buffered writer,
//! statistics), `grpc.rs`, `stages.rs` (schedules), `search.rs`, `dashboard.rs`,
//! `verdicts.rs`, `visibility.rs`, `tls.rs`, `observe.rs` (what is watched of the
//! system under test) and `soak.rs` (how it is judged). `model.rs` is the top of the model (config,
//! targets, scenarios, ops); `build.rs` decodes each piece and hands it to its file, then
//! runs the checks that span sections; `check.rs` holds the validators every section
//! shares; `errors.rs` is the accumulator, `yaml.rs` the parser and position index,
//! `interp.rs` `${ENV}`, `describe.rs` what `check-config` prints. This file loads and
//! parses, and re-exports.

mod build;
mod check;
pub mod dashboard;
pub mod deploys;
mod describe;
mod errors;
mod grpc;
mod http;
pub mod interp;
mod model;
pub mod observe;
mod observe_link;
mod postgres;
pub mod search;
pub mod soak;
mod stages;
pub mod tls;
pub mod verdicts;
pub mod visibility;
pub mod yaml;

pub use check::{Kind, Secret, TraceMode};
pub use errors::{ConfigError, ConfigErrors};
pub use grpc::{GrpcOp, GrpcTarget, ProtoSources};
pub use http::{
    Extract, HttpRequest, HttpStep, HttpTarget, HttpVersion, OnEmpty, Pick, StatusMatch,
};
pub use model::{
    Arrival, Config, Guard, GuardAction, Op, OpKind, Scenario, Slo, Target, TargetKind,
    DEFAULT_LISTEN,
};
pub use postgres::{
    redact_url, BufferConfig, EventOp, PgStatsConfig, PostgresTarget, SqlOp, SqlParam, SqlType,
    SslMode,
};

use build::{build, RawTop};
use errors::Errs;
use serde_json::{Map, Value};
use std::path::Path;
use yaml::PosIndex;

/// Load and validate a config file. Relative fixture paths resolve against its folder.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        source_name: path.display().to_string(),
        errors: vec![ConfigError {
            path: String::new(),
            message: format!("cannot read: {e}"),
            pos: None,
        }],
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(
        &text,
        &path.display().to_string(),
        &base,
        &interp::ProcessEnv,
    )
}

/// Parse config text. `base_dir` resolves fixture files.
pub fn parse(
    text: &str,
    source_name: &str,
    base_dir: &Path,
    env: &dyn interp::Env,
) -> Result<Config, ConfigErrors> {
    let index = PosIndex::build(text);
    let mut errs = Errs {
        list: Vec::new(),
        warnings: Vec::new(),
        index: &index,
    };
    let fail = |errs: Errs| ConfigErrors {
        source_name: source_name.to_string(),
        errors: errs.list,
    };
    let mut doc: Value = match yaml::parse(text) {
        Ok(Value::Null) => Value::Object(Map::new()),
        Ok(v) => v,
        Err(e) => {
            errs.list.push(ConfigError {
                path: String::new(),
                message: format!("invalid YAML: {}", e.message),
                pos: e.pos,
            });
            return Err(fail(errs));
        }
    };
    let mut env_errs = Vec::new();
    interp::expand_value(&mut doc, "", env, &mut env_errs);
    for (p, m) in env_errs {
        errs.push(p, m);
    }
    let Some(top) = errs.decode::<RawTop>(&doc, "") else {
        return Err(fail(errs));
    };
    let mut cfg = build(top, base_dir, &mut errs);
    if errs.list.is_empty() {
        cfg.warnings = errs.warnings.iter().map(|w| w.to_string()).collect();
        Ok(cfg)
    } else {
        Err(fail(errs))
    }
}

/// Parses `text` as a config file in the current directory, without variables (for
/// the sections' unit tests).
#[cfg(test)]
pub(crate) fn parse_for_test(text: &str) -> Result<Config, ConfigErrors> {
    parse(
        text,
        "t.yaml",
        Path::new("."),
        &std::collections::HashMap::new(),
    )
}

/// Parses a top-level `section` with no targets and no scenarios (for the sections'
/// unit tests).
#[cfg(test)]
pub(crate) fn parse_section_for_test(section: &str) -> Result<Config, ConfigErrors> {
    parse_for_test(&format!("targets: {{}}\nscenarios: {{}}\n{section}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn parse_str(text: &str) -> Result<Config, ConfigErrors> {
        let env: HashMap<String, String> =
            HashMap::from([("API_URL".to_string(), "http://127.0.0.1:1".to_string())]);
        parse(text, "test.yaml", Path::new("."), &env)
    }

    const GOOD: &str = r#"
targets:
  api:
    type: http
    base_url: ${API_URL}
scenarios:
  api:
    target: api
    max_in_flight: 50
    schedule:
      stages:
        - hold: {rate: 10/s, for: 1m}
        - levels: {rates: [50/s, 100/s], each: 5m}
      repeat: true
    slo: {p95: 2s, error_rate: 1%}
    ops:
      list:
        weight: 80
        http: {path: /v1/challenges}
      claim:
        weight: 20
        steps:
          - http: {path: /v1/challenges}
            extract:
              - from: /challenges/*/goals/*
                bind: [challenge, goal]
                where: {status: completed}
          - http:
              method: POST
              path: /v1/challenges/{{challenge.id}}/goals/{{goal.id}}/claim
              expect: [200, 409]
"#;

    #[test]
    fn good_config_parses() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.scenarios.len(), 1);
        let s = &c.scenarios[0];
        assert_eq!(s.ops.len(), 2);
        assert!(s.schedule.repeat);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        match &c.targets[0].kind {
            TargetKind::Http(h) => assert_eq!(h.base_url, "http://127.0.0.1:1"),
            other => panic!("{other:?}"),
        }
        let d = c.describe();
        assert!(d.contains("list 80%, claim 20%"), "{d}");
        assert!(d.contains("repeats every 11m"), "{d}");
    }

    #[test]
    fn all_errors_with_path_and_line() {
        let text = r#"targets:
  api:
    type: http
    base_url: http://x
    bogus: 1
scenarios:
  api:
    target: nope
    schedule:
      levels:
        rates: [50/s, 100/s, fast]
        each: 5m
    ops:
      list:
        http: {path: "/u/{{usr.id}}"}
"#;
        let e = parse_str(text).unwrap_err();
        let msgs: Vec<String> = e.errors.iter().map(|e| e.to_string()).collect();
        let all = msgs.join("\n");
        assert!(msgs.len() >= 4, "{all}");
        assert!(
            all.contains("scenarios.api.schedule.levels.rates[2]: expected a rate like \"500/s\", got \"fast\" (line 11, column"),
            "{all}"
        );
        assert!(
            all.contains("targets.api") && all.contains("unknown field `bogus`"),
            "{all}"
        );
        assert!(
            all.contains("scenarios.api.target: no target named \"nope\""),
            "{all}"
        );
        assert!(all.contains("template uses \"usr\""), "{all}");
    }

    #[test]
    fn missing_env_var_is_reported_with_path() {
        let text = "targets:\n  api:\n    type: http\n    base_url: ${NOT_SET_ANYWHERE_X}\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.errors[0].path, "targets.api.base_url");
        assert!(e.errors[0]
            .message
            .contains("NOT_SET_ANYWHERE_X is not set"));
        assert_eq!(e.errors[0].pos.map(|p| p.line), Some(4));
    }

    #[test]
    fn yaml_syntax_error_has_a_line() {
        let e = parse_str("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.errors[0].message.contains("invalid YAML"));
        assert!(e.errors[0].pos.is_some());
    }

    #[test]
    fn schedule_rules() {
        let text = r#"targets: {t: {type: http, base_url: "http://x"}}
scenarios:
  s:
    target: t
    schedule:
      stages:
        - hold: {rate: 1/s}
        - ramp: {from: 1/s, to: 2/s, over: 0s}
      repeat: true
    ops: {o: {http: {path: /}}}
"#;
        let e = parse_str(text).unwrap_err();
        let all = e.to_string();
        assert!(all.contains("stages[0]: this stage never ends"), "{all}");
        assert!(
            all.contains("stages[0]: `repeat: true` needs every stage to end"),
            "{all}"
        );
        assert!(
            all.contains("stages[1].ramp.over: must be above 0"),
            "{all}"
        );
    }

    #[test]
    fn a_follow_stage_is_checked_key_by_key() {
        let ok = r#"targets: {t: {type: http, base_url: "http://x"}}
scenarios:
  s:
    target: t
    schedule:
      follow:
        prometheus: http://127.0.0.1:9090/
        query: sum(rate(http_requests_total{job="api"}[5m]))
        factor: 0.1
        min: 5/s
        max: 500/s
        every: 30s
        max_step: 25%
        on_error: fallback
        fallback: 20/s
    ops: {o: {http: {path: /}}}
"#;
        let c = parse_str(ok).unwrap();
        let crate::schedule::Stage::Follow { follow, scale, dur } =
            &c.scenarios[0].schedule.stages[0]
        else {
            panic!("{:?}", c.scenarios[0].schedule);
        };
        assert_eq!((*scale, *dur), (1.0, None));
        let f = &follow.spec;
        assert_eq!(f.prometheus, "http://127.0.0.1:9090");
        assert_eq!(
            (f.factor, f.min, f.max, f.fallback),
            (0.1, 5.0, 500.0, Some(20.0))
        );
        assert_eq!(f.max_step, Some(crate::schedule::follow::Step::Share(0.25)));
        assert_eq!(f.every, std::time::Duration::from_secs(30));
        assert_eq!(follow.rate(), 20.0, "the fallback until the first read");
        let bad = r#"targets: {t: {type: http, base_url: "http://x"}}
scenarios:
  s:
    target: t
    schedule:
      follow: {prometheus: "prometheus:9090", query: " ", min: 50/s, max: 10/s, every: 0s, max_step: lots, on_error: fallback, factor: -1}
    ops: {o: {http: {path: /}}}
"#;
        let all = parse_str(bad).unwrap_err().to_string();
        for want in [
            "schedule.follow.prometheus: expected the Prometheus server's URL",
            "schedule.follow.query: must not be empty",
            "schedule.follow.factor: must be a number above 0",
            "schedule.follow.min: 50/s is above max (10/s)",
            "schedule.follow.every: must be between 1s and 1h",
            "schedule.follow.max_step: expected a share of the current rate like 25%",
            "schedule.follow.fallback: `on_error: fallback` needs the fallback rate",
        ] {
            assert!(all.contains(want), "{want}: {all}");
        }
        let no_max = ok.replace("        max: 500/s\n", "");
        let all = parse_str(&no_max).unwrap_err().to_string();
        assert!(all.contains("max"), "{all}");
    }

    #[test]
    fn extract_bind_count_checked() {
        let text = r#"targets: {t: {type: http, base_url: "http://x"}}
scenarios:
  s:
    target: t
    schedule: {hold: {rate: 1/s}}
    ops:
      o:
        http: {path: /}
        extract: [{from: /a/*/b/*, bind: [x]}]
"#;
        let e = parse_str(text).unwrap_err();
        assert!(
            e.to_string()
                .contains("ops.o.extract[0].bind: `from` has 2 wildcard(s)"),
            "{e}"
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://soak:pw@db:5432/app?x=1"),
            "postgres://soak:***@db:5432/app?x=1"
        );
        assert_eq!(redact_url("http://host/path"), "http://host/path");
        assert_eq!(
            redact_url("postgres://user@host/db"),
            "postgres://user@host/db"
        );
        assert_eq!(format!("{:?}", Secret("x".into())), "Secret(***)");
    }

    #[test]
    fn postgres_targets_and_ops() {
        let text = r#"
fixtures: {}
targets:
  db: {type: postgres, url: "postgres://u:p@127.0.0.1:5432/app", max_connections: 50, sslmode: verify-full}
  api: {type: http, base_url: "http://x"}
scenarios:
  reads:
    target: db
    schedule: {hold: {rate: 1/s}}
    ops:
      q:
        sql:
          query: "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = '$9'"
          params: ["x", {value: "{{rand_int 1 5}}", type: int8}]
  events:
    target: db
    buffer: {size_limit: 5000, flush_interval: 500ms}
    schedule: {hold: {rate: 1/s}}
    ops:
      e: {event: {user: u1, stat_code: wins_ranked, value: "3"}}
"#;
        let c = parse_str(text).unwrap();
        match &c.scenarios[0].ops[0].kind {
            OpKind::Sql(s) => {
                assert_eq!(s.params.len(), 2);
                assert_eq!(s.params[1].ty, SqlType::Int8);
            }
            other => panic!("{other:?}"),
        }
        let b = c.scenarios[1].buffer.as_ref().unwrap();
        assert_eq!((b.size_limit, b.max_batch), (5000, 10_000));
        assert_eq!(b.flush_interval, Duration::from_millis(500));
        assert!(c.describe().contains("postgres://u:***@127.0.0.1:5432/app"));
    }

    #[test]
    fn postgres_mistakes_are_reported() {
        let text = r#"
targets:
  db: {type: postgres, url: "mysql://x", min_connections: 9, max_connections: 2}
  db2: {type: postgres, url: "postgres://y"}
  api: {type: http, base_url: "http://x"}
scenarios:
  s:
    target: db
    schedule: {hold: {rate: 1/s}}
    ops:
      q: {sql: {query: "SELECT $1, $2", params: ["a"]}}
      e: {event: {user: u, stat_code: s, value: "1"}}
      h: {http: {path: /}}
  t:
    target: api
    buffer: {}
    schedule: {hold: {rate: 1/s}}
    ops:
      q: {sql: {query: "SELECT 1"}}
"#;
        let all = parse_str(text).unwrap_err().to_string();
        for want in [
            "targets.db.url: expected a postgres:// URL",
            "targets.db.min_connections: must not exceed max_connections",
            "targets.db2.stats: only one postgres target may export statistics",
            "scenarios.s.ops.q.sql.params: the query uses $2 as its highest placeholder, but 1 param(s) are given",
            "scenarios.s.ops.h: this op needs an http target, but target \"db\" is postgres",
            "scenarios.s.buffer: event ops need a `buffer`",
            "scenarios.t.ops.q: this op needs a postgres target, but target \"api\" is http",
            "scenarios.t.buffer: a buffer is only used by event ops",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
    }
}
