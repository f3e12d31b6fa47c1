//! The soak report: the morning summary an SRE reads first. For any span the rings hold
//! (`?since=24h`, at most the window), what is getting worse — each finding with its
//! evidence, worst first — then every target's and op's series with their verdicts, and
//! a chart of each series a finding names (its points, the fitted trend and its
//! interval, its change points and the target's restarts). As JSON
//! (`/api/v1/soak/report`, `soakd report --soak --json`) and as one HTML page with its
//! charts inline (`/soak/report`, `soakd report --soak`).

use crate::chart::{esc, render_chart, Band, Chart, Mark, Series};
use crate::soak::api::{payload, OpSoak};
use crate::soak::store::{SeriesSoak, Soak, TargetSoak};
use crate::soak::verdict::Verdict;
use serde::Serialize;
use std::fmt::Write as _;

/// Points per chart.
const CHART_POINTS: usize = 240;
/// Charts per report at most (the findings' series, worst first).
pub const MAX_CHARTS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// A target, or `scenario/op` for soakd's own series.
    pub subject: String,
    /// The resource (or the op's series); empty for a finding about the target.
    pub resource: String,
    /// `growing`, `shrinking`, `bounded`, `change_point`, `restarts`, `restart_loop` or
    /// `source_error`.
    pub kind: &'static str,
    /// When it happened (a change point, the latest restart), Unix seconds.
    pub t: Option<f64>,
    /// The evidence in one sentence.
    pub summary: String,
}

#[derive(Serialize)]
pub struct SoakReport {
    pub generated_at: f64,
    pub since_seconds: f64,
    pub window_seconds: f64,
    pub warmup_seconds: f64,
    pub resolution_seconds: f64,
    /// Worst first, then newest first.
    pub findings: Vec<Finding>,
    /// Series judged, and how many of them have a finding.
    pub series_judged: usize,
    pub targets: Vec<TargetSoak>,
    pub ops: Vec<OpSoak>,
}

/// The report of the last `since` seconds (at most the window) at `now`.
pub fn build(s: &Soak, now: f64, since: f64) -> SoakReport {
    let p = payload(s, now, CHART_POINTS);
    let since = since.clamp(1.0, p.window_seconds);
    let from = now - since;
    let mut targets = p.targets;
    let mut ops = p.ops;
    let mut findings = Vec::new();
    let mut judged = 0;
    for t in &mut targets {
        t.restarts.retain(|r| *r >= from);
        if t.restart_loop {
            findings.push(Finding {
                severity: Severity::Critical,
                subject: t.target.clone(),
                resource: String::new(),
                kind: "restart_loop",
                t: t.restarts.last().copied(),
                summary: format!(
                    "restarting in a loop: {} restarts within the window",
                    t.restarts.len()
                ),
            });
        } else if !t.restarts.is_empty() {
            findings.push(Finding {
                severity: Severity::Warning,
                subject: t.target.clone(),
                resource: String::new(),
                kind: "restarts",
                t: t.restarts.last().copied(),
                summary: format!("restarted {} time(s)", t.restarts.len()),
            });
        }
        for (source, why) in &t.errors {
            findings.push(Finding {
                severity: Severity::Warning,
                subject: t.target.clone(),
                resource: source.clone(),
                kind: "source_error",
                t: None,
                summary: format!("the {source} source cannot be read: {why}"),
            });
        }
        for series in &mut t.series {
            judged += judge_findings(&t.target, series, from, &mut findings);
        }
    }
    for o in &mut ops {
        let subject = format!("{}/{}", o.scenario, o.op);
        for series in &mut o.series {
            judged += judge_findings(&subject, series, from, &mut findings);
        }
    }
    findings.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(b.t.unwrap_or(f64::MAX).total_cmp(&a.t.unwrap_or(f64::MAX)))
    });
    SoakReport {
        generated_at: now,
        since_seconds: since,
        window_seconds: p.window_seconds,
        warmup_seconds: p.warmup_seconds,
        resolution_seconds: p.resolution_seconds,
        findings,
        series_judged: judged,
        targets,
        ops,
    }
}

