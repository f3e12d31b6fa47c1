//! The config file: typed schema, loading, `${ENV}` interpolation and validation.
//!
//! Loading never stops at the first problem. The document is decoded piece by piece
//! (each fixture, target, scenario, op and schedule stage on its own) and then
//! validated as a whole; every error carries its key path and, from [`yaml`], the
//! line and column it points at.
//!
//! Like `drivers/`, the schema is split by what it configures, each component's types
//! next to their validation: `http.rs`, `postgres.rs` (SQL, events, the buffered writer,
//! statistics), `grpc.rs`, `stages.rs` (schedules), `search.rs`, `dashboard.rs`. This file
//! holds the top of the model (config, targets, scenarios, ops), loading, and `build`,
//! which decodes each piece and hands it to its module; `errors.rs` is the accumulator,
//! `yaml.rs` the parser and position index, `interp.rs` `${ENV}`, `describe.rs` what
//! `check-config` prints.

pub mod dashboard;
mod describe;
mod errors;
mod grpc;
mod http;
pub mod interp;
mod postgres;
pub mod search;
mod stages;
pub mod tls;
pub mod verdicts;
pub mod visibility;
pub mod yaml;

pub use errors::{ConfigError, ConfigErrors};
pub use grpc::{GrpcOp, GrpcTarget, ProtoSources};
pub use http::{
    Extract, HttpRequest, HttpStep, HttpTarget, HttpVersion, OnEmpty, Pick, StatusMatch,
};
pub use postgres::{
    redact_url, BufferConfig, EventOp, PgStatsConfig, PostgresTarget, SqlOp, SqlParam, SqlType,
    SslMode,
};

use errors::{join_path, Errs};
use postgres::build_buffer;
use stages::build_schedule;

use crate::schedule::Schedule;
use crate::template::Fixture;
use crate::units::{Dur, Ratio};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use yaml::PosIndex;

/// A YAML mapping, in document order.
type Mapping = Map<String, Value>;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9400";

// ---------------------------------------------------------------------------
// The validated config

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address of the admin server (`/metrics`, `/api/v1/...`).
    pub listen: SocketAddr,
    /// Bearer token required by mutating control endpoints.
    pub control_token: Option<Secret>,
    /// How long SIGTERM waits for in-flight operations.
    pub shutdown_grace: Duration,
    /// Length of the rolling window behind quantile gauges and the status API.
    pub quantile_window: Duration,
    pub fixtures: Vec<Fixture>,
    pub targets: Vec<Target>,
    pub scenarios: Vec<Scenario>,
    /// A capacity search driving the named scenarios, if configured.
    pub search: Option<search::SearchConfig>,
    /// Where capacity-search results are kept.
    pub results: search::ResultsConfig,
    /// The history behind the page at `/` and `/api/v1/history`.
    pub dashboard: dashboard::DashboardConfig,
    /// One verdict across shards: SLOs and the search judged from Prometheus.
    pub verdicts: Option<verdicts::VerdictsConfig>,
}

/// A string that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub kind: TargetKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    Http(HttpTarget),
    Postgres(PostgresTarget),
    Grpc(GrpcTarget),
}

/// W3C trace context on a target's requests (`trace: off | on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TraceMode {
    #[default]
    Off,
    On,
}

