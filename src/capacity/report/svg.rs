//! The chart engine: line charts of measurements against offered load as standalone SVG
//! (no script, no external fonts), with reference lines (an SLO) and the knee marked —
//! and the report's four charts built on it.

use super::cells::{int, ms, pct, rate_num};
use crate::capacity::findings::Levels;
use crate::units::format_rate;
use std::fmt::{self, Write as _};

pub(super) struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

pub(super) struct Chart<'a> {
    pub title: String,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub y_log: bool,
    pub series: Vec<Series>,
    /// Horizontal reference lines (label, y).
    pub hlines: Vec<(String, f64)>,
    /// The knee: a vertical line at this x.
    pub knee: Option<f64>,
    /// How a y tick reads.
    pub y_fmt: &'a dyn Fn(f64) -> String,
}

const W: f64 = 720.0;
const H: f64 = 400.0;
/// Plot margins: left, right (the legend), top, bottom.
const L: f64 = 80.0;
const R: f64 = 150.0;
const T: f64 = 40.0;
const B: f64 = 55.0;
const PW: f64 = W - L - R;
const PH: f64 = H - T - B;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    let mut t = Vec::new();
    if log {
        let mut d = 10f64.powf(lo.log10().floor());
        while d <= hi * 1.0001 {
            for m in [1.0, 2.0, 5.0] {
                let v = d * m;
                if v >= lo * 0.9999 && v <= hi * 1.0001 {
                    t.push(v);
                }
            }
            d *= 10.0;
        }
        return t;
    }
    let span = (hi - lo).max(1e-12);
    let mag = 10f64.powf((span / 5.0).log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(mag * 10.0);
    let mut v = (lo / step).ceil() * step;
    while v <= hi + step * 1e-9 {
        t.push(v);
        v += step;
    }
    t
}

/// Where data lands on the plot: the axes' ranges and scales.
struct Scale {
    x: (f64, f64),
    y: (f64, f64),
    x_log: bool,
    y_log: bool,
}

impl Scale {
    /// Linear axes from 0 with headroom; log when the data spans more than 20× (x) or
    /// the chart asks for it (y).
    fn fit(xs: &[f64], ys: &[f64], y_log: bool) -> Scale {
        let x_min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let x_max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let x_log = x_min > 0.0 && x_max / x_min > 20.0;
        let x = if x_log {
            (x_min / 1.2, x_max * 1.2)
        } else {
            let pad = ((x_max - x_min) * 0.05).max(x_max.abs() * 0.05).max(1e-9);
            ((x_min - pad).max(0.0), x_max + pad)
        };
        let pos: Vec<f64> = ys.iter().cloned().filter(|y| *y > 0.0).collect();
        let y_log = y_log && !pos.is_empty();
        let y = if y_log {
            let lo = pos.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = pos.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lo = 10f64.powf(lo.log10().floor());
            (lo, 10f64.powf(hi.log10().ceil()).max(lo * 10.0))
        } else {
            let hi = ys.iter().cloned().fold(0.0, f64::max);
            (0.0, if hi > 0.0 { hi * 1.1 } else { 1.0 })
        };
        Scale { x, y, x_log, y_log }
    }

    fn fx(&self, x: f64) -> f64 {
        let (x0, x1) = self.x;
        let f = if self.x_log {
            (x.ln() - x0.ln()) / (x1.ln() - x0.ln())
        } else {
            (x - x0) / (x1 - x0)
        };
        L + f.clamp(0.0, 1.0) * PW
    }

    fn fy(&self, y: f64) -> f64 {
        let (y0, y1) = self.y;
        let f = if self.y_log {
            (y.max(y0).ln() - y0.ln()) / (y1.ln() - y0.ln())
        } else {
            (y - y0) / (y1 - y0)
        };
        T + PH - f.clamp(0.0, 1.0) * PH
    }
}

/// Renders a chart as a standalone SVG document.
pub(super) fn render_chart(c: &Chart) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = draw(&mut out, c);
    out
}

fn draw(out: &mut String, c: &Chart) -> fmt::Result {
    let xs: Vec<f64> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let mut ys: Vec<f64> = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    ys.extend(c.hlines.iter().map(|x| x.1));
    write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    )?;
    write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#)?;
    write!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        L + PW / 2.0,
        esc(&c.title)
    )?;
    if xs.is_empty() {
        return write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
    }
    let s = Scale::fit(&xs, &ys, c.y_log);
    axes(out, c, &s, &xs)?;
    references(out, c, &s)?;
    for (i, series) in c.series.iter().enumerate() {
        line(out, &s, series, i)?;
    }
    out.push_str("</svg>\n");
    Ok(())
}

