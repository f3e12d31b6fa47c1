//! The chart engine: line charts as standalone SVG (no script, no external fonts) —
//! measurements against offered load (the capacity reports) or against time (the soak
//! report) — with reference lines (an SLO), vertical marks (a knee, a change point) and
//! shaded bands (a trend's interval).

use crate::units::format_rate;
use std::fmt::{self, Write as _};

pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
    /// A dot at each point (for a few measured levels; not for a long time series).
    pub markers: bool,
}

/// A shaded area between two lines (a trend's interval).
pub struct Band {
    pub color: &'static str,
    pub lower: Vec<(f64, f64)>,
    pub upper: Vec<(f64, f64)>,
}

/// A vertical line at x, labelled at its top.
pub struct Mark {
    pub x: f64,
    pub label: String,
    pub color: &'static str,
}

pub struct Chart<'a> {
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
    /// The x axis is Unix seconds: ticks at round times, read as UTC hours and minutes.
    pub x_time: bool,
    /// The y axis spans the data (with headroom) rather than starting at zero.
    pub y_fit: bool,
    pub bands: Vec<Band>,
    pub marks: Vec<Mark>,
}

fn plain(v: f64) -> String {
    format!("{v}")
}

impl Chart<'static> {
    /// The optional parts left out: no band, no mark, x from the data, y from zero.
    pub fn plain() -> Chart<'static> {
        Chart {
            title: String::new(),
            x_label: "",
            y_label: "",
            y_log: false,
            series: Vec::new(),
            hlines: Vec::new(),
            knee: None,
            y_fmt: &plain,
            x_time: false,
            y_fit: false,
            bands: Vec::new(),
            marks: Vec::new(),
        }
    }
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

pub fn esc(s: &str) -> String {
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
    fn fit(xs: &[f64], ys: &[f64], y_log: bool, y_fit: bool, x_time: bool) -> Scale {
        let x_min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
        let x_max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let x_log = !x_time && x_min > 0.0 && x_max / x_min > 20.0;
        let x = if x_log {
            (x_min / 1.2, x_max * 1.2)
        } else if x_time {
            (x_min, x_max.max(x_min + 1.0))
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
        } else if y_fit {
            let lo = ys.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = ys.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.08)
                .max(hi.abs().max(lo.abs()) * 1e-3)
                .max(1e-12);
            (lo - pad, hi + pad)
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
pub fn render_chart(c: &Chart) -> String {
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
    for b in &c.bands {
        ys.extend(b.lower.iter().chain(&b.upper).map(|p| p.1));
    }
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
    let s = Scale::fit(&xs, &ys, c.y_log, c.y_fit, c.x_time);
    axes(out, c, &s, &xs)?;
    for b in &c.bands {
        band(out, &s, b)?;
    }
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
    if c.x_time {
        xt = time_ticks(s.x.0, s.x.1);
    } else if xt.len() > 12 {
        xt = nice_ticks(s.x.0.max(1e-9), s.x.1, s.x_log);
    }
    for v in xt {
        let label = if c.x_time {
            clock(v, s.x.1 - s.x.0)
        } else {
            rate_num(v)
        };
        let x = s.fx(v);
        write!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            T + PH,
            T + PH + 4.0,
            T + PH + 18.0,
            esc(&label)
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

/// Ticks at round times (a minute to a day apart), at most about eight.
fn time_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    let step = [
        60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0,
    ]
    .into_iter()
    .find(|s| span / s <= 8.0)
    .unwrap_or(86400.0 * (span / 86400.0 / 8.0).ceil());
    let mut t = Vec::new();
    let mut v = (lo / step).ceil() * step;
    while v <= hi {
        t.push(v);
        v += step;
    }
    t
}

/// A Unix time as UTC `HH:MM` (with the date when the chart spans more than a day).
fn clock(t: f64, span: f64) -> String {
    let secs = t.max(0.0) as u64;
    let (h, m) = ((secs / 3600) % 24, (secs / 60) % 60);
    if span > 86400.0 {
        let (_, mo, d) = crate::units::civil_from_days((secs / 86400) as i64);
        format!("{mo:02}-{d:02} {h:02}:{m:02}")
    } else {
        format!("{h:02}:{m:02}")
    }
}

/// A band: its area filled lightly, its edges thin.
fn band(out: &mut String, s: &Scale, b: &Band) -> fmt::Result {
    let mut pts: Vec<String> = b
        .upper
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", s.fx(*x), s.fy(*y)))
        .collect();
    pts.extend(
        b.lower
            .iter()
            .rev()
            .map(|(x, y)| format!("{:.1},{:.1}", s.fx(*x), s.fy(*y))),
    );
    write!(
        out,
        r#"<polygon points="{}" fill="{}" fill-opacity="0.18" stroke="none"/>"#,
        pts.join(" "),
        b.color
    )
}

/// A rate without its unit (`500`, `1.5k`), for chart ticks and table cells.
pub fn rate_num(v: f64) -> String {
    format_rate(v).trim_end_matches("/s").to_string()
}

/// The reference lines (dashed red, labelled at the right), the knee (orange) and the
/// marks.
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
    for (i, m) in c.marks.iter().enumerate() {
        let x = s.fx(m.x);
        write!(
            out,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{:.1}" stroke="{}" stroke-width="1.5" stroke-dasharray="4,3"/><text x="{:.1}" y="{:.1}" fill="{}" font-size="11">{}</text>"##,
            T + PH,
            m.color,
            x + 3.0,
            T + 12.0 + 13.0 * (i % 3) as f64,
            m.color,
            esc(&m.label)
        )?;
    }
    Ok(())
}

/// One series: its line, its points (with markers), and its legend entry (the `i`th).
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
    for (x, y) in series.points.iter().filter(|_| series.markers) {
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
            y_fmt: &|v| format!("{v:.0}"),
            ..Chart::plain()
        });
        assert!(
            svg.contains("a &lt; b &amp; c") && svg.contains("no data"),
            "{svg}"
        );
    }

    #[test]
    fn a_time_chart_has_clock_ticks_a_band_and_marks() {
        let t0 = 1_796_000_400.0; // 2026-11-30 01:00 UTC
        let svg = render_chart(&Chart {
            title: "rss".into(),
            series: vec![Series {
                name: "rss".into(),
                color: "#1f77b4",
                points: (0..60)
                    .map(|i| (t0 + 60.0 * i as f64, 1e8 + 1e5 * i as f64))
                    .collect(),
                dashed: false,
                markers: false,
            }],
            bands: vec![Band {
                color: "#ff7f0e",
                lower: vec![(t0, 1e8), (t0 + 3540.0, 1.05e8)],
                upper: vec![(t0, 1e8), (t0 + 3540.0, 1.07e8)],
            }],
            marks: vec![Mark {
                x: t0 + 1800.0,
                label: "step +12 %".into(),
                color: "#d62728",
            }],
            x_time: true,
            y_fit: true,
            ..Chart::plain()
        });
        assert!(svg.contains(">01:00<") && svg.contains(">01:30<"), "{svg}");
        assert!(
            svg.contains("<polygon") && svg.contains("step +12 %"),
            "{svg}"
        );
        assert!(!svg.contains("<circle"), "no markers on a time series");
        assert_eq!(clock(t0, 3.0 * 86400.0), "11-30 01:00");
    }
}
