//! What a capacity run stores: each level's spec, measurements and verdict, the run's
//! record, and the formatting every reader of them shares.

use crate::config::search::SearchConfig;
use crate::config::Slo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// soakd could not offer the level (late starts, dropped iterations): neither
    /// passed nor failed.
    Invalid,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Step,
    Refine,
    Matrix,
}

/// What to run next: the rate of every searched scenario (0: held idle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelSpec {
    pub phase: Phase,
    pub rates: Vec<(String, f64)>,
}

impl LevelSpec {
    /// The rate this level offers `scenario` (0 when it is held idle or not searched).
    pub fn rate_of(&self, scenario: &str) -> f64 {
        self.rates
            .iter()
            .find(|(s, _)| s == scenario)
            .map(|(_, r)| *r)
            .unwrap_or(0.0)
    }

    pub fn label(&self) -> String {
        self.rates
            .iter()
            .filter(|(_, r)| *r > 0.0)
            .map(|(s, r)| format!("{s} {}", crate::units::format_rate(*r)))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// Latency quantiles over a level's window, seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolLevel {
    pub target: String,
    pub max: u32,
    pub in_use_peak: u32,
    pub acquire_p95: Option<f64>,
    pub acquire_timeouts: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BufferLevel {
    pub capacity: u64,
    pub peak: u64,
    pub flush_p95: Option<f64>,
    pub flushes: u64,
    pub flushed_events: u64,
    pub dropped_events: u64,
    pub flush_errors: u64,
    pub e2e_p95: Option<f64>,
}

/// One scenario's measurements over one level's window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioLevel {
    pub scenario: String,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    /// The measured window's length: the achieved rate counts whole arrivals in it, so a
    /// short window at a low rate can miss one at either edge without any generator limit.
    #[serde(default)]
    pub window_s: f64,
    pub completed: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_ratio: f64,
    pub dropped: u64,
    pub max_in_flight: usize,
    /// Operations in flight at once, peak over the window (Little's law: rate × latency).
    pub in_flight_peak: usize,
    pub latency: Quantiles,
    pub lag_p99: Option<f64>,
    pub pool: Option<PoolLevel>,
    pub buffer: Option<BufferLevel>,
    /// HTTP scenarios on the fast path: where an operation's time went over the window,
    /// in seconds per operation by phase (queue, connect, tls, first_byte, body); phases
    /// that never happened are left out.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub phases: BTreeMap<String, f64>,
    /// With `verdicts.prometheus`: how many shards' series the level was judged from —
    /// its counts, errors, drops, in-flight figures and latency are their sums from
    /// Prometheus (the phases, pool and buffer are the leader's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    pub verdict: Option<Verdict>,
    pub reason: String,
    /// The window in blocks (at most `LEVEL_BLOCKS`): each one's latency as log
    /// buckets, completions and errors by kind — what a comparison of two runs tests.
    /// Empty in runs stored before they were kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<crate::shift::Block>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessLevel {
    /// Percent of one CPU over the window.
    pub cpu_percent: Option<f64>,
    /// Peak resident set over the window.
    pub rss_bytes: Option<u64>,
    /// soakd only: p99 of its load runtime's scheduling delay over the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_delay_p99: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub queryid: String,
    pub query: String,
    pub calls: u64,
    pub mean_ms: f64,
    pub rows: u64,
}

/// The database over one level's window (deltas of its cumulative statistics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PgLevel {
    pub transactions_per_second: f64,
    pub cache_hit_ratio: Option<f64>,
    pub dead_tuples: i64,
    pub dead_tuples_delta: i64,
    pub connections_by_state: BTreeMap<String, i64>,
    pub max_connections: Option<i64>,
    pub top_statements: Vec<Statement>,
    /// Why some of the above is missing (e.g. no pg_stat_statements).
    pub notes: Vec<String>,
}

/// Everything measured at one level, with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelResult {
    pub run_id: String,
    /// 0-based position in the run.
    pub seq: u32,
    pub spec: LevelSpec,
    /// Unix seconds when the measurement window opened.
    pub window_start: f64,
    pub window_seconds: f64,
    pub scenarios: Vec<ScenarioLevel>,
    pub soakd: ProcessLevel,
    pub target: Option<ProcessLevel>,
    pub postgres: Option<PgLevel>,
    pub verdict: Verdict,
    pub reason: String,
}

/// A scenario's SLO as stored with a run (plain seconds and ratios).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SloView {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub error_rate: Option<f64>,
    pub e2e_p95: Option<f64>,
}

impl From<&Slo> for SloView {
    fn from(s: &Slo) -> SloView {
        SloView {
            p50: s.p50.map(|d| d.0.as_secs_f64()),
            p95: s.p95.map(|d| d.0.as_secs_f64()),
            p99: s.p99.map(|d| d.0.as_secs_f64()),
            error_rate: s.error_rate.map(|r| r.0),
            e2e_p95: s.e2e_p95.map(|d| d.0.as_secs_f64()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Complete,
}

/// A run's header: what was searched, on what, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub name: String,
    /// Identifies the search plan: a restart resumes only an identical plan.
    pub fingerprint: String,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub status: RunStatus,
    pub soakd_version: String,
    pub machine: String,
    /// CPUs of the machine soakd ran on (CPU % is of one CPU).
    pub cpus: usize,
    pub search: SearchConfig,
    pub slos: BTreeMap<String, SloView>,
    /// Scenario name → its target's name and type, for the report.
    pub targets: BTreeMap<String, String>,
}

/// A run with its levels, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub record: RunRecord,
    pub levels: Vec<LevelResult>,
}
