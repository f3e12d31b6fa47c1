//! Config error messages, pinned: each bad config gives exactly these lines (key path,
//! position, message). They were recorded with serde_yaml + yaml-rust2 and hold with
//! serde-saphyr, except where a case says otherwise.

use std::collections::HashMap;

const GOOD: &str = r#"listen: 127.0.0.1:9400
targets:
  api: {type: http, base_url: "http://127.0.0.1:8080"}
  events: {type: grpc, endpoint: "http://127.0.0.1:50051"}
scenarios:
  browse:
    target: api
    timeout: 5s
    max_in_flight: 10
    schedule: {hold: {rate: 5/s}}
    ops:
      list: {http: {path: /v1/things}}
  emit:
    target: events
    schedule:
      stages:
        - ramp: {from: 1/s, to: 5/s, over: 30s}
    ops:
      login:
        grpc:
          method: iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage
          message: {userId: "u-{{seq}}"}
"#;

/// The error lines for `text` (each `path (line L, column C): message`).
fn errors(text: &str) -> Vec<String> {
    let env = HashMap::from([("PRESENT".to_string(), "12".to_string())]);
    let dir = tempfile::tempdir().unwrap();
    match soakd::config::parse(text, "t.yaml", dir.path(), &env) {
        Ok(_) => vec![],
        Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn the_base_config_is_good() {
    assert_eq!(errors(GOOD), Vec::<String>::new());
}

/// Asserts the exact error lines of one case.
fn pin(name: &str, text: &str, want: &[&str]) {
    assert_eq!(errors(text), want, "case {name}");
}

#[test]
fn type_and_validation_errors_keep_their_path_and_position() {
    pin(
        "unknown key",
        &with("    timeout: 5s\n", "    timeout: 5s\n    retries: 3\n"),
        &["scenarios.browse.retries: unknown field `retries`, expected one of `target`, `max_in_flight`, `timeout`, `arrival`, `schedule`, `slo`, `guard`, `ops`, `buffer`, `max_pending` (line 9, column 14)"],
    );
    pin(
        "wrong type",
        &with("max_in_flight: 10", "max_in_flight: lots"),
        &["scenarios.browse.max_in_flight: invalid type: string \"lots\", expected usize (line 9, column 20)"],
    );
    pin(
        "bad duration",
        &with("timeout: 5s", "timeout: 5 parsecs"),
        &["scenarios.browse.timeout: expected a duration like \"30s\", \"5m\" or \"250ms\", got \"5 parsecs\" (line 8, column 14)"],
    );
    pin(
        "bad rate",
        &with("rate: 5/s", "rate: fast"),
        &["scenarios.browse.schedule.hold.rate: expected a rate like \"500/s\", got \"fast\" (line 10, column 29)"],
    );
    pin(
        "unknown target",
        &with("    target: api\n", "    target: apl\n"),
        &["scenarios.browse.target: no target named \"apl\" (known: api, events) (line 7, column 13)"],
    );
    pin(
        "missing env",
        &with("max_in_flight: 10", "max_in_flight: ${MISSING}"),
        &[
            "scenarios.browse.max_in_flight: environment variable MISSING is not set (write ${MISSING:-default} for a default) (line 9, column 20)",
            "scenarios.browse.max_in_flight: invalid type: string \"${MISSING}\", expected usize (line 9, column 20)",
        ],
    );
    // ${PRESENT} is 12: a number after expansion, as `max_in_flight` wants.
    pin(
        "env number",
        &with("max_in_flight: 10", "max_in_flight: ${PRESENT}"),
        &[],
    );
    pin(
        "grpc field",
        &with("message: {userId:", "message: {usrId:"),
        &["scenarios.emit.ops.login.grpc.message.usrId: iam.account.v1.UserLoggedIn has no field \"usrId\" (fields: id, version, namespace, parent_namespace, user_id, client_id, session_id, trace_id, timestamp, payload) (line 22, column 28)"],
    );
    pin(
        "template",
        &with("{path: /v1/things}", "{path: \"/v1/{{things\"}"),
        &["scenarios.browse.ops.list.http.path: unterminated \"{{\" in template \"/v1/{{things\" (line 12, column 27)"],
    );
    pin(
        "listen",
        &with("listen: 127.0.0.1:9400", "listen: nowhere"),
        &["listen: expected an address like \"127.0.0.1:9400\" (line 1, column 9)"],
    );
}

#[test]
fn positions_that_got_closer_to_the_mistake() {
    // Before (serde_yaml + yaml-rust2): "... got bad name (line 6, column 13)" — the value.
    pin(
        "bad name",
        &with("  browse:\n", "  \"bad name\":\n"),
        &["scenarios: names must be 1-64 characters of letters, digits, '_' or '-', got bad name (line 6, column 3)"],
    );
    // Before: "invalid type: unit value, expected a string (line 8, column 5)" — the next key.
    pin(
        "null",
        &with("    target: api\n", "    target:\n"),
        &["scenarios.browse.target: invalid type: null, expected a string (line 7, column 11)"],
    );
}

#[test]
fn syntax_errors_name_the_line_once() {
    // Before: "did not find expected ',' or ']' at line 10 column 13, while parsing a flow
    // sequence at line 9 column 20 (line 10, column 13)" — the position printed twice.
    pin(
        "syntax",
        &with("    max_in_flight: 10\n", "    max_in_flight: [10\n"),
        &["(top level): invalid YAML: illegal placement of ':' indicator (line 10, column 13)"],
    );
}

#[test]
fn duplicate_keys_are_reported_at_the_duplicate() {
    // Before: "duplicate entry with key \"targets\" (line 1, column 1)" — the first line of
    // the document, for a duplicate on line 24.
    pin(
        "duplicate top-level key",
        &format!("{GOOD}\ntargets: {{}}\n"),
        &["(top level): invalid YAML: duplicate key \"targets\" (each key may appear once in a mapping) (line 24, column 1)"],
    );
    // Before: "scenarios.browse: duplicate entry with key \"target\" at line 7 column 5
    // (line 7, column 5)" — the first `target`, not the second on line 9.
    pin(
        "duplicate nested key",
        &with("    timeout: 5s\n", "    timeout: 5s\n    target: api\n"),
        &["(top level): invalid YAML: duplicate key \"target\" (each key may appear once in a mapping) (line 9, column 5)"],
    );
}

#[test]
fn yaml_1_1_booleans_and_unknown_tags() {
    // `on` stays a string (YAML 1.2, as before): a scenario named "on" is just a name.
    assert_eq!(
        errors(&with("  browse:\n", "  on:\n")),
        Vec::<String>::new()
    );
    // An unknown tag is an error, not silently dropped.
    let e = errors(&with("timeout: 5s", "timeout: !secret 5s"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("(top level): invalid YAML:") && e[0].contains("line 8"),
        "{e:?}"
    );
}

#[test]
fn trace_settings_are_checked() {
    let traced = with(
        "base_url: \"http://127.0.0.1:8080\"}",
        "base_url: \"http://127.0.0.1:8080\", trace: on, trace_sampled: 10%}",
    );
    // With trace on, {{trace.id}} is a known name, in headers as in paths.
    pin(
        "trace on",
        &traced.replace(
            "{path: /v1/things}",
            "{path: \"/v1/things?t={{trace.id}}\"}",
        ),
        &[],
    );
    pin(
        "trace mode",
        &with(
            "base_url: \"http://127.0.0.1:8080\"}",
            "base_url: \"http://127.0.0.1:8080\", trace: yes}",
        ),
        &["targets.api: unknown variant `yes`, expected `off` or `on` (line 3, column 8)"],
    );
    pin(
        "sampled without trace",
        &with(
            "base_url: \"http://127.0.0.1:8080\"}",
            "base_url: \"http://127.0.0.1:8080\", trace_sampled: 10%}",
        ),
        &["targets.api.trace_sampled: has no effect without `trace: on` (line 3, column 71)"],
    );
    pin(
        "trace id without trace",
        &with(
            "{path: /v1/things}",
            "{path: \"/v1/things?t={{trace.id}}\"}",
        ),
        &["scenarios.browse.ops.list.http: template uses \"trace\", which needs `trace: on` on the op's target (line 12, column 20)"],
    );
    pin(
        "grpc trace id without trace",
        &with(
            "message: {userId: \"u-{{seq}}\"}",
            "message: {userId: \"{{trace.id}}\"}",
        ),
        &["scenarios.emit.ops.login.grpc: template uses \"trace\", which needs `trace: on` on the op's target (line 21, column 11)"],
    );
}

#[test]
fn an_slo_window_is_bounded_and_needs_an_objective() {
    let short = errors(&with(
        "    timeout: 5s\n",
        "    timeout: 5s\n    slo: {p95: 200ms, window: 5s}\n",
    ));
    assert_eq!(short.len(), 1, "{short:?}");
    assert!(
        short[0].starts_with("scenarios.browse.slo.window: must be between 10s and 24h ("),
        "{short:?}"
    );
    let alone = errors(&with(
        "    timeout: 5s\n",
        "    timeout: 5s\n    slo: {window: 1m}\n",
    ));
    assert_eq!(alone.len(), 1, "{alone:?}");
    assert!(
        alone[0].starts_with(
            "scenarios.browse.slo.window: a window needs an objective (p50, p95, p99, error_rate or e2e_p95) ("
        ),
        "{alone:?}"
    );
    assert_eq!(
        errors(&with(
            "    timeout: 5s\n",
            "    timeout: 5s\n    slo: {p95: 200ms, error_rate: 1%, window: 1h}\n",
        )),
        Vec::<String>::new()
    );
}

#[test]
fn a_regression_tolerance_is_a_ratio_under_one() {
    let search = |tol: &str| {
        let good = with(
            "    timeout: 5s\n",
            "    timeout: 5s\n    slo: {p95: 200ms}\n",
        );
        format!("{good}search:\n  each: 10s\n  regression_tolerance: {tol}\n  scenarios:\n    browse: {{levels: [10/s, 20/s]}}\n")
    };
    assert_eq!(errors(&search("5%")), Vec::<String>::new());
    let all = errors(&search("100%"));
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].starts_with("search.regression_tolerance: must be within [0, 100%) ("),
        "{all:?}"
    );
    let all = errors(&search("lots"));
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(
        all[0].starts_with("search.regression_tolerance")
            && all[0].contains("expected a ratio like"),
        "{all:?}"
    );
}

#[test]
fn a_guard_needs_an_slo_and_one_action() {
    let guarded = |slo: &str, guard: &str| {
        errors(&with(
            "    timeout: 5s\n",
            &format!("    timeout: 5s\n{slo}    guard: {guard}\n"),
        ))
    };
    let slo = "    slo: {p95: 200ms}\n";
    assert_eq!(
        guarded(
            slo,
            "{for: 1m, step_down: 50%, floor: 5/s, recover_after: 5m}"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        guarded(slo, "{for: 30s, pause: true}"),
        Vec::<String>::new()
    );
    let pin_one = |got: Vec<String>, starts: &str| {
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with(starts), "{got:?}");
    };
    pin_one(
        guarded("", "{for: 30s, pause: true}"),
        "scenarios.browse.guard: a guard acts on the scenario's rolling SLO: give it an `slo`",
    );
    pin_one(
        guarded(slo, "{for: 30s}"),
        "scenarios.browse.guard: say what to do: `pause: true`, or `step_down: 50%` with a `floor`",
    );
    pin_one(
        guarded(slo, "{for: 30s, step_down: 50%}"),
        "scenarios.browse.guard.floor: step_down needs a floor",
    );
    pin_one(
        guarded(slo, "{for: 30s, pause: true, step_down: 50%, floor: 1/s}"),
        "scenarios.browse.guard: give either `pause: true` or `step_down` (with `floor`), not both",
    );
    pin_one(
        guarded(slo, "{for: 30s, step_down: 100%, floor: 1/s}"),
        "scenarios.browse.guard.step_down: must be within (0, 100%)",
    );
    pin_one(
        guarded(slo, "{for: 0s, pause: true}"),
        "scenarios.browse.guard.for: must be at least 1s",
    );
    pin_one(
        guarded(slo, "{for: 30s, pause: true, after: 1m}"),
        "scenarios.browse.guard",
    );
}