/// The grid, the ticks (every measured x when there are few, nice ones otherwise), the
/// frame and the axis labels.
fn axes(out: &mut String, c: &Chart, s: &Scale, xs: &[f64]) -> fmt::Result {
    for v in nice_ticks(s.y.0, s.y.1, s.y_log) {
        let y = s.fy(v);
        write!(
            out,
            r##"<line x1="{L}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            L + PW,
            L - 6.0,
            y + 4.0,
            esc(&(c.y_fmt)(v))
        )?;
    }
    let mut xt: Vec<f64> = xs.to_vec();
    xt.sort_by(f64::total_cmp);
    xt.dedup();
    if xt.len() > 12 {
        xt = nice_ticks(s.x.0.max(1e-9), s.x.1, s.x_log);
    }
    for v in xt {
        let x = s.fx(v);
        write!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            T + PH,
            T + PH + 4.0,
            T + PH + 18.0,
            esc(&rate_num(v))
        )?;
    }
    write!(
        out,
        r##"<rect x="{L}" y="{T}" width="{PW}" height="{PH}" fill="none" stroke="#333"/>"##
    )?;
    write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}{}</text>"#,
        L + PW / 2.0,
        H - 12.0,
        esc(c.x_label),
        if s.x_log { " (log scale)" } else { "" }
    )?;
    write!(
        out,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}{}</text>"#,
        T + PH / 2.0,
        esc(c.y_label),
        if s.y_log { " (log scale)" } else { "" }
    )
}

/// The reference lines (dashed red, labelled at the right) and the knee (orange).
fn references(out: &mut String, c: &Chart, s: &Scale) -> fmt::Result {
    for (label, y) in &c.hlines {
        let yy = s.fy(*y);
        write!(
            out,
            r##"<line x1="{L}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#d62728" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
            L + PW,
            L + PW + 6.0,
            yy + 4.0,
            esc(label)
        )?;
    }
    if let Some(k) = c.knee {
        let x = s.fx(k);
        write!(
            out,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="3,3"/><text x="{:.1}" y="{:.1}" fill="#ff7f0e" font-weight="bold">knee {}</text>"##,
            T + PH,
            x + 4.0,
            T + 14.0,
            esc(&format_rate(k))
        )?;
    }
    Ok(())
}

/// One series: its line, its points, and its legend entry (the `i`th).
fn line(out: &mut String, s: &Scale, series: &Series, i: usize) -> fmt::Result {
    let pts: Vec<String> = series
        .points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", s.fx(*x), s.fy(*y)))
        .collect();
    let dash = if series.dashed {
        r#" stroke-dasharray="8,4""#
    } else {
        ""
    };
    write!(
        out,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
        pts.join(" "),
        series.color
    )?;
    for (x, y) in &series.points {
        write!(
            out,
            r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
            s.fx(*x),
            s.fy(*y),
            series.color
        )?;
    }
    let ly = T + 10.0 + 18.0 * i as f64;
    write!(
        out,
        r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
        L + PW + 10.0,
        L + PW + 30.0,
        series.color,
        L + PW + 36.0,
        ly + 4.0,
        esc(&series.name)
    )
}

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
        });
        series.push(Series {
            name: format!("p99 {label}"),
            color: "#9467bd",
            points: pick(levels, |s| s.latency.p99),
            dashed,
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
        }],
        hlines: slo
            .map(|v| (format!("SLO {}", pct(v)), v * 100.0))
            .into_iter()
            .collect(),
        knee,
        y_fmt: &|v| pct(v / 100.0),
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
            },
            Series {
                name: "max".into(),
                color: "#333333",
                points: max,
                dashed: true,
            },
        ],
        hlines: vec![],
        knee,
        y_fmt: &int,
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
        }],
        hlines: vec![],
        knee,
        y_fmt: &int,
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
            },
            Series {
                name: "run B".into(),
                color: "#1f77b4",
                points: pick(|r| r.best_b),
                dashed: false,
            },
        ],
        hlines: vec![],
        knee: None,
        y_fmt: &int,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers_within_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, false),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(nice_ticks(0.001, 1.0, true).len(), 10);
    }

    #[test]
    fn an_empty_chart_says_so_and_text_is_escaped() {
        let svg = render_chart(&Chart {
            title: "a < b & c".into(),
            x_label: "x",
            y_label: "y",
            y_log: false,
            series: vec![],
            hlines: vec![],
            knee: None,
            y_fmt: &int,
        });
        assert!(
            svg.contains("a &lt; b &amp; c") && svg.contains("no data"),
            "{svg}"
        );
    }
}
