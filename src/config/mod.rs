//! The config file: typed schema, loading, `${ENV}` interpolation and validation.
//!
//! Loading never stops at the first problem. The document is decoded piece by piece
//! (each fixture, target, scenario, op and schedule stage on its own) and then
//! validated as a whole; every error carries its key path and, from [`yaml`], the
//! line and column it points at.

pub mod dashboard;
pub mod interp;
pub mod search;
pub mod yaml;

use crate::schedule::{Schedule, Stage};
use crate::template::{Fixture, JsonTemplate, Template};
use crate::units::{self, Dur, Rate, Ratio};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use yaml::{Pos, PosIndex};

/// A YAML mapping, in document order.
type Mapping = Map<String, Value>;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9400";

// ---------------------------------------------------------------------------
// Errors

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Key path, e.g. `scenarios.api.schedule.stages[2].hold.rate`; empty for the file.
    pub path: String,
    pub message: String,
    pub pos: Option<Pos>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(top level)"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)?;
        if let Some(p) = self.pos {
            write!(f, " (line {}, column {})", p.line, p.col)?;
        }
        Ok(())
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{}",
            self.source_name,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

struct Errs<'a> {
    list: Vec<ConfigError>,
    index: &'a PosIndex,
}

impl Errs<'_> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let pos = self.index.find(&path);
        self.list.push(ConfigError {
            path,
            message: message.into(),
            pos,
        });
    }

    /// Decode `v` into `T`; on failure record the error at the exact inner path.
    fn decode<T: DeserializeOwned>(&mut self, v: &Value, base: &str) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let path = join_path(base, if inner == "." { "" } else { &inner });
                self.push(path, e.into_inner().to_string());
                None
            }
        }
    }
}

fn join_path(base: &str, inner: &str) -> String {
    match (base.is_empty(), inner.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => inner.to_string(),
        (false, false) if inner.starts_with('[') => format!("{base}{inner}"),
        _ => format!("{base}.{inner}"),
    }
}

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

impl TargetKind {
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

/// `targets.<name>` with `type: grpc`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTarget {
    /// `http://host:port` (plaintext HTTP/2) or `https://host:port` (TLS).
    pub endpoint: String,
    /// HTTP/2 connections; calls are spread over them round-robin. One connection
    /// multiplexes up to `max_in_flight` calls (the seed's 500).
    #[serde(default = "default_connections")]
    pub connections: usize,
    #[serde(default)]
    pub connect_timeout: Option<Dur>,
    /// Metadata sent with every call (templates).
    #[serde(default)]
    pub metadata: BTreeMap<String, Template>,
    /// TLS: a CA bundle (PEM) to trust, and the name to verify (default: the host).
    #[serde(default)]
    pub tls: Option<GrpcTls>,
    /// Serialized FileDescriptorSet files (`protoc -o` / `buf build -o`) describing
    /// services to call, relative to the config.
    #[serde(default)]
    pub descriptors: Vec<String>,
    /// .proto files compiled at start-up (no protoc needed).
    #[serde(default)]
    pub protos: Option<ProtoSources>,
    /// Every service this target knows: the seed's event services plus the above.
    #[serde(skip)]
    pub pool: crate::protos::DescPool,
}