/// Whether a rise of this series is a worsening (memory, fds, latency, errors, bloat…);
/// an op's achieved rate is the one whose fall is.
fn worse_when_higher(resource: &str) -> bool {
    resource != "rate_per_second"
}

/// A series' findings within the span (its points cut to it); 1 when it was judged.
fn judge_findings(subject: &str, s: &mut SeriesSoak, from: f64, out: &mut Vec<Finding>) -> usize {
    s.points.retain(|p| p[0] >= from);
    s.change_points.retain(|c| c.t >= from);
    let Some(j) = &s.judgement else { return 0 };
    if j.verdict == Verdict::Insufficient {
        return 0;
    }
    let push = |out: &mut Vec<Finding>, severity, kind, t, summary| {
        out.push(Finding {
            severity,
            subject: subject.to_string(),
            resource: s.resource.clone(),
            kind,
            t,
            summary,
        })
    };
    let worse_up = worse_when_higher(&s.resource);
    match j.verdict {
        Verdict::Growing => push(
            out,
            if worse_up {
                Severity::Warning
            } else {
                Severity::Info
            },
            "growing",
            None,
            j.reason.clone(),
        ),
        Verdict::Shrinking => push(
            out,
            if worse_up {
                Severity::Info
            } else {
                Severity::Warning
            },
            "shrinking",
            None,
            j.reason.clone(),
        ),
        Verdict::Bounded => push(out, Severity::Info, "bounded", None, j.reason.clone()),
        Verdict::Flat | Verdict::Insufficient => {}
    }
    for c in &s.change_points {
        let up = c.after > c.before;
        let size = c
            .relative
            .map(|r| format!("{:+.1} %", r * 100.0))
            .unwrap_or_else(|| {
                format!(
                    "{} → {}",
                    value(&s.resource, c.before),
                    value(&s.resource, c.after)
                )
            });
        push(
            out,
            if up == worse_up {
                Severity::Warning
            } else {
                Severity::Info
            },
            "change_point",
            Some(c.t),
            format!(
                "stepped {size} ({} → {}) at {} ± {:.0} s; probable cause: {}",
                value(&s.resource, c.before),
                value(&s.resource, c.after),
                crate::units::format_utc(c.t),
                c.uncertainty,
                c.cause.as_deref().unwrap_or("none in soakd's event log"),
            ),
        );
    }
    1
}