impl TargetKind {
    /// With `trace: on`, the fraction of traces marked sampled; None when off.
    pub fn trace_sampled(&self) -> Option<f64> {
        let (mode, sampled) = match self {
            TargetKind::Http(h) => (h.trace, h.trace_sampled),
            TargetKind::Grpc(g) => (g.trace, g.trace_sampled),
            TargetKind::Postgres(_) => return None,
        };
        (mode == TraceMode::On).then(|| sampled.map_or(1.0, |r| r.0))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            TargetKind::Http(_) => "http",
            TargetKind::Postgres(_) => "postgres",
            TargetKind::Grpc(_) => "grpc",
        }
    }

    /// Where it points, with any password removed.
    pub fn display_endpoint(&self) -> String {
        match self {
            TargetKind::Http(h) => redact_url(&h.base_url),
            TargetKind::Postgres(p) => redact_url(&p.url),
            TargetKind::Grpc(g) => redact_url(&g.endpoint),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced intended start times.
    #[default]
    Uniform,
    /// Exponentially distributed gaps (a Poisson process) with the same mean rate.
    Poisson,
    /// A closed loop: `max_in_flight` workers run iterations back to back (pgbench's
    /// and wrk's model); the schedule's rate only switches them on (> 0) or off.
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub target: String,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub arrival: Arrival,
    pub schedule: Schedule,
    pub slo: Slo,
    /// What to do when the rolling SLO stays broken (`guard:`).
    pub guard: Option<Guard>,
    pub ops: Vec<Op>,
    pub buffer: Option<BufferConfig>,
    /// At most this many visibility probes (write to visible) at once; an arrival of a
    /// visibility op that finds them all taken is dropped.
    pub max_pending: usize,
}

/// A scenario's guardrail: when its rolling SLO has been broken for `after`, act; with
/// `recover_after`, undo one action each time the SLO has held that long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// `for`: how long the SLO must stay broken before each action.
    pub after: Duration,
    pub action: GuardAction,
    pub recover_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GuardAction {
    /// Stop the scenario's arrivals.
    Pause,
    /// Multiply the rate by `keep` (1 − `step_down`) per action, never below `floor`
    /// (operations per second).
    StepDown { keep: f64, floor: f64 },
}

impl Guard {
    pub fn describe(&self) -> String {
        let act = match self.action {
            GuardAction::Pause => "pause".to_string(),
            GuardAction::StepDown { keep, floor } => format!(
                "step the rate down by {:.0}% per action, not below {}",
                (1.0 - keep) * 100.0,
                crate::units::format_rate(floor)
            ),
        };
        let rec = match self.recover_after {
            Some(d) => format!(
                "; climb back a step after {} within the SLO",
                crate::units::format_duration(d)
            ),
            None => "; stays until reverted (POST /api/v1/scenarios/NAME/guard/revert)".into(),
        };
        format!(
            "guard: after {} out of the SLO, {act}{rec}",
            crate::units::format_duration(self.after)
        )
    }
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

/// What "at the limit" means for a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    pub p50: Option<Dur>,
    pub p95: Option<Dur>,
    pub p99: Option<Dur>,
    pub error_rate: Option<Ratio>,
    /// Buffered writers: accept-to-commit p95 (the seed's event E2E latency).
    pub e2e_p95: Option<Dur>,
    /// How far back the rolling evaluation looks (default [`Slo::DEFAULT_WINDOW`]).
    pub window: Option<Dur>,
}

impl Slo {
    /// The rolling evaluation's window when `slo.window` is not set.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
    /// Bounds of `slo.window`.
    pub const WINDOW_RANGE: (Duration, Duration) =
        (Duration::from_secs(10), Duration::from_secs(86_400));

    /// Whether it names any objective.
    pub fn is_set(&self) -> bool {
        self.p50.is_some()
            || self.p95.is_some()
            || self.p99.is_some()
            || self.error_rate.is_some()
            || self.e2e_p95.is_some()
    }

    /// The rolling evaluation's window.
    pub fn window(&self) -> Duration {
        self.window.map_or(Self::DEFAULT_WINDOW, |d| d.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub name: String,
    pub weight: u32,
    /// Overrides the scenario's timeout.
    pub timeout: Option<Duration>,
    pub kind: OpKind,
    /// After the op succeeds, poll until what it wrote is visible (`visibility:`).
    pub visibility: Option<visibility::Visibility>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OpKind {
    /// One or more HTTP requests in sequence; later steps can use what earlier ones
    /// extracted.
    Http(Vec<HttpStep>),
    /// One SQL statement on a postgres target.
    Sql(SqlOp),
    /// One event into the scenario's buffered writer.
    Event(EventOp),
    /// One unary gRPC call.
    Grpc(GrpcOp),
}

impl OpKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            OpKind::Http(_) => "http",
            OpKind::Sql(_) => "sql",
            OpKind::Event(_) => "event",
            OpKind::Grpc(_) => "grpc",
        }
    }
}

// ---------------------------------------------------------------------------
// Raw shapes decoded piece by piece

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTop {
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

// ---------------------------------------------------------------------------
// Loading

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
    let cfg = build(top, base_dir, &mut errs);
    if errs.list.is_empty() {
        Ok(cfg)
    } else {
        Err(fail(errs))
    }
}

fn key_name(k: &str, path: &str, errs: &mut Errs) -> Option<String> {
    if valid_name(k) {
        return Some(k.to_string());
    }
    errs.push(
        path,
        format!("names must be 1-64 characters of letters, digits, '_' or '-', got {k}"),
    );
    None
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn build(top: RawTop, base_dir: &Path, errs: &mut Errs) -> Config {
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
    let (targets, broken) = build_targets(&top.targets, &fixtures, base_dir, errs);
    postgres::check_one_stats_target(&targets, errs);

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
                broken_targets: &broken,
                fixtures: &fixtures,
                base_dir,
            },
            errs,
        ) {
            scenarios.push(s);
        }
    }

    let search = top
        .search
        .as_ref()
        .and_then(|v| search::build_search(v, &scenarios, &targets, errs));
    let results = search::build_results(top.results.as_ref(), base_dir, errs);
    let dashboard = dashboard::build_dashboard(top.dashboard.as_ref(), errs);
    let verdicts = verdicts::build_verdicts(top.verdicts.as_ref(), search.as_ref(), errs);
    Config {
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
/// failed to decode (scenarios naming them get no second error).
fn build_targets(
    raw: &Mapping,
    fixtures: &[Fixture],
    base_dir: &Path,
    errs: &mut Errs,
) -> (Vec<Target>, HashSet<String>) {
    let mut targets = Vec::new();
    // Targets that exist but failed to decode: scenarios naming them get no second error.
    let mut broken: HashSet<String> = HashSet::new();
    for (k, v) in raw {
        let Some(name) = key_name(k, "targets", errs) else {
            continue;
        };
        let path = format!("targets.{name}");
        let Some(raw) = errs.decode::<RawTarget>(v, &path) else {
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
    (targets, broken)
}

fn resolve(base: &Path, file: &str) -> PathBuf {
    let p = PathBuf::from(file);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
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

/// The template names a target itself provides: `trace` when it has `trace: on`.
fn target_names(mode: TraceMode) -> HashSet<String> {
    match mode {
        TraceMode::On => HashSet::from(["trace".to_string()]),
        TraceMode::Off => HashSet::new(),
    }
}

/// `trace_sampled` only means something with `trace: on`.
fn check_trace(mode: TraceMode, sampled: Option<Ratio>, path: &str, errs: &mut Errs) {
    if mode == TraceMode::Off && sampled.is_some() {
        errs.push(
            format!("{path}.trace_sampled"),
            "has no effect without `trace: on`",
        );
    }
}

/// Every template root must be a fixture or a name bound by an earlier step.
fn check_roots(
    roots: &[&str],
    fixtures: &[Fixture],
    bound: &HashSet<String>,
    path: &str,
    errs: &mut Errs,
) {
    for r in roots {
        if !fixtures.iter().any(|f| f.name == *r) && !bound.contains(*r) {
            if *r == "trace" {
                errs.push(
                    path,
                    "template uses \"trace\", which needs `trace: on` on the op's target",
                );
                continue;
            }
            let mut known: Vec<&str> = fixtures.iter().map(|f| f.name.as_str()).collect();
            known.extend(bound.iter().map(String::as_str));
            known.sort();
            errs.push(
                path,
                format!(
                    "template uses {r:?}, which is neither a fixture nor an extracted value (known: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            );
        }
    }
}

/// "no target named X (known: ...)".
fn no_such_target(name: &str, targets: &[Target]) -> String {
    let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    format!(
        "no target named {name:?} (known: {})",
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    )
}

/// What a scenario is checked against: everything decoded before it.
struct Known<'a> {
    targets: &'a [Target],
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
        broken_targets,
        fixtures: _,
        base_dir,
    } = *known;
    let raw = errs.decode::<RawScenario>(v, path)?;
    let target = targets.iter().find(|t| t.name == raw.target);
    if target.is_none() && !broken_targets.contains(&raw.target) {
        errs.push(
            format!("{path}.target"),
            no_such_target(&raw.target, targets),
        );
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
                known.targets,
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
        grpc::check_op(&g, target, path, fixtures, errs);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
