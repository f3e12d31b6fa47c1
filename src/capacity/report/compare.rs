//! A comparison of two runs as Markdown with overlay charts (`soakd report --compare`,
//! `/api/v1/runs/{a}/compare/{b}/report`).

use super::cells::{ms, pct, verdict};
use crate::capacity::compare::{Change, Comparison, ScenarioComparison};
use crate::capacity::findings::isolated_levels;
use crate::capacity::record::Run;
use crate::capacity::report::render::Report;
use crate::capacity::report::svg;
use crate::capacity::store::format_utc;
use crate::units::format_rate;
use std::fmt::{self, Write as _};

/// Renders the comparison of `b` against the reference `a` (the runs `c` was made from).
pub fn render(c: &Comparison, a: &Run, b: &Run) -> Report {
    let mut report = Report {
        markdown: String::new(),
        charts: Vec::new(),
    };
    // Writing into a String cannot fail.
    let _ = write(&mut report, c, a, b);
    report
}

fn headline(c: Change) -> &'static str {
    match c {
        Change::Regressed => "**REGRESSED**",
        Change::Improved => "improved",
        Change::Unchanged => "unchanged",
    }
}

/// A signed change of a latency or rate, `+12%`, or `–` without both values.
fn delta(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:+.0}%", (b - a) / a * 100.0),
        _ => "–".into(),
    }
}

fn write(report: &mut Report, c: &Comparison, a: &Run, b: &Run) -> fmt::Result {
    write_header(&mut report.markdown, c)?;
    write_summary(&mut report.markdown, c)?;
    for s in &c.scenarios {
        write_scenario(report, s, a, b)?;
    }
    write_frontier(report, c, b)
}

fn rate(r: Option<f64>) -> String {
    r.map(format_rate).unwrap_or_else(|| "none".into())
}

/// The title, the verdict, the two runs and the comparison's notes.
fn write_header(md: &mut String, c: &Comparison) -> fmt::Result {
    writeln!(md, "# Capacity comparison — {}\n", c.b.name)?;
    writeln!(
        md,
        "**Verdict:** {} (run B against run A, tolerance {})\n",
        headline(c.change),
        pct(c.tolerance)
    )?;
    writeln!(md, "| | Run | Started | Status |")?;
    writeln!(md, "|---|---|---|---|")?;
    let mut rows: Vec<(String, &crate::capacity::compare::RunRef)> =
        vec![("A (reference)".to_string(), &c.a)];
    for (i, r) in c.baselines.iter().enumerate().skip(1) {
        rows.push((format!("A{} (reference)", i + 1), r));
    }
    rows.push(("B".to_string(), &c.b));
    for (side, r) in rows {
        writeln!(
            md,
            "| {side} | `{}` | {} | {} |",
            r.id,
            format_utc(r.started_at),
            if r.complete {
                "complete"
            } else {
                "not finished"
            }
        )?;
    }
    if !c.notes.is_empty() {
        md.push('\n');
        for n in &c.notes {
            writeln!(md, "> {n}  ")?;
        }
    }
    Ok(())
}

/// One row per scenario: both maxima, their change and the scenario's verdict.
fn write_summary(md: &mut String, c: &Comparison) -> fmt::Result {
    md.push_str("\n## Summary\n\n");
    writeln!(
        md,
        "| Scenario | Max sustainable A | Max sustainable B | Change | Verdict |"
    )?;
    writeln!(md, "|---|---|---|---|---|")?;
    for s in &c.scenarios {
        writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            s.scenario,
            rate(s.max_sustainable_a),
            rate(s.max_sustainable_b),
            delta(s.max_sustainable_a, s.max_sustainable_b),
            headline(s.change)
        )?;
    }
    Ok(())
}