/// A value in its resource's unit.
pub fn value(resource: &str, v: f64) -> String {
    let kind = resource.rsplit('.').next().unwrap_or(resource);
    if kind.ends_with("_bytes") || kind == "bytes_per_live_tuple" && v >= 1024.0 {
        crate::units::format_bytes(v)
    } else if kind.ends_with("_seconds") && kind.starts_with('p') {
        format!("{:.1} ms", v * 1000.0)
    } else if kind.ends_with("_ratio") {
        format!("{:.2} %", v * 100.0)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn trend_text(s: &SeriesSoak) -> String {
    let Some(j) = &s.judgement else {
        return "–".into();
    };
    match (j.relative, j.absolute) {
        (Some(r), _) => format!(
            "{:+.2} %/day ({:+.2} to {:+.2})",
            r.estimate * 100.0,
            r.lower * 100.0,
            r.upper * 100.0
        ),
        (None, Some(a)) => format!(
            "{}/day ({} to {})",
            value(&s.resource, a.estimate),
            value(&s.resource, a.lower),
            value(&s.resource, a.upper)
        ),
        _ => "–".into(),
    }
}

/// One series' chart: its points, the fitted line and its interval, its change points
/// and the target's restarts.
pub fn chart(subject: &str, s: &SeriesSoak, restarts: &[f64]) -> String {
    let points: Vec<(f64, f64)> = s.points.iter().map(|p| (p[0], p[1])).collect();
    let mut series = vec![Series {
        name: s.resource.clone(),
        color: "#1f77b4",
        points,
        dashed: false,
        markers: false,
    }];
    let mut bands = Vec::new();
    if let Some((line, abs)) = s.judgement.as_ref().and_then(|j| j.line.zip(j.absolute)) {
        series.push(Series {
            name: "trend".into(),
            color: "#ff7f0e",
            points: vec![(line.t0, line.start), (line.t1, line.end)],
            dashed: true,
            markers: false,
        });
        let (lower, upper) = line.band(&abs);
        bands.push(Band {
            color: "#ff7f0e",
            lower,
            upper,
        });
    }
    let mut marks: Vec<Mark> = s
        .change_points
        .iter()
        .map(|c| Mark {
            x: c.t,
            label: c
                .relative
                .map(|r| format!("step {:+.0} %", r * 100.0))
                .unwrap_or_else(|| "step".into()),
            color: "#d62728",
        })
        .collect();
    let first = s.points.first().map_or(f64::INFINITY, |p| p[0]);
    marks.extend(restarts.iter().filter(|t| **t >= first).map(|t| Mark {
        x: *t,
        label: "restart".into(),
        color: "#7f7f7f",
    }));
    let verdict = s
        .judgement
        .as_ref()
        .map_or("not judged yet", |j| j.verdict.as_str());
    let resource = s.resource.clone();
    render_chart(&Chart {
        title: format!("{subject}: {} — {verdict}", s.resource),
        x_label: "time (UTC)",
        y_label: &s.resource,
        series,
        y_fmt: &|v| value(&resource, v),
        x_time: true,
        y_fit: true,
        bands,
        marks,
        ..Chart::plain()
    })
}

fn badge(s: &SeriesSoak) -> String {
    let v = match &s.judgement {
        _ if !s.judged => "kept",
        Some(j) => j.verdict.as_str(),
        None => "pending",
    };
    format!(r#"<span class="badge verdict-{v}">{v}</span>"#)
}

fn series_table(out: &mut String, series: &[SeriesSoak]) {
    out.push_str("<table><tr><th>series</th><th>latest</th><th>verdict</th><th>trend per day (95 % interval)</th><th>change points</th><th>evidence</th></tr>");
    for s in series {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"why\">{}</td></tr>",
            esc(&s.resource),
            s.latest.map_or("–".into(), |v| value(&s.resource, v)),
            badge(s),
            esc(&trend_text(s)),
            s.change_points.len(),
            esc(s.judgement.as_ref().map_or("", |j| j.reason.as_str())),
        );
    }
    out.push_str("</table>");
}

/// The report as one HTML page (its charts inline; no script).
pub fn html(r: &SoakReport) -> String {
    let mut b = String::new();
    let span = crate::units::format_duration(std::time::Duration::from_secs_f64(r.since_seconds));
    let _ = write!(
        b,
        "<h1>Soak report: the last {span}</h1><p class=\"muted\">Generated {} · trends over the last {} after a {} warmup, one point per {} · {} series judged.</p>",
        crate::units::format_utc(r.generated_at),
        crate::units::format_duration(std::time::Duration::from_secs_f64(r.window_seconds)),
        crate::units::format_duration(std::time::Duration::from_secs_f64(r.warmup_seconds)),
        crate::units::format_duration(std::time::Duration::from_secs_f64(r.resolution_seconds)),
        r.series_judged,
    );
    b.push_str("<h2>Findings</h2>");
    if r.findings.is_empty() {
        b.push_str("<p class=\"nothing\">Nothing is getting worse: no series growing, no step, no restart, every source read.</p>");
    } else {
        b.push_str("<table class=\"findings\"><tr><th>severity</th><th>what</th><th>series</th><th>finding</th><th>when</th><th>evidence</th></tr>");
        for f in &r.findings {
            let sev = match f.severity {
                Severity::Critical => "critical",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            let _ = write!(
                b,
                "<tr class=\"sev-{sev}\"><td>{sev}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"why\">{}</td></tr>",
                esc(&f.subject),
                esc(&f.resource),
                f.kind,
                f.t.map_or("–".into(), crate::units::format_utc),
                esc(&f.summary),
            );
        }
        b.push_str("</table>");
    }
    // The findings' series, worst first, each charted once.
    let mut charted: Vec<(String, String)> = Vec::new();
    for f in &r.findings {
        if f.resource.is_empty() || charted.len() >= MAX_CHARTS {
            continue;
        }
        let key = (f.subject.clone(), f.resource.clone());
        if !charted.contains(&key) {
            charted.push(key);
        }
    }
    let wanted = |subject: &str, resource: &str| {
        charted
            .iter()
            .any(|(s, res)| s == subject && res == resource)
    };
    for t in &r.targets {
        let _ = write!(b, "<h2>Target {}</h2>", esc(&t.target));
        if !t.restarts.is_empty() {
            let times: Vec<String> = t
                .restarts
                .iter()
                .map(|x| crate::units::format_utc(*x))
                .collect();
            let _ = write!(b, "<p>Restarts: {}</p>", esc(&times.join(", ")));
        }
        for (source, why) in &t.errors {
            let _ = write!(b, "<p class=\"error\">{}: {}</p>", esc(source), esc(why));
        }
        series_table(&mut b, &t.series);
        for s in t.series.iter().filter(|s| wanted(&t.target, &s.resource)) {
            let _ = write!(
                b,
                "<figure class=\"chart\">{}</figure>",
                chart(&t.target, s, &t.restarts)
            );
        }
    }
    if !r.ops.is_empty() {
        b.push_str("<h2>soakd's own series of each op</h2>");
    }
    for o in &r.ops {
        let subject = format!("{}/{}", o.scenario, o.op);
        let _ = write!(b, "<h3>{}</h3>", esc(&subject));
        series_table(&mut b, &o.series);
        for s in o.series.iter().filter(|s| wanted(&subject, &s.resource)) {
            let _ = write!(
                b,
                "<figure class=\"chart\">{}</figure>",
                chart(&subject, s, &[])
            );
        }
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>soakd — soak report</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
</head><body class="report-page">
<header class="top"><a href="/" class="brand">soakd</a><span class="muted">soak report</span>
<span class="grow"></span><a href="/api/v1/soak/report?since={since:.0}s">JSON</a></header>
<main class="report soak-report">{b}</main>
</body></html>"#,
        since = r.since_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::soak::SoakConfig;
    use std::time::Duration;

    fn soak_with(leak: bool) -> Soak {
        let s = Soak::new(SoakConfig {
            window: Duration::from_secs(3600),
            warmup: Duration::from_secs(10),
            resolution: Duration::from_secs(1),
            ..SoakConfig::default()
        });
        for i in 0..1200 {
            let t = 1_796_000_000.0 + i as f64;
            let noise = ((i * 7919) % 13) as f64 * 1e4;
            let v = if leak { 1e8 + 1e5 * i as f64 } else { 1e8 } + noise;
            s.targets.record("api", "rss_bytes", false, t, v);
            s.ops
                .record("api/list", "p99_seconds", false, t, 0.1 + noise * 1e-9);
        }
        s.targets.judge_all(1_796_001_200.0);
        s.ops.judge_all(1_796_001_200.0);
        s
    }

    #[test]
    fn a_leak_is_the_first_finding_with_its_chart_and_a_quiet_soak_says_so() {
        let now = 1_796_001_200.0;
        let r = build(&soak_with(true), now, 86_400.0);
        assert_eq!(r.since_seconds, 3600.0, "cut to the window");
        assert_eq!(r.series_judged, 2);
        let f = &r.findings[0];
        assert_eq!(
            (f.subject.as_str(), f.resource.as_str(), f.kind, f.severity),
            ("api", "rss_bytes", "growing", Severity::Warning),
            "{:?}",
            r.findings
        );
        let page = html(&r);
        assert!(page.contains("<figure class=\"chart\"><svg"), "one chart");
        assert_eq!(page.matches("<svg").count(), 1, "only the finding's series");
        assert!(page.contains("<polygon"), "the interval band");
        assert!(page.contains("verdict-growing"));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["findings"][0]["kind"], "growing");
        assert!(
            json["targets"][0]["series"][0]["points"]
                .as_array()
                .unwrap()
                .len()
                <= CHART_POINTS
        );

        let quiet = build(&soak_with(false), now, 600.0);
        assert!(quiet.findings.is_empty(), "{:?}", quiet.findings);
        assert!(html(&quiet).contains("Nothing is getting worse"));
        // The span cuts the points.
        let first = quiet.targets[0].series[0].points[0][0];
        assert!(first >= now - 600.0, "{first}");
    }
}
