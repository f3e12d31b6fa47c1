//! The validated config: what the rest of soakd reads. Each section's own types live in
//! its file (`http.rs`, `postgres.rs`, …); this is the top of the model that holds them.

use super::check::{Kind, Secret, TraceMode};
use super::dashboard::DashboardConfig;
use super::deploys::DeploysConfig;
use super::grpc::{GrpcOp, GrpcTarget};
use super::http::{HttpStep, HttpTarget};
use super::observe::Observe;
use super::postgres::{redact_url, BufferConfig, EventOp, PostgresTarget, SqlOp};
use super::search::{ResultsConfig, SearchConfig};
use super::soak::SoakConfig;
use super::verdicts::VerdictsConfig;
use super::visibility::Visibility;
use crate::schedule::Schedule;
use crate::template::Fixture;
use crate::units::{Dur, Ratio};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9400";

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// What the file says that is accepted but should change (a deprecated key), each
    /// with its path and line; shown by `check-config` and logged at start and reload.
    pub warnings: Vec<String>,
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
    pub search: Option<SearchConfig>,
    /// Where capacity-search results are kept.
    pub results: ResultsConfig,
    /// The history behind the page at `/` and `/api/v1/history`.
    pub dashboard: DashboardConfig,
    /// One verdict across shards: SLOs and the search judged from Prometheus.
    pub verdicts: Option<VerdictsConfig>,
    /// What is watched of each target (`targets.NAME.observe`), in the file's order.
    pub observe: Vec<Observe>,
    /// How the soak is judged.
    pub soak: SoakConfig,
    /// How each deploy of a target is judged.
    pub deploys: DeploysConfig,
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
        self.kind().type_name()
    }

    /// The kind without its settings.
    pub fn kind(&self) -> Kind {
        match self {
            TargetKind::Http(_) => Kind::Http,
            TargetKind::Postgres(_) => Kind::Postgres,
            TargetKind::Grpc(_) => Kind::Grpc,
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
    pub visibility: Option<Visibility>,
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
