//! `GET /api/v1/soak`'s answer: every observed target, its sources' errors and
//! restarts, each series' latest value, verdict and change points, and soakd's own series
//! of each op in the same form.

use crate::soak::store::{SeriesSoak, Soak, TargetSoak};
use serde::Serialize;

#[derive(Serialize)]
pub struct SoakPayload {
    pub window_seconds: f64,
    pub warmup_seconds: f64,
    pub resolution_seconds: f64,
    pub targets: Vec<TargetSoak>,
    /// soakd's own series of each op, judged as the targets' are.
    pub ops: Vec<OpSoak>,
}

#[derive(Serialize)]
pub struct OpSoak {
    pub scenario: String,
    pub op: String,
    pub series: Vec<SeriesSoak>,
}

/// The answer at `now` (Unix seconds).
pub fn payload(s: &Soak, now: f64) -> SoakPayload {
    let cfg = s.targets.config();
    let ops = s
        .ops
        .snapshot(now)
        .into_iter()
        .filter_map(|t| {
            let (scenario, op) = t.target.split_once('/')?;
            Some(OpSoak {
                scenario: scenario.to_string(),
                op: op.to_string(),
                series: t.series,
            })
        })
        .collect();
    SoakPayload {
        window_seconds: cfg.window.as_secs_f64(),
        warmup_seconds: cfg.warmup.as_secs_f64(),
        resolution_seconds: cfg.resolution.as_secs_f64(),
        targets: s.targets.snapshot(now),
        ops,
    }
}
