//! A deploy's report (`/deploys/{id}`, `soakd report --deploy ID`): the releases, the
//! verdict with every reason, each finding with its interval, the resources, and a chart
//! of each compared op's per-block quantiles either side of the deploy — one HTML page,
//! charts inline, no script.

use super::record::{Deploy, OpSeries, State};
use crate::chart::{esc, render_chart, Chart, Mark, Series};
use crate::shift::Change;
use std::fmt::Write;

fn badge(s: State) -> String {
    format!(r#"<span class="badge deploy-{0}">{0}</span>"#, s.as_str())
}

fn chart(d: &Deploy, s: &OpSeries) -> String {
    let mut series = Vec::new();
    for (name, k, color) in [
        ("p50", 1, "#1f77b4"),
        ("p95", 2, "#ff7f0e"),
        ("p99", 3, "#d62728"),
    ] {
        for (side, pts, dashed) in [("before", &s.before, true), ("after", &s.after, false)] {
            series.push(Series {
                name: format!("{name} {side}"),
                color,
                points: pts.iter().map(|p| (p[0], p[k])).collect(),
                dashed,
                markers: true,
            });
        }
    }
    let w = &d.verdict.windows;
    let marks = vec![
        Mark {
            x: d.at,
            label: format!("deploy {}", d.to.as_deref().unwrap_or("")),
            color: "#2ca02c",
        },
        Mark {
            x: w.after[0],
            label: "settled".into(),
            color: "#7f7f7f",
        },
    ];
    render_chart(&Chart {
        title: format!("{}: latency per block, before and after", s.subject),
        x_label: "time (UTC)",
        y_label: "seconds",
        series,
        y_fmt: &|v| crate::units::format_latency(v),
        x_time: true,
        y_fit: true,
        marks,
        ..Chart::plain()
    })
}

fn ratio(x: f64) -> String {
    if x == 0.0 {
        "0 %".into()
    } else {
        format!("{:.3} %", x * 100.0)
    }
}

/// The report as one HTML page.
pub fn html(d: &Deploy) -> String {
    let v = &d.verdict;
    let mut b = String::new();
    let releases = match (&d.from, &d.to) {
        (Some(a), Some(t)) => format!("{} → {}", esc(a), esc(t)),
        (None, Some(t)) => format!("→ {}", esc(t)),
        _ => "a restart with no release source (a possible deploy)".into(),
    };
    let _ = write!(
        b,
        "<h1>Deploy of {} {}</h1><p>{} · seen at {} by {}{}</p>",
        esc(&d.target),
        badge(v.state),
        releases,
        crate::units::format_utc(d.at),
        match d.source {
            super::record::Source::Metrics => "its exposition",
            super::record::Source::Http => "its version endpoint",
            super::record::Source::Promql => "PromQL",
            super::record::Source::Api => "POST /api/v1/deploys",
            super::record::Source::Restart => "a restart",
        },
        d.note
            .as_deref()
            .map(|n| format!(" · {}", esc(n)))
            .unwrap_or_default()
    );
    let _ = write!(
        b,
        "<p class=\"muted\">Before: {} to {} · after: {} to {} · load {} · resources {}{}</p>",
        crate::units::format_utc(v.windows.before[0]),
        crate::units::format_utc(v.windows.before[1]),
        crate::units::format_utc(v.windows.after[0]),
        crate::units::format_utc(v.windows.after[1]),
        badge(v.load),
        badge(v.resources.state),
        v.first
            .map(|f| format!(" · first judged {}", f.as_str()))
            .unwrap_or_default()
    );
    b.push_str("<h2>Why</h2><ul>");
    for r in &v.reasons {
        let _ = write!(b, "<li>{}</li>", esc(r));
    }
    b.push_str("</ul>");
    if !v.findings.is_empty() {
        b.push_str("<h2>Every measure compared</h2><table class=\"findings\"><tr><th>measure</th><th>of</th><th>before</th><th>after</th><th>change</th><th>95 % interval</th><th>p (Holm)</th><th>minimum effect</th><th>wander without a deploy</th><th></th></tr>");
        for f in &v.findings {
            let latency = f.measure.starts_with('p');
            let (bf, af, e, lo, hi, min) = if latency {
                let p = |x: f64| format!("{:+.1} %", x * 100.0);
                (
                    crate::units::format_latency(f.before),
                    crate::units::format_latency(f.after),
                    p(f.effect),
                    p(f.ci[0]),
                    p(f.ci[1]),
                    format!("{:.0} %", f.min_effect * 100.0),
                )
            } else {
                let p = |x: f64| format!("{:+.3} pt", x * 100.0);
                (
                    ratio(f.before),
                    ratio(f.after),
                    p(f.effect),
                    p(f.ci[0]),
                    p(f.ci[1]),
                    format!("{:.3} pt", f.min_effect * 100.0),
                )
            };
            let class = match f.change {
                Change::Worse => "worse",
                Change::Better => "better",
                Change::None => "",
            };
            // The op's own wander (`deploys.history`): its 95 % prediction interval
            // and the pairs it came from.
            let wander = f
                .drift
                .as_ref()
                .map(|d| {
                    format!(
                        "{:+.1} % to {:+.1} % ({} pairs, {:.0} h)",
                        d.interval[0] * 100.0,
                        d.interval[1] * 100.0,
                        d.pairs,
                        d.hours
                    )
                })
                .unwrap_or_default();
            let _ = write!(
                b,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{bf}</td><td>{af}</td><td>{e}</td><td>{lo} to {hi}</td><td>{:.2e}</td><td>{min}</td><td>{wander}</td><td>{class}</td></tr>",
                esc(&f.measure),
                esc(&f.subject),
                f.p_adjusted,
            );
        }
        b.push_str("</table>");
    }
    b.push_str("<h2>The target's resources</h2><ul>");
    for r in &v.resources.reasons {
        let _ = write!(b, "<li>{}</li>", esc(r));
    }
    b.push_str("</ul>");
    for s in &v.series {
        let _ = write!(b, "<figure class=\"chart\">{}</figure>", chart(d, s));
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>soakd — deploy {id}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
</head><body class="report-page">
<header class="top"><a href="/" class="brand">soakd</a><span class="muted">deploy report</span>
<span class="grow"></span><a href="/api/v1/deploys/{id}">JSON</a></header>
<main class="report deploy-report">{b}</main>
</body></html>"#,
        id = esc(&d.id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::record::{Resources, Source, Verdict, Windows};
    use crate::shift::Finding;

    #[test]
    fn the_report_names_the_releases_the_verdict_and_each_measure() {
        let at = 1_796_000_000.0;
        let d = Deploy {
            id: "api-20261205T000000Z".into(),
            target: "api".into(),
            at,
            from: Some("1.0".into()),
            to: Some("<2.0>".into()),
            source: Source::Metrics,
            note: None,
            verdict: Verdict {
                state: State::Regressed,
                load: State::Regressed,
                resources: Resources {
                    state: State::Pending,
                    judged_at: None,
                    reasons: vec!["a leak cannot be estimated from 30m".into()],
                },
                judged_at: Some(at + 2000.0),
                windows: Windows {
                    before: [at - 1800.0, at],
                    after: [at + 120.0, at + 1920.0],
                },
                findings: vec![Finding {
                    subject: "s/get".into(),
                    measure: "p95".into(),
                    before: 0.05,
                    after: 0.06,
                    effect: 0.2,
                    ci: [0.15, 0.25],
                    p: 1e-6,
                    p_adjusted: 3e-6,
                    min_effect: 0.05,
                    change: Change::Worse,
                    why: "p95 of s/get 50ms → 60ms".into(),
                    relative_to: None,
                    drift: Some(crate::shift::drift::DriftCheck {
                        pairs: 22,
                        hours: 24.0,
                        interval: [-0.045, 0.049],
                        change: 0.19,
                        p: 1e-7,
                        p_adjusted: 3e-7,
                    }),
                }],
                reasons: vec!["p95 of s/get 50ms → 60ms (+20 %): worse".into()],
                series: vec![OpSeries {
                    subject: "s/get".into(),
                    before: (0..30)
                        .map(|i| [at - 1800.0 + 60.0 * i as f64, 0.02, 0.05, 0.07])
                        .collect(),
                    after: (0..30)
                        .map(|i| [at + 150.0 + 60.0 * i as f64, 0.024, 0.06, 0.08])
                        .collect(),
                }],
                first: None,
            },
        };
        let h = html(&d);
        assert!(h.contains("Deploy of api"), "{h}");
        assert!(h.contains("1.0 → &lt;2.0&gt;"), "escaped: {h}");
        assert!(h.contains("badge deploy-regressed"));
        assert!(
            h.contains("<td>+20.0 %</td><td>+15.0 % to +25.0 %</td>"),
            "{h}"
        );
        assert!(
            h.contains("<td>-4.5 % to +4.9 % (22 pairs, 24 h)</td>"),
            "the op's wander: {h}"
        );
        assert!(h.contains("<svg"), "a chart: {h}");
        assert!(h.contains("p95 after"));
    }
}