fn default_connections() -> usize {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcTls {
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtoSources {
    pub files: Vec<String>,
    #[serde(default)]
    pub include: Vec<String>,
}

/// `targets.<name>` with `type: postgres`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    /// `postgres://user:password@host:port/db?...` (use `${DATABASE_URL}`).
    pub url: String,
    /// Pool size (the seed's service uses 50).
    #[serde(default = "default_pg_max")]
    pub max_connections: u32,
    #[serde(default)]
    pub min_connections: u32,
    /// How long an operation waits for a pooled connection before `pool_timeout`.
    #[serde(default)]
    pub acquire_timeout: Option<Dur>,
    /// Idle connections above `min_connections` close after this.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    /// Connections are replaced after this.
    #[serde(default)]
    pub max_lifetime: Option<Dur>,
    /// Prepared statements cached per connection (0 disables).
    #[serde(default)]
    pub statement_cache: Option<usize>,
    /// Overrides the URL's sslmode: disable, allow, prefer, require, verify-ca, verify-full.
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// Create the seed's `user_goal_progress` table and indexes (sqlx migrations).
    #[serde(default)]
    pub bootstrap: bool,
    /// The statistics collector (postgres_exporter-compatible series).
    #[serde(default)]
    pub stats: PgStatsConfig,
}

fn default_pg_max() -> u32 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgStatsConfig {
    pub enabled: bool,
    /// How often the collector queries the statistics views.
    pub interval: Dur,
    /// Per-query timeout of the collector's own connection.
    pub query_timeout: Dur,
    /// How many statements of pg_stat_statements to export, by total time.
    pub top_statements: usize,
    /// Tables exported from pg_stat_user_tables, by size of activity.
    pub max_tables: usize,
}

impl Default for PgStatsConfig {
    fn default() -> Self {
        PgStatsConfig {
            enabled: true,
            interval: Dur(Duration::from_secs(5)),
            query_timeout: Dur(Duration::from_secs(3)),
            top_statements: 20,
            max_tables: 50,
        }
    }
}

/// Replaces the password of a URL (`scheme://user:pass@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!(
                "{}://{user}:***@{}{}",
                &url[..scheme_end],
                &authority[at + 1..],
                &rest[auth_end..]
            )
        }
        _ => url.to_string(),
    }
}

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
    /// Accept any TLS certificate (staging self-signed certs).
    #[serde(default)]
    pub tls_skip_verify: bool,
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
    pub ops: Vec<Op>,
    pub buffer: Option<BufferConfig>,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub name: String,
    pub weight: u32,
    /// Overrides the scenario's timeout.
    pub timeout: Option<Duration>,
    pub kind: OpKind,
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

/// `grpc:` — a unary call described by the target's descriptors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcOp {
    /// `package.Service/Method` (or `package.Service.Method`).
    pub method: String,
    /// The request as YAML/JSON (protobuf JSON mapping); string leaves are templates.
    #[serde(default = "empty_json")]
    pub message: JsonTemplate,
    /// Metadata for this call (templates), added to the target's.
    #[serde(default)]
    pub metadata: BTreeMap<String, Template>,
}

fn empty_json() -> JsonTemplate {
    JsonTemplate::Object(vec![])
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

/// `sql:` — a statement with `$1, $2, ...` parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlOp {
    pub query: String,
    /// One per `$n`: a template (bound as text) or `{value: template, type: T}` with
    /// T one of text, int4, int8, float8, bool, uuid, jsonb.
    #[serde(default)]
    pub params: Vec<SqlParam>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SqlParam {
    pub value: Template,
    pub ty: SqlType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqlType {
    #[default]
    Text,
    Int4,
    Int8,
    Float8,
    Bool,
    Uuid,
    Jsonb,
}

impl<'de> Deserialize<'de> for SqlParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Typed {
            value: Template,
            #[serde(rename = "type", default)]
            ty: SqlType,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(Template),
            Typed(Typed),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a template string or {value: template, type: text|int4|int8|float8|bool|uuid|jsonb}",
            )
        })? {
            Raw::Plain(value) => Ok(SqlParam {
                value,
                ty: SqlType::Text,
            }),
            Raw::Typed(t) => Ok(SqlParam {
                value: t.value,
                ty: t.ty,
            }),
        }
    }
}

/// `event:` — a stat update for the buffered writer (the seed's statItemUpdated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventOp {
    pub user: Template,
    pub stat_code: Template,
    /// The stat's latest value (an integer).
    pub value: Template,
    #[serde(default)]
    pub namespace: Option<Template>,
}

/// `buffer:` on a scenario with event ops: the seed's buffered writer.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    /// Most entries (distinct user x goal rows) held; beyond it events are dropped.
    pub size_limit: usize,
    pub flush_interval: Duration,
    /// A flush starts early when this many entries wait, and writes at most this many.
    pub max_batch: usize,
    /// Concurrent UPSERT statements one flush is split into (rows partitioned by user).
    pub flush_connections: usize,
    pub namespace: String,
    pub challenges: Arc<crate::challenges::ChallengeIndex>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    #[serde(default)]
    size_limit: Option<usize>,
    #[serde(default)]
    flush_interval: Option<Dur>,
    #[serde(default)]
    max_batch: Option<usize>,
    #[serde(default)]
    flush_connections: Option<usize>,
    #[serde(default)]
    namespace: Option<String>,
    /// Challenge definitions (JSON) relative to the config; default: the seed's.
    #[serde(default)]
    challenges: Option<String>,
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