/// A scenario's reasons, its levels side by side and the overlay of both latency curves.
fn write_scenario(report: &mut Report, s: &ScenarioComparison, a: &Run, b: &Run) -> fmt::Result {
    let md = &mut report.markdown;
    writeln!(md, "\n## {}\n", s.scenario)?;
    if s.reasons.is_empty() {
        writeln!(
            md,
            "No change beyond the tolerance, the tests and their minimum effects.\n"
        )?;
    } else {
        for r in &s.reasons {
            writeln!(md, "- {r}")?;
        }
        md.push('\n');
    }
    if s.levels.is_empty() {
        writeln!(md, "No level measured by both runs.")?;
    } else {
        writeln!(
            md,
            "| Offered | Verdict A | Verdict B | p95 A | p95 B | Δ p95 | p99 A | p99 B | Δ p99 | Errors A | Errors B |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
        for l in &s.levels {
            writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                format_rate(l.rate),
                verdict(Some(l.verdict_a)),
                verdict(Some(l.verdict_b)),
                ms(l.p95_a),
                ms(l.p95_b),
                delta(l.p95_a, l.p95_b),
                ms(l.p99_a),
                ms(l.p99_b),
                delta(l.p99_a, l.p99_b),
                pct(l.error_ratio_a),
                pct(l.error_ratio_b)
            )?;
        }
    }
    let (la, lb) = (
        isolated_levels(a, &s.scenario),
        isolated_levels(b, &s.scenario),
    );
    if !la.is_empty() || !lb.is_empty() {
        let file = format!("compare-{}-latency.svg", s.scenario);
        let slo = b.record.slos.get(&s.scenario).and_then(|x| x.p95);
        report.charts.push((
            file.clone(),
            svg::latency_overlay(&s.scenario, ("A", &la), ("B", &lb), slo),
        ));
        writeln!(md, "\n![latency vs offered load, both runs]({file})")?;
    }
    Ok(())
}

/// A matrix search's frontier rows from both runs, and their overlay.
fn write_frontier(report: &mut Report, c: &Comparison, b: &Run) -> fmt::Result {
    if c.frontier.is_empty() {
        return Ok(());
    }
    let names = b.record.search.scenario_names();
    let [first, second, ..] = names.as_slice() else {
        return Ok(());
    };
    let md = &mut report.markdown;
    md.push_str("\n## Combined frontier\n\n");
    writeln!(
        md,
        "| {first} | Highest {second} A | Highest {second} B | Change |"
    )?;
    writeln!(md, "|---|---|---|---|")?;
    for r in &c.frontier {
        writeln!(
            md,
            "| {} | {} | {} | {} |",
            format_rate(r.row_rate),
            rate(r.best_a),
            rate(r.best_b),
            delta(r.best_a, r.best_b)
        )?;
    }
    report.charts.push((
        "compare-frontier.svg".into(),
        svg::frontier_overlay(first, second, &c.frontier),
    ));
    writeln!(md, "\n![frontier, both runs](compare-frontier.svg)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::compare::compare;

    #[test]
    fn a_regression_reads_as_one() {
        let a: Run = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/sample-run.json"
            ))
            .expect("tests/data/sample-run.json"),
        )
        .expect("the sample run parses");
        let mut b = a.clone();
        b.record.id = "b".into();
        if let Some(s) = b.levels[0].scenarios.first_mut() {
            s.latency.p95 = Some(0.090);
        }
        let c = compare(&a, &b, 0.1).expect("comparable");
        let r = render(&c, &a, &b);
        assert!(
            r.markdown.contains("**Verdict:** **REGRESSED**"),
            "{}",
            r.markdown
        );
        assert!(
            r.markdown
                .contains("| 10/s | pass | pass | 55ms | 90ms | +64% |"),
            "{}",
            r.markdown
        );
        assert!(
            r.markdown.contains("- 10/s: p95 55ms → 90ms (+64%)"),
            "{}",
            r.markdown
        );
        let (name, chart) = &r.charts[0];
        assert_eq!(name, "compare-sleepy-latency.svg");
        assert!(
            chart.contains("p95 A")
                && chart.contains("p95 B")
                && chart.contains("stroke-dasharray=\"8,4\"")
        );
    }
}
