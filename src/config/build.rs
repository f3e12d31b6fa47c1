//! From the decoded document to a [`Config`]: each fixture, target, scenario, op and
//! schedule stage decoded on its own and handed to its section's file, then the checks
//! that span sections (one statistics collector per server, ops against their targets).

use super::check::{key_name, no_such_target, resolve, Secret, TargetKinds, TargetRef};
use super::errors::Errs;
use super::grpc::{self, GrpcOp, GrpcTarget};
use super::http::{self, Extract, HttpRequest, HttpTarget};
use super::model::{
    Arrival, Config, Guard, GuardAction, Op, OpKind, Scenario, Slo, Target, TargetKind,
    DEFAULT_LISTEN,
};
use super::observe::{self, Observe};
use super::postgres::{self, build_buffer, EventOp, PostgresTarget, SqlOp};
use super::stages::build_schedule;
use super::{dashboard, deploys, observe_link, search, soak, verdicts, visibility};
use crate::template::Fixture;
use crate::units::{Dur, Ratio};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A YAML mapping, in document order.
type Mapping = Map<String, Value>;
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTop {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    control_token: Option<String>,
    #[serde(default)]
    shutdown_grace: Option<Dur>,
    #[serde(default)]
    quantile_window: Option<Dur>,
    #[serde(default)]
    fixtures: Mapping,
    #[serde(default)]
    targets: Mapping,
    #[serde(default)]
    scenarios: Mapping,
    #[serde(default)]
    search: Option<Value>,
    #[serde(default)]
    results: Option<Value>,
    #[serde(default)]
    dashboard: Option<Value>,
    #[serde(default)]
    verdicts: Option<Value>,
    #[serde(default)]
    soak: Option<Value>,
    #[serde(default)]
    deploys: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFixture {
    /// JSON file holding an array of rows, relative to the config file.
    file: String,
    /// `random` (default) or `sequential` (row = iteration number mod rows).
    #[serde(default)]
    pick: FixturePick,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum FixturePick {
    #[default]
    Random,
    Sequential,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum RawTarget {
    Http(HttpTarget),
    Postgres(PostgresTarget),
    Grpc(GrpcTarget),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    target: String,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    #[serde(default)]
    timeout: Option<Dur>,
    #[serde(default)]
    arrival: Arrival,
    schedule: Value,
    #[serde(default)]
    slo: Slo,
    #[serde(default)]
    guard: Option<RawGuard>,
    ops: Mapping,
    #[serde(default)]
    buffer: Option<Value>,
    #[serde(default)]
    max_pending: Option<usize>,
}

fn default_max_in_flight() -> usize {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp {
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    timeout: Option<Dur>,
    /// A single HTTP request (with `extract` beside it if wanted).
    #[serde(default)]
    http: Option<HttpRequest>,
    #[serde(default)]
    extract: Vec<Extract>,
    /// Several HTTP requests in sequence.
    #[serde(default)]
    steps: Option<Vec<Value>>,
    #[serde(default)]
    sql: Option<SqlOp>,
    #[serde(default)]
    event: Option<EventOp>,
    #[serde(default)]
    grpc: Option<GrpcOp>,
    /// Poll until what the op wrote is visible.
    #[serde(default)]
    visibility: Option<Value>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    #[serde(rename = "for")]
    after: Dur,
    #[serde(default)]
    pause: bool,
    #[serde(default)]
    step_down: Option<Ratio>,
    #[serde(default)]
    floor: Option<crate::units::Rate>,
    #[serde(default)]
    recover_after: Option<Dur>,
}

fn build_guard(raw: RawGuard, slo: &Slo, path: &str, errs: &mut Errs) -> Option<Guard> {
    let path = format!("{path}.guard");
    if !slo.is_set() {
        errs.push(
            path.clone(),
            "a guard acts on the scenario's rolling SLO: give it an `slo`",
        );
    }
    if raw.after.0 < Duration::from_secs(1) {
        errs.push(format!("{path}.for"), "must be at least 1s");
    }
    if raw
        .recover_after
        .is_some_and(|d| d.0 < Duration::from_secs(1))
    {
        errs.push(format!("{path}.recover_after"), "must be at least 1s");
    }
    let action = match (raw.pause, raw.step_down, raw.floor) {
        (true, None, None) => GuardAction::Pause,
        (false, Some(step), Some(floor)) => {
            if !(step.0 > 0.0 && step.0 < 1.0) {
                errs.push(format!("{path}.step_down"), "must be within (0, 100%)");
            }
            GuardAction::StepDown {
                keep: 1.0 - step.0,
                floor: floor.0,
            }
        }
        (false, Some(_), None) => {
            errs.push(
                format!("{path}.floor"),
                "step_down needs a floor: the rate it never goes below (e.g. 5/s)",
            );
            return None;
        }
        (true, _, _) => {
            errs.push(
                path,
                "give either `pause: true` or `step_down` (with `floor`), not both",
            );
            return None;
        }
        (false, None, _) => {
            errs.push(
                path,
                "say what to do: `pause: true`, or `step_down: 50%` with a `floor`",
            );
            return None;
        }
    };
    Some(Guard {
        after: raw.after.0,
        action,
        recover_after: raw.recover_after.map(|d| d.0),
    })
}

pub(super) fn build(top: RawTop, base_dir: &Path, errs: &mut Errs) -> Config {
    let listen = match top.listen.as_deref().unwrap_or(DEFAULT_LISTEN).parse() {
        Ok(a) => a,
        Err(_) => {
            errs.push("listen", "expected an address like \"127.0.0.1:9400\"");
            DEFAULT_LISTEN
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9400)))
        }
    };
    let control_token = top.control_token.filter(|t| !t.is_empty()).map(Secret);
    let quantile_window = top
        .quantile_window
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(60));
    if quantile_window < Duration::from_secs(10) || quantile_window > Duration::from_secs(3600) {
        errs.push("quantile_window", "must be between 10s and 1h");
    }

    let fixtures = build_fixtures(&top.fixtures, base_dir, errs);
    let (targets, broken, mut observe) = build_targets(&top.targets, &fixtures, base_dir, errs);
    postgres::check_one_stats_target(
        targets.iter().filter_map(|t| match &t.kind {
            TargetKind::Postgres(p) => Some((t.name.as_str(), p)),
            _ => None,
        }),
        errs,
    );
    let kinds: Vec<TargetRef> = targets
        .iter()
        .map(|t| TargetRef {
            name: &t.name,
            kind: t.kind.kind(),
            traced: t.kind.trace_sampled().is_some(),
        })
        .collect();

    let mut scenarios = Vec::new();
    for (k, v) in &top.scenarios {
        let Some(name) = key_name(k, "scenarios", errs) else {
            continue;
        };
        let path = format!("scenarios.{name}");
        if let Some(s) = build_scenario(
            name,
            v,
            &path,
            &Known {
                targets: &targets,
                kinds: &kinds,
                broken_targets: &broken,
                fixtures: &fixtures,
                base_dir,
            },
            errs,
        ) {
            scenarios.push(s);
        }
    }

    observe_link::attach_postgres(&mut observe, &targets, &scenarios, errs);

    let search = top.search.as_ref().and_then(|v| {
        let candidates: Vec<search::Candidate> = scenarios
            .iter()
            .map(|s| search::Candidate {
                name: &s.name,
                closed: s.arrival == Arrival::Closed,
                has_slo: s.slo.is_set(),
            })
            .collect();
        search::build_search(v, &candidates, &kinds, errs)
    });
    let mut search = search;
    if let Some(s) = search.as_mut() {
        observe_link::link_search(&mut observe, s, &scenarios, errs);
    }
    let results = search::build_results(top.results.as_ref(), base_dir, errs);
    let dashboard = dashboard::build_dashboard(top.dashboard.as_ref(), errs);
    let verdicts = verdicts::build_verdicts(top.verdicts.as_ref(), search.as_ref(), errs);
    observe_link::link_release(&mut observe, &targets, verdicts.as_ref(), errs);
    let soak = soak::build_soak(top.soak.as_ref(), errs);
    let deploys = deploys::build_deploys(top.deploys.as_ref(), errs);
    if let Some(v) = &verdicts {
        // A sharded leader sums each block with increase(), which needs two scrapes of
        // every shard inside it.
        if deploys.block < v.scrape_interval * 2 {
            errs.push(
                "deploys.block",
                format!(
                    "a block ({}) must hold at least 2 of Prometheus's scrapes (verdicts.scrape_interval = {}) to be summed over the shards; lengthen deploys.block",
                    crate::units::format_duration(deploys.block),
                    crate::units::format_duration(v.scrape_interval)
                ),
            );
        }
    }
    for (t, c) in &deploys.controls {
        for (what, name) in [("", t), (" (the control)", c)] {
            if !targets.iter().any(|x| &x.name == name) && !broken.contains(name) {
                errs.push(
                    format!("deploys.controls.{t}"),
                    format!("no target named {name:?}{what}"),
                );
            }
        }
    }
    for (canary, t) in &deploys.canaries {
        if !targets.iter().any(|x| &x.name == t) && !broken.contains(t) {
            errs.push(
                format!("deploys.canaries.{canary}"),
                format!("no target named {t:?}"),
            );
        }
    }
    Config {
        warnings: Vec::new(),
        deploys,
        observe,
        soak,
        verdicts,
        search,
        results,
        dashboard,
        listen,
        control_token,
        shutdown_grace: top
            .shutdown_grace
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(30)),
        quantile_window,
        fixtures,
        targets,
        scenarios,
    }
}

