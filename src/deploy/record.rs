//! What a deploy is and what was said of it: kept in memory (the last `deploys.keep`),
//! in the results store (JSONL or PostgreSQL, as capacity runs are) and served by
//! `/api/v1/deploys`.

use crate::shift::Finding;
use serde::{Deserialize, Serialize};

/// A verdict on a deploy, or on one part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its windows have not filled yet (or, for resources, the soak cannot say yet).
    Pending,
    Regressed,
    Improved,
    Unchanged,
    /// soakd itself explains why a window is unusable.
    Invalid,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Regressed => "regressed",
            State::Improved => "improved",
            State::Unchanged => "unchanged",
            State::Invalid => "invalid",
        }
    }
}

/// How the change was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Metrics,
    Http,
    Promql,
    /// `POST /api/v1/deploys`.
    Api,
    /// The target's process restarted and nothing says its release: a possible deploy.
    Restart,
}

/// The target's resources after the deploy: a leak cannot be estimated from 30
/// minutes, so this part waits for the soak's own verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub state: State,
    /// When it was last revised.
    pub judged_at: Option<f64>,
    pub reasons: Vec<String>,
}

/// The windows compared, unix seconds `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Windows {
    pub before: [f64; 2],
    pub after: [f64; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The whole deploy: regressed if any part is.
    pub state: State,
    /// soakd's latency, errors and drops against the target.
    pub load: State,
    pub resources: Resources,
    pub judged_at: Option<f64>,
    pub windows: Windows,
    /// Every measure compared (changes first).
    pub findings: Vec<Finding>,
    /// Why, in sentences: each change, or why none was called, or why invalid/pending.
    pub reasons: Vec<String>,
    /// Each compared op's blocks as its report charts them (at most [`MAX_SERIES`]
    /// ops, those with a change first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<OpSeries>,
    /// The verdict as first given, when the resources revised it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<State>,
}

/// Ops whose blocks a deploy's record keeps for its report.
pub const MAX_SERIES: usize = 8;

/// One op's blocks either side of the deploy: `[t, p50, p95, p99]` (seconds) each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpSeries {
    pub subject: String,
    pub before: Vec<[f64; 4]>,
    pub after: Vec<[f64; 4]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    /// `<target>-<UTC time>`, e.g. `api-20261207T171502Z`.
    pub id: String,
    pub target: String,
    /// When the new release was first seen (for a debounced read, when it began to
    /// hold), unix seconds.
    pub at: f64,
    /// The release before and after (None when not known).
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub verdict: Verdict,
}

impl Deploy {
    /// Whether it was only inferred from a restart.
    pub fn possible(&self) -> bool {
        self.source == Source::Restart
    }
}

/// A deploy's id: its target and time (to the second, UTC).
pub fn deploy_id(target: &str, at: f64) -> String {
    let (y, mo, d, h, mi, s) = crate::units::utc_parts(at);
    format!("{target}-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Whether `id` has the shape [`deploy_id`] gives (so a path built from it is safe).
pub fn valid_id(id: &str) -> bool {
    id.len() <= 100
        && id.len() > 17
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
