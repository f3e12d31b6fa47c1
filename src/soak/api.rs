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

/// Points per series at most when asked for (`?points=N`).
pub const MAX_CHART_POINTS: usize = 500;

/// The answer at `now` (Unix seconds), with each series' judged points averaged down to
/// at most `chart_points` (0: none; capped at [`MAX_CHART_POINTS`]).
pub fn payload(s: &Soak, now: f64, chart_points: usize) -> SoakPayload {
    let chart_points = chart_points.min(MAX_CHART_POINTS);
    let cfg = s.targets.config();
    let ops = s
        .ops
        .snapshot(now, chart_points)
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
        targets: s.targets.snapshot(now, chart_points),
        ops,
    }
}