/// `fixtures.NAME`: JSON arrays of rows that templates read (`{{user.id}}`).
fn build_fixtures(raw: &Mapping, base_dir: &Path, errs: &mut Errs) -> Vec<Fixture> {
    let mut fixtures = Vec::new();
    for (k, v) in raw {
        let Some(name) = key_name(k, "fixtures", errs) else {
            continue;
        };
        let path = format!("fixtures.{name}");
        let Some(raw) = errs.decode::<RawFixture>(v, &path) else {
            continue;
        };
        let file = resolve(base_dir, &raw.file);
        match load_fixture_rows(&file) {
            Ok(rows) => fixtures.push(Fixture {
                name,
                rows: Arc::new(rows),
                sequential: raw.pick == FixturePick::Sequential,
            }),
            Err(e) => errs.push(format!("{path}.file"), format!("{}: {e}", file.display())),
        }
    }
    fixtures
}

/// `targets.NAME`, each checked by its kind's module; also the names of targets that
/// failed to decode (scenarios naming them get no second error), and what is observed
/// of each (`observe:`, decoded apart, so watching a target never changes its load).
fn build_targets(
    raw: &Mapping,
    fixtures: &[Fixture],
    base_dir: &Path,
    errs: &mut Errs,
) -> (Vec<Target>, HashSet<String>, Vec<Observe>) {
    let mut observed = Vec::new();
    let mut targets = Vec::new();
    // Targets that exist but failed to decode: scenarios naming them get no second error.
    let mut broken: HashSet<String> = HashSet::new();
    for (k, v) in raw {
        let Some(name) = key_name(k, "targets", errs) else {
            continue;
        };
        let path = format!("targets.{name}");
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut().and_then(|m| m.remove("observe")) {
            let at = format!("{path}.observe");
            if let Some(o) = observe::build_observe(&name, &o, &at, base_dir, errs) {
                observed.push(o);
            }
        }
        let Some(raw) = errs.decode::<RawTarget>(&v, &path) else {
            broken.insert(name);
            continue;
        };
        let kind = match raw {
            RawTarget::Http(mut h) => {
                http::check_target(&mut h, &path, base_dir, fixtures, errs);
                TargetKind::Http(h)
            }
            RawTarget::Postgres(p) => {
                postgres::check_target(&p, &path, errs);
                TargetKind::Postgres(p)
            }
            RawTarget::Grpc(mut g) => {
                grpc::check_target(&mut g, &path, base_dir, fixtures, errs);
                TargetKind::Grpc(g)
            }
        };
        targets.push(Target { name, kind });
    }
    (targets, broken, observed)
}