fn default_method() -> String {
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
    ops: Mapping,
    #[serde(default)]
    buffer: Option<Value>,
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
}

fn default_weight() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    stages: Vec<Value>,
    #[serde(default)]
    repeat: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStage {
    hold: Option<RawHold>,
    ramp: Option<RawRamp>,
    levels: Option<RawLevels>,
    daily: Option<RawDaily>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHold {
    rate: Rate,
    #[serde(default, rename = "for")]
    dur: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRamp {
    from: Rate,
    to: Rate,
    over: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevels {
    rates: Vec<Rate>,
    each: Dur,
    /// How many passes through the list: a number, or `forever`.
    #[serde(default)]
    repeat: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaily {
    /// `"HH:MM": rate` pairs.
    points: BTreeMap<String, Rate>,
    /// Offset of local time from UTC, e.g. `"+02:00"`.
    #[serde(default)]
    utc_offset: Option<String>,
    #[serde(default, rename = "for")]
    dur: Option<Dur>,
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

    let mut fixtures = Vec::new();
    for (k, v) in &top.fixtures {
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

    let mut targets = Vec::new();
    // Targets that exist but failed to decode: scenarios naming them get no second error.
    let mut broken: HashSet<String> = HashSet::new();
    for (k, v) in &top.targets {
        let Some(name) = key_name(k, "targets", errs) else {
            continue;
        };
        let path = format!("targets.{name}");
        let Some(raw) = errs.decode::<RawTarget>(v, &path) else {
            broken.insert(name);
            continue;
        };
        match raw {
            RawTarget::Http(h) => {
                if !(h.base_url.starts_with("http://") || h.base_url.starts_with("https://")) {
                    errs.push(
                        format!("{path}.base_url"),
                        "expected an http:// or https:// URL",
                    );
                }
                if h.max_connections == Some(0) {
                    errs.push(format!("{path}.max_connections"), "must be at least 1");
                }
                check_header_names(&h.headers, &format!("{path}.headers"), errs);
                let roots: Vec<&str> = h.headers.values().flat_map(|t| t.roots()).collect();
                check_roots(
                    &roots,
                    &fixtures,
                    &HashSet::new(),
                    &format!("{path}.headers"),
                    errs,
                );
                targets.push(Target {
                    name,
                    kind: TargetKind::Http(h),
                });
            }
            RawTarget::Postgres(p) => {
                if !(p.url.starts_with("postgres://") || p.url.starts_with("postgresql://")) {
                    errs.push(format!("{path}.url"), "expected a postgres:// URL");
                }
                if p.max_connections == 0 || p.max_connections > 10_000 {
                    errs.push(
                        format!("{path}.max_connections"),
                        "must be between 1 and 10000",
                    );
                }
                if p.min_connections > p.max_connections {
                    errs.push(
                        format!("{path}.min_connections"),
                        "must not exceed max_connections",
                    );
                }
                if p.stats.interval.0 < Duration::from_millis(100) {
                    errs.push(format!("{path}.stats.interval"), "must be at least 100ms");
                }
                if p.stats.top_statements > 1000 || p.stats.max_tables > 10_000 {
                    errs.push(
                        format!("{path}.stats"),
                        "top_statements is capped at 1000 and max_tables at 10000",
                    );
                }
                targets.push(Target {
                    name,
                    kind: TargetKind::Postgres(p),
                });
            }
            RawTarget::Grpc(mut g) => {
                if !(g.endpoint.starts_with("http://") || g.endpoint.starts_with("https://")) {
                    errs.push(
                        format!("{path}.endpoint"),
                        "expected http://host:port (plaintext) or https://host:port (TLS)",
                    );
                }
                if g.connections == 0 || g.connections > 1024 {
                    errs.push(format!("{path}.connections"), "must be between 1 and 1024");
                }
                check_grpc_metadata(&g.metadata, &format!("{path}.metadata"), errs);
                let roots: Vec<&str> = g.metadata.values().flat_map(|t| t.roots()).collect();
                check_roots(
                    &roots,
                    &fixtures,
                    &HashSet::new(),
                    &format!("{path}.metadata"),
                    errs,
                );
                if let Some(ca) = g.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
                    let f = resolve(base_dir, ca);
                    if !f.exists() {
                        errs.push(
                            format!("{path}.tls.ca_file"),
                            format!("{}: no such file", f.display()),
                        );
                    }
                    if let Some(t) = g.tls.as_mut() {
                        t.ca_file = Some(f.display().to_string());
                    }
                }
                for (i, d) in g.descriptors.iter().enumerate() {
                    let f = resolve(base_dir, d);
                    if let Err(e) = g.pool.add_descriptor_set(&f) {
                        errs.push(
                            format!("{path}.descriptors[{i}]"),
                            format!("{}: {e}", f.display()),
                        );
                    }
                }
                if let Some(p) = &g.protos {
                    let includes: Vec<PathBuf> =
                        p.include.iter().map(|d| resolve(base_dir, d)).collect();
                    let includes = if includes.is_empty() {
                        vec![base_dir.to_path_buf()]
                    } else {
                        includes
                    };
                    if let Err(e) = g.pool.add_protos(&p.files, &includes) {
                        errs.push(format!("{path}.protos"), e);
                    }
                }
                targets.push(Target {
                    name,
                    kind: TargetKind::Grpc(g),
                });
            }
        }
    }

    let with_stats: Vec<&str> = targets
        .iter()
        .filter(|t| matches!(&t.kind, TargetKind::Postgres(p) if p.stats.enabled))
        .map(|t| t.name.as_str())
        .collect();
    if with_stats.len() > 1 {
        errs.push(
            format!("targets.{}.stats", with_stats[1]),
            format!(
                "only one postgres target may export statistics (pg_* series would collide); set `stats: {{enabled: false}}` on all but one of: {}",
                with_stats.join(", ")
            ),
        );
    }

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
    Config {
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

fn check_grpc_metadata(m: &BTreeMap<String, Template>, path: &str, errs: &mut Errs) {
    for k in m.keys() {
        let ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            && !k.ends_with("-bin");
        if !ok {
            errs.push(
                format!("{path}.{k}"),
                "metadata keys are lowercase ASCII letters, digits, '-', '_' or '.' (binary keys are not supported)",
            );
        }
    }
}

fn check_header_names(h: &BTreeMap<String, Template>, path: &str, errs: &mut Errs) {
    for k in h.keys() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            errs.push(format!("{path}.{k}"), "not a valid HTTP header name");
        }
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
        fixtures,
        base_dir,
    } = *known;
    let raw = errs.decode::<RawScenario>(v, path)?;
    let target = targets.iter().find(|t| t.name == raw.target);
    if target.is_none() && !broken_targets.contains(&raw.target) {
        let known: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        errs.push(
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
        if let Some(op) = build_op(op_name, v, &op_path, target, fixtures, errs) {
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
    Some(Scenario {
        name,
        target: raw.target,
        max_in_flight: raw.max_in_flight,
        timeout,
        arrival: raw.arrival,
        schedule: schedule?,
        slo: raw.slo,
        ops,
        buffer,
    })
}

fn build_buffer(v: &Value, path: &str, base_dir: &Path, errs: &mut Errs) -> Option<BufferConfig> {
    let v = if v.is_null() {
        Value::Object(Map::new())
    } else {
        v.clone()
    };
    let raw = errs.decode::<RawBuffer>(&v, path)?;
    let size_limit = raw.size_limit.unwrap_or(100_000);
    let max_batch = raw.max_batch.unwrap_or(10_000);
    let flush_interval = raw
        .flush_interval
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(1));
    if size_limit == 0 || size_limit > 100_000_000 {
        errs.push(
            format!("{path}.size_limit"),
            "must be between 1 and 100000000",
        );
    }
    if max_batch == 0 || max_batch > 1_000_000 {
        errs.push(format!("{path}.max_batch"), "must be between 1 and 1000000");
    }
    let flush_connections = raw.flush_connections.unwrap_or(1);
    if flush_connections == 0 || flush_connections > 64 {
        errs.push(
            format!("{path}.flush_connections"),
            "must be between 1 and 64",
        );
    }
    if flush_interval < Duration::from_millis(10) {
        errs.push(format!("{path}.flush_interval"), "must be at least 10ms");
    }
    let index = match &raw.challenges {
        None => crate::challenges::ChallengeIndex::embedded().map_err(|e| e.to_string()),
        Some(f) => {
            let file = resolve(base_dir, f);
            std::fs::read_to_string(&file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|t| {
                    crate::challenges::ChallengeIndex::parse(&t)
                        .map_err(|e| format!("{}: {e}", file.display()))
                })
        }
    };
    let challenges = match index {
        Ok(i) => Arc::new(i),
        Err(e) => {
            errs.push(format!("{path}.challenges"), e);
            return None;
        }
    };
    Some(BufferConfig {
        size_limit,
        flush_interval,
        max_batch,
        flush_connections,
        namespace: raw.namespace.unwrap_or_else(|| "test".to_string()),
        challenges,
    })
}

fn build_op(
    name: String,
    v: &Value,
    path: &str,
    target: Option<&Target>,
    fixtures: &[Fixture],
    errs: &mut Errs,
) -> Option<Op> {
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
    if let Some(sql) = raw.sql {
        let sp = format!("{path}.sql");
        if sql.query.trim().is_empty() {
            errs.push(format!("{sp}.query"), "must not be empty");
        }
        let highest = highest_placeholder(&sql.query);
        if highest != sql.params.len() {
            errs.push(
                format!("{sp}.params"),
                format!("the query uses ${highest} as its highest placeholder, but {} param(s) are given", sql.params.len()),
            );
        }
        let roots: Vec<&str> = sql.params.iter().flat_map(|p| p.value.roots()).collect();
        check_roots(&roots, fixtures, &HashSet::new(), &sp, errs);
        return Some(Op {
            name,
            weight: raw.weight,
            timeout: raw.timeout.map(|d| d.0),
            kind: OpKind::Sql(sql),
        });
    }
    if let Some(g) = raw.grpc {
        let gp = format!("{path}.grpc");
        if let Some(Target {
            kind: TargetKind::Grpc(t),
            ..
        }) = target
        {
            match t.pool.method(&g.method) {
                Ok(m) => {
                    for (field_path, msg) in crate::protos::fit::check(&m.input(), &g.message) {
                        errs.push(join_path(&format!("{gp}.message"), &field_path), msg);
                    }
                }
                Err(e) => errs.push(format!("{gp}.method"), e),
            }
        }
        check_grpc_metadata(&g.metadata, &format!("{gp}.metadata"), errs);
        let mut roots: Vec<&str> = g.message.roots();
        roots.extend(g.metadata.values().flat_map(|t| t.roots()));
        check_roots(&roots, fixtures, &HashSet::new(), &gp, errs);
        return Some(Op {
            name,
            weight: raw.weight,
            timeout: raw.timeout.map(|d| d.0),
            kind: OpKind::Grpc(g),
        });
    }
    if let Some(ev) = raw.event {
        let ep = format!("{path}.event");
        let mut roots: Vec<&str> = ev.user.roots().collect();
        roots.extend(ev.stat_code.roots());
        roots.extend(ev.value.roots());
        roots.extend(ev.namespace.iter().flat_map(|t| t.roots()));
        check_roots(&roots, fixtures, &HashSet::new(), &ep, errs);
        return Some(Op {
            name,
            weight: raw.weight,
            timeout: raw.timeout.map(|d| d.0),
            kind: OpKind::Event(ev),
        });
    }
    let steps: Vec<HttpStep> = match (raw.http, raw.steps) {
        (Some(request), None) => vec![HttpStep {
            request,
            extract: raw.extract,
        }],
        (None, Some(steps)) => {
            if !raw.extract.is_empty() {
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
    let mut bound: HashSet<String> = HashSet::new();
    let single = steps.len() == 1;
    for (i, st) in steps.iter().enumerate() {
        let sp = if single {
            format!("{path}.http")
        } else {
            format!("{path}.steps[{i}].http")
        };
        let r = &st.request;
        if reqwest::Method::from_bytes(r.method.as_bytes()).is_err() {
            errs.push(format!("{sp}.method"), "not a valid HTTP method");
        }
        if !r.path.source().starts_with('/') {
            errs.push(format!("{sp}.path"), "must start with '/'");
        }
        if r.body.is_some() && r.json.is_some() {
            errs.push(&sp, "give either `body` or `json`, not both");
        }
        check_header_names(&r.headers, &format!("{sp}.headers"), errs);
        let mut roots: Vec<&str> = r.path.roots().collect();
        roots.extend(r.headers.values().flat_map(|t| t.roots()));
        roots.extend(r.body.iter().flat_map(|t| t.roots()));
        if let Some(j) = &r.json {
            roots.extend(j.roots());
        }
        check_roots(&roots, fixtures, &bound, &sp, errs);
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
    Some(Op {
        name,
        weight: raw.weight,
        timeout: raw.timeout.map(|d| d.0),
        kind: OpKind::Http(steps),
    })
}

/// The highest `$n` placeholder in a query (0 when none), skipping quoted text.
fn highest_placeholder(q: &str) -> usize {
    let b = q.as_bytes();
    let (mut i, mut max, mut quote) = (0, 0, None::<u8>);
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(qc) if c == qc => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'$' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j > start {
                    max = max.max(q[start..j].parse().unwrap_or(0));
                    i = j;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    max
}

fn build_schedule(v: &Value, path: &str, errs: &mut Errs) -> Option<Schedule> {
    // Either `{stages: [...], repeat}` or a single stage written directly.
    let is_full = v.as_object().is_some_and(|m| m.contains_key("stages"));
    let (stage_values, repeat) = if is_full {
        let raw = errs.decode::<RawSchedule>(v, path)?;
        (raw.stages, raw.repeat)
    } else {
        (vec![v.clone()], false)
    };
    let stage_path = |i: usize| {
        if is_full {
            format!("{path}.stages[{i}]")
        } else {
            path.to_string()
        }
    };
    if stage_values.is_empty() {
        errs.push(format!("{path}.stages"), "needs at least one stage");
        return None;
    }
    let before = errs.list.len();
    let mut stages = Vec::new();
    for (i, sv) in stage_values.iter().enumerate() {
        let sp = stage_path(i);
        let Some(raw) = errs.decode::<RawStage>(sv, &sp) else {
            continue;
        };
        let n = raw.hold.is_some() as u8
            + raw.ramp.is_some() as u8
            + raw.levels.is_some() as u8
            + raw.daily.is_some() as u8;
        if n != 1 {
            errs.push(
                &sp,
                "a stage is exactly one of `hold`, `ramp`, `levels` or `daily`",
            );
            continue;
        }
        let stage = if let Some(h) = raw.hold {
            Stage::Hold {
                rate: h.rate.0,
                dur: h.dur.map(|d| d.0),
            }
        } else if let Some(r) = raw.ramp {
            if r.over.0.is_zero() {
                errs.push(format!("{sp}.ramp.over"), "must be above 0");
            }
            Stage::Ramp {
                from: r.from.0,
                to: r.to.0,
                over: r.over.0,
            }
        } else if let Some(l) = raw.levels {
            if l.rates.is_empty() {
                errs.push(format!("{sp}.levels.rates"), "needs at least one rate");
            }
            if l.each.0.is_zero() {
                errs.push(format!("{sp}.levels.each"), "must be above 0");
            }
            let times = match &l.repeat {
                None => Some(1),
                Some(Value::String(s)) if s == "forever" => None,
                Some(Value::Bool(true)) => None,
                Some(Value::Number(n))
                    if n.as_u64().is_some_and(|n| (1..=1_000_000).contains(&n)) =>
                {
                    n.as_u64().map(|n| n as u32)
                }
                Some(_) => {
                    errs.push(
                        format!("{sp}.levels.repeat"),
                        "expected a number of passes (1 or more) or `forever`",
                    );
                    Some(1)
                }
            };
            Stage::Levels {
                rates: l.rates.iter().map(|r| r.0).collect(),
                each: l.each.0,
                times,
            }
        } else if let Some(d) = raw.daily {
            let offset = match d.utc_offset.as_deref().map(parse_offset) {
                None => 0.0,
                Some(Some(o)) => o,
                Some(None) => {
                    errs.push(
                        format!("{sp}.daily.utc_offset"),
                        "expected an offset like \"+02:00\"",
                    );
                    0.0
                }
            };
            let mut points = Vec::new();
            for (k, r) in &d.points {
                match parse_hhmm(k) {
                    // Store in UTC seconds so that the engine passes UTC time of day.
                    Some(t) => points.push(((t - offset).rem_euclid(86_400.0), r.0)),
                    None => errs.push(
                        format!("{sp}.daily.points.{k}"),
                        "expected a time of day like \"09:30\"",
                    ),
                }
            }
            if points.is_empty() {
                errs.push(format!("{sp}.daily.points"), "needs at least one point");
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Stage::Daily {
                points,
                dur: d.dur.map(|d| d.0),
            }
        } else {
            continue;
        };
        stages.push((sp, stage));
    }
    let last = stages.len().saturating_sub(1);
    for (i, (sp, s)) in stages.iter().enumerate() {
        if s.duration().is_none() && i != last {
            errs.push(
                sp,
                "this stage never ends, so the stages after it would never run (give it `for`, or move it last)",
            );
        }
        if repeat && s.duration().is_none() {
            errs.push(
                sp,
                "`repeat: true` needs every stage to end (give it `for`)",
            );
        }
    }
    if errs.list.len() > before {
        return None;
    }
    Some(Schedule {
        stages: stages.into_iter().map(|(_, s)| s).collect(),
        repeat,
    })
}

fn parse_hhmm(s: &str) -> Option<f64> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h * 3600 + m * 60) as f64)
}

fn parse_offset(s: &str) -> Option<f64> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    parse_hhmm(rest).map(|v| sign * v)
}

impl Config {
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// What `check-config` prints: each scenario, its target and its schedule.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("listen {}\n", self.listen));
        if self.scenarios.is_empty() {
            out.push_str("no scenarios\n");
        }
        for s in &self.scenarios {
            let target = self
                .target(&s.target)
                .map(|t| format!("{} {}", t.kind.type_name(), t.kind.display_endpoint()))
                .unwrap_or_default();
            out.push_str(&format!(
                "\nscenario {} -> target {} ({target})\n",
                s.name, s.target
            ));
            let total: u32 = s.ops.iter().map(|o| o.weight).sum();
            let mix: Vec<String> = s
                .ops
                .iter()
                .map(|o| {
                    let pct = if total > 0 {
                        100.0 * o.weight as f64 / total as f64
                    } else {
                        0.0
                    };
                    format!("{} {pct:.0}%", o.name)
                })
                .collect();
            out.push_str(&format!("  ops: {}\n", mix.join(", ")));
            out.push_str(&format!(
                "  max_in_flight {}, timeout {}, arrival {}\n",
                s.max_in_flight,
                units::format_duration(s.timeout),
                format!("{:?}", s.arrival).to_lowercase()
            ));
            let mut slo = Vec::new();
            for (n, v) in [
                ("p50", s.slo.p50),
                ("p95", s.slo.p95),
                ("p99", s.slo.p99),
                ("event e2e p95", s.slo.e2e_p95),
            ] {
                if let Some(d) = v {
                    slo.push(format!("{n} < {d}"));
                }
            }
            if let Some(r) = s.slo.error_rate {
                slo.push(format!("error rate < {}%", r.0 * 100.0));
            }
            if !slo.is_empty() {
                out.push_str(&format!("  slo: {}\n", slo.join(", ")));
            }
            out.push_str("  schedule:\n");
            for line in s.schedule.timeline() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        if let Some(search) = &self.search {
            out.push_str(&search.describe());
        }
        out
    }
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
        assert_eq!(highest_placeholder("SELECT $1, $12, '$99', \"$7\""), 12);
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
