//! The capacity report's charts, on the chart engine ([`crate::chart`]): latency, errors
//! and pool connections against offered load, and a combined search's frontier.

use super::cells::{int, ms, pct};
use crate::capacity::findings::Levels;
use crate::chart::{render_chart, Chart, Series};

/// p50, p95 and p99 against offered load (log y), with the p95 SLO.
pub(super) fn latency(
    name: &str,
    levels: &Levels,
    slo_p95: Option<f64>,
    knee: Option<f64>,
) -> String {
    let pick = |f: fn(&crate::capacity::record::ScenarioLevel) -> Option<f64>| -> Vec<(f64, f64)> {
        levels
            .iter()
            .filter_map(|(_, s)| f(s).map(|v| (s.offered_rate, v)))
            .collect()
    };
    let series = [
        ("p50", "#2ca02c", pick(|s| s.latency.p50)),
        ("p95", "#1f77b4", pick(|s| s.latency.p95)),
        ("p99", "#9467bd", pick(|s| s.latency.p99)),
    ]
    .into_iter()
    .map(|(name, color, points)| Series {
        name: name.into(),
        color,
        points,
        dashed: false,
        markers: true,
    })
    .collect();
    latency_chart(
        format!("{name}: latency vs offered load"),
        series,
        slo_p95,
        knee,
    )
}

/// Two runs' p95 and p99 against offered load on one chart (log y): run A dashed, run B
/// solid, with the p95 SLO.
pub(super) fn latency_overlay(
    name: &str,
    a: (&str, &Levels),
    b: (&str, &Levels),
    slo_p95: Option<f64>,
) -> String {
    let pick = |levels: &Levels, f: fn(&crate::capacity::record::ScenarioLevel) -> Option<f64>| {
        levels
            .iter()
            .filter_map(|(_, s)| f(s).map(|v| (s.offered_rate, v)))
            .collect::<Vec<_>>()
    };
    let mut series = Vec::new();
    for ((label, levels), dashed) in [(a, true), (b, false)] {
        series.push(Series {
            name: format!("p95 {label}"),
            color: "#1f77b4",
            points: pick(levels, |s| s.latency.p95),
            dashed,
            markers: true,
        });
        series.push(Series {
            name: format!("p99 {label}"),
            color: "#9467bd",
            points: pick(levels, |s| s.latency.p99),
            dashed,
            markers: true,
        });
    }
    latency_chart(
        format!("{name}: latency vs offered load, A dashed, B solid"),
        series,
        slo_p95,
        None,
    )
}

/// A latency-vs-load chart (log y) with the p95 SLO line.
fn latency_chart(
    title: String,
    series: Vec<Series>,
    slo_p95: Option<f64>,
    knee: Option<f64>,
) -> String {
    render_chart(&Chart {
        title,
        x_label: "offered load (/s)",
        y_label: "latency",
        y_log: true,
        series,
        hlines: slo_p95
            .map(|v| (format!("SLO p95 {}", ms(Some(v))), v))
            .into_iter()
            .collect(),
        knee,
        y_fmt: &|v| ms(Some(v)),
        ..Chart::plain()
    })
}

/// The error ratio (in %) against offered load, with the error-rate SLO.
pub(super) fn errors(name: &str, levels: &Levels, slo: Option<f64>, knee: Option<f64>) -> String {
    let points = levels
        .iter()
        .map(|(_, s)| (s.offered_rate, s.error_ratio * 100.0))
        .collect();
    render_chart(&Chart {
        title: format!("{name}: error ratio vs offered load"),
        x_label: "offered load (/s)",
        y_label: "errors (% of operations)",
        y_log: false,
        series: vec![Series {
            name: "error ratio".into(),
            color: "#d62728",
            points,
            dashed: false,
            markers: true,
        }],
        hlines: slo
            .map(|v| (format!("SLO {}", pct(v)), v * 100.0))
            .into_iter()
            .collect(),
        knee,
        y_fmt: &|v| pct(v / 100.0),
        ..Chart::plain()
    })
}

/// Pool connections in use (peak) against the pool's maximum, per level.
pub(super) fn pool(name: &str, levels: &Levels, knee: Option<f64>) -> String {
    let inuse = levels
        .iter()
        .filter_map(|(_, s)| {
            s.pool
                .as_ref()
                .map(|p| (s.offered_rate, p.in_use_peak as f64))
        })
        .collect();
    let max = levels
        .iter()
        .filter_map(|(_, s)| s.pool.as_ref().map(|p| (s.offered_rate, p.max as f64)))
        .collect();
    render_chart(&Chart {
        title: format!("{name}: pool connections in use vs max"),
        x_label: "offered load (/s)",
        y_label: "connections",
        y_log: false,
        series: vec![
            Series {
                name: "in use (peak)".into(),
                color: "#1f77b4",
                points: inuse,
                dashed: false,
                markers: true,
            },
            Series {
                name: "max".into(),
                color: "#333333",
                points: max,
                dashed: true,
                markers: true,
            },
        ],
        hlines: vec![],
        knee,
        y_fmt: &int,
        ..Chart::plain()
    })
}

/// A combined search's frontier: for each rate of the first scenario, the highest
/// passing rate of the second.
pub(super) fn frontier(a: &str, b: &str, points: Vec<(f64, f64)>, knee: Option<f64>) -> String {
    let x_label = format!("{a} rate (/s)");
    render_chart(&Chart {
        title: format!("combined capacity: highest {b} rate per {a} rate"),
        x_label: &x_label,
        y_label: "highest passing rate (/s)",
        y_log: false,
        series: vec![Series {
            name: format!("{b} within SLO"),
            color: "#1f77b4",
            points,
            dashed: false,
            markers: true,
        }],
        hlines: vec![],
        knee,
        y_fmt: &int,
        ..Chart::plain()
    })
}

/// Two runs' frontiers on one chart: run A dashed, run B solid.
pub(super) fn frontier_overlay(
    a: &str,
    b: &str,
    rows: &[crate::capacity::compare::FrontierDelta],
) -> String {
    let x_label = format!("{a} rate (/s)");
    let pick = |f: fn(&crate::capacity::compare::FrontierDelta) -> Option<f64>| {
        rows.iter()
            .filter_map(|r| f(r).map(|v| (r.row_rate, v)))
            .collect::<Vec<_>>()
    };
    render_chart(&Chart {
        title: format!("combined capacity: highest {b} rate per {a} rate, A dashed, B solid"),
        x_label: &x_label,
        y_label: "highest passing rate (/s)",
        y_log: false,
        series: vec![
            Series {
                name: "run A".into(),
                color: "#7f7f7f",
                points: pick(|r| r.best_a),
                dashed: true,
                markers: true,
            },
            Series {
                name: "run B".into(),
                color: "#1f77b4",
                points: pick(|r| r.best_b),
                dashed: false,
                markers: true,
            },
        ],
        hlines: vec![],
        knee: None,
        y_fmt: &int,
        ..Chart::plain()
    })
}