fn load_fixture_rows(file: &Path) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(rows)) if !rows.is_empty() => Ok(rows),
        Ok(serde_json::Value::Array(_)) => Err("the array is empty".into()),
        Ok(_) => Err("expected a JSON array of rows".into()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// What a scenario is checked against: everything decoded before it.
struct Known<'a> {
    targets: &'a [Target],
    kinds: &'a TargetKinds<'a>,
    broken_targets: &'a HashSet<String>,
    fixtures: &'a [Fixture],
    base_dir: &'a Path,
}

fn build_scenario(
    name: String,
    v: &Value,
    path: &str,
    known: &Known,
    errs: &mut Errs,
) -> Option<Scenario> {
    let Known {
        targets,
        kinds,
        broken_targets,
        fixtures: _,
        base_dir,
    } = *known;
    let raw = errs.decode::<RawScenario>(v, path)?;
    let target = targets.iter().find(|t| t.name == raw.target);
    if target.is_none() && !broken_targets.contains(&raw.target) {
        errs.push(format!("{path}.target"), no_such_target(&raw.target, kinds));
    }
    if raw.max_in_flight == 0 || raw.max_in_flight > 1_000_000 {
        errs.push(
            format!("{path}.max_in_flight"),
            "must be between 1 and 1000000",
        );
    }
    let schedule = build_schedule(&raw.schedule, &format!("{path}.schedule"), errs);
    let mut ops = Vec::new();
    if raw.ops.is_empty() {
        errs.push(format!("{path}.ops"), "a scenario needs at least one op");
    }
    for (k, v) in &raw.ops {
        let Some(op_name) = key_name(k, &format!("{path}.ops"), errs) else {
            continue;
        };
        let op_path = format!("{path}.ops.{op_name}");
        if let Some(op) = build_op(op_name, v, &op_path, target, known, errs) {
            ops.push(op);
        }
    }
    if !ops.is_empty() && ops.iter().all(|o| o.weight == 0) {
        errs.push(
            format!("{path}.ops"),
            "at least one op needs a weight above 0",
        );
    }
    let timeout = raw.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() {
        errs.push(format!("{path}.timeout"), "must be above 0");
    }
    let buffer = raw
        .buffer
        .as_ref()
        .and_then(|b| build_buffer(b, &format!("{path}.buffer"), base_dir, errs));
    let has_events = ops.iter().any(|o| matches!(o.kind, OpKind::Event(_)));
    if has_events && raw.buffer.is_none() {
        errs.push(
            format!("{path}.buffer"),
            "event ops need a `buffer` (write `buffer: {}` for the defaults)",
        );
    }
    if !has_events && raw.buffer.is_some() {
        errs.push(
            format!("{path}.buffer"),
            "a buffer is only used by event ops",
        );
    }
    if let Some(w) = raw.slo.window {
        let (lo, hi) = Slo::WINDOW_RANGE;
        if w.0 < lo || w.0 > hi {
            errs.push(format!("{path}.slo.window"), "must be between 10s and 24h");
        } else if !raw.slo.is_set() {
            errs.push(
                format!("{path}.slo.window"),
                "a window needs an objective (p50, p95, p99, error_rate or e2e_p95)",
            );
        }
    }
    let guard = raw.guard.and_then(|g| build_guard(g, &raw.slo, path, errs));
    let probes = ops.iter().any(|o| o.visibility.is_some());
    if probes && raw.arrival == Arrival::Closed {
        errs.push(
            format!("{path}.arrival"),
            "visibility probes need an open arrival model (uniform or poisson): an arrival that finds max_pending probes running is dropped, which a closed loop cannot do",
        );
    }
    match raw.max_pending {
        Some(_) if !probes => errs.push(
            format!("{path}.max_pending"),
            "max_pending bounds visibility probes, and no op of this scenario has `visibility`",
        ),
        Some(n) if n == 0 || n > 1_000_000 => errs.push(
            format!("{path}.max_pending"),
            "must be between 1 and 1000000",
        ),
        _ => {}
    }
    Some(Scenario {
        name,
        target: raw.target,
        max_in_flight: raw.max_in_flight,
        timeout,
        arrival: raw.arrival,
        schedule: schedule?,
        slo: raw.slo,
        guard,
        ops,
        buffer,
        max_pending: raw.max_pending.unwrap_or(visibility::DEFAULT_MAX_PENDING),
    })
}

fn build_op(
    name: String,
    v: &Value,
    path: &str,
    target: Option<&Target>,
    known: &Known,
    errs: &mut Errs,
) -> Option<Op> {
    let fixtures = known.fixtures;
    let raw = errs.decode::<RawOp>(v, path)?;
    let kinds = raw.http.is_some() as u8
        + raw.steps.is_some() as u8
        + raw.sql.is_some() as u8
        + raw.event.is_some() as u8
        + raw.grpc.is_some() as u8;
    if kinds != 1 {
        errs.push(
            path,
            "an op is exactly one of `http` (one request), `steps` (a sequence), `sql`, `event` or `grpc`",
        );
        return None;
    }
    let want_target = if raw.sql.is_some() || raw.event.is_some() {
        "postgres"
    } else if raw.grpc.is_some() {
        "grpc"
    } else {
        "http"
    };
    if let Some(t) = target {
        if t.kind.type_name() != want_target {
            errs.push(
                path,
                format!(
                    "this op needs {} {want_target} target, but target {:?} is {}",
                    if want_target == "http" { "an" } else { "a" },
                    t.name,
                    t.kind.type_name()
                ),
            );
        }
    }
    let (weight, timeout) = (raw.weight, raw.timeout.map(|d| d.0));
    let raw_vis = raw.visibility;
    let op = |kind: OpKind, errs: &mut Errs| {
        // The poll reads what the write bound: its steps' extractions (HTTP), its
        // first row (SQL) or its response's fields (gRPC), all under `write`.
        let bound: HashSet<String> = match &kind {
            OpKind::Http(steps) => steps
                .iter()
                .flat_map(|s| s.extract.iter().flat_map(|e| e.bind.iter().cloned()))
                .collect(),
            _ => HashSet::new(),
        };
        let visibility = match &raw_vis {
            Some(v) => Some(visibility::build(
                v,
                path,
                known.kinds,
                fixtures,
                &visibility::WriteNames { bound },
                errs,
            )?),
            None => None,
        };
        Some(Op {
            name,
            weight,
            timeout,
            kind,
            visibility,
        })
    };
    if let Some(sql) = raw.sql {
        postgres::check_sql(&sql, path, fixtures, errs);
        return op(OpKind::Sql(sql), errs);
    }
    if let Some(g) = raw.grpc {
        let grpc_target = target.and_then(|t| match &t.kind {
            TargetKind::Grpc(g) => Some(g),
            _ => None,
        });
        grpc::check_op(&g, grpc_target, path, fixtures, errs);
        return op(OpKind::Grpc(g), errs);
    }
    if let Some(ev) = raw.event {
        postgres::check_event(&ev, path, fixtures, errs);
        return op(OpKind::Event(ev), errs);
    }
    let traced = target.is_some_and(|t| t.kind.trace_sampled().is_some());
    let steps = http::build_steps(
        raw.http,
        raw.steps,
        raw.extract,
        path,
        fixtures,
        traced,
        errs,
    )?;
    op(OpKind::Http(steps), errs)
}
