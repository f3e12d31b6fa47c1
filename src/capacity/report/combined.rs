//! The report of a combined (matrix) search: two scenarios' rates against each other,
//! the cell grid, every cell's measurements, the frontier chart and what bounded it.

use super::cells::{cpu, escape, mib, ms, pct, rate_num, verdict};
use super::svg;
use crate::capacity::findings::frontier;
use crate::capacity::record::{LevelResult, Run, Verdict};
use crate::units::format_rate;
use std::fmt::{self, Write as _};

/// The combined-load section: grid, results, frontier chart, bottleneck analysis.
pub(super) fn section(
    md: &mut String,
    charts: &mut Vec<(String, String)>,
    run: &Run,
) -> fmt::Result {
    let s = &run.record.search.scenarios;
    let (Some(a), Some(b)) = (s.first(), s.get(1)) else {
        return Ok(());
    };
    let (a, b) = (a.name.as_str(), b.name.as_str());
    writeln!(md, "---\n\n## Combined Load ({a} × {b})\n")?;
    grid(md, run, a, b)?;
    results(md, run, a, b)?;
    let rows = frontier(run);
    let points: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|(ra, rb)| rb.map(|rb| (*ra, rb)))
        .collect();
    let knee = rows.iter().find(|(_, rb)| rb.is_none()).map(|(ra, _)| *ra);
    charts.push((
        "frontier.svg".to_string(),
        svg::frontier(a, b, points.clone(), knee),
    ));
    md.push_str("![combined capacity frontier](frontier.svg)\n\n");
    analysis(md, run, a, b, &rows, &points)
}

/// The level holding rate `ra` of scenario `a` and `rb` of `b`, if it ran.
fn cell<'r>(run: &'r Run, a: &str, ra: f64, b: &str, rb: f64) -> Option<&'r LevelResult> {
    run.levels.iter().find(|l| {
        l.spec.rates.iter().any(|(n, v)| n == a && *v == ra)
            && l.spec.rates.iter().any(|(n, v)| n == b && *v == rb)
    })
}

/// Rows are `a`'s rates, columns `b`'s; each cell its verdict and every scenario's p95.
fn grid(md: &mut String, run: &Run, a: &str, b: &str) -> fmt::Result {
    let mut cols: Vec<f64> = Vec::new();
    let mut rows: Vec<f64> = Vec::new();
    for l in &run.levels {
        for (n, v) in &l.spec.rates {
            if n == a && !rows.contains(v) {
                rows.push(*v);
            }
            if n == b && !cols.contains(v) {
                cols.push(*v);
            }
        }
    }
    write!(md, "| {a} \\ {b} |")?;
    for c in &cols {
        write!(md, " {} |", format_rate(*c))?;
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(cols.len()));
    md.push('\n');
    for ra in &rows {
        write!(md, "| {} |", format_rate(*ra))?;
        for rb in &cols {
            match cell(run, a, *ra, b, *rb) {
                Some(l) => {
                    let p: Vec<String> = l
                        .scenarios
                        .iter()
                        .map(|x| format!("{} p95 {}", x.scenario, ms(x.latency.p95)))
                        .collect();
                    write!(md, " {} ({}) |", verdict(Some(l.verdict)), p.join(", "))?;
                }
                None => md.push_str(" not run |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
    Ok(())
}

/// Every cell with the seed's columns, per scenario.
fn results(md: &mut String, run: &Run, a: &str, b: &str) -> fmt::Result {
    md.push_str("### Test Results\n\n");
    writeln!(
        md,
        "| {a} | {b} | Scenario | p50 | p95 | p99 | Error Rate | CPU % | Memory | Achieved | Verdict |"
    )?;
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for l in &run.levels {
        for x in &l.scenarios {
            let (c, m) = match &l.target {
                Some(t) => (cpu(t.cpu_percent), mib(t.rss_bytes)),
                None => (cpu(l.soakd.cpu_percent), mib(l.soakd.rss_bytes)),
            };
            writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1}/s | {} |",
                rate_num(l.spec.rate_of(a)),
                rate_num(l.spec.rate_of(b)),
                x.scenario,
                ms(x.latency.p50),
                ms(x.latency.p95),
                ms(x.latency.p99),
                pct(x.error_ratio),
                c,
                m,
                x.achieved_rate,
                verdict(x.verdict)
            )?;
        }
    }
    writeln!(
        md,
        "\nCPU % (of one CPU) and Memory (peak RSS) are {}.\n",
        if run.levels.iter().any(|l| l.target.is_some()) {
            "the target process's"
        } else {
            "soakd's own (no `target_process` configured)"
        }
    )
}

/// Whether the two paths share one budget (their passing sum stays within 1.5× along
/// the frontier), and why each row ended: its first failing cell.
fn analysis(
    md: &mut String,
    run: &Run,
    a: &str,
    b: &str,
    rows: &[(f64, Option<f64>)],
    points: &[(f64, f64)],
) -> fmt::Result {
    md.push_str("### Bottleneck Analysis\n\n");
    let sums: Vec<f64> = points.iter().map(|(ra, rb)| ra + rb).collect();
    let lo = sums.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = sums.iter().copied().fold(0.0, f64::max);
    if sums.len() >= 2 && hi <= 1.5 * lo {
        writeln!(
            md,
            "- **One shared limit**: along the frontier {a} + {b} stays between {} and {} operations/s whatever the mix — both paths draw on the same resource, so plan capacity for their sum.",
            rate_num(lo),
            rate_num(hi)
        )?;
    } else if sums.len() >= 2 {
        writeln!(
            md,
            "- The passing sum of {a} + {b} ranges from {} to {} operations/s along the frontier: the paths do not share one simple budget.",
            rate_num(lo),
            rate_num(hi)
        )?;
    }
    for &(ra, _) in rows {
        let first_bad = run.levels.iter().find(|l| {
            l.verdict != Verdict::Pass && l.spec.rates.iter().any(|(n, v)| n == a && *v == ra)
        });
        if let Some(l) = first_bad {
            let cpu_note = l
                .target
                .as_ref()
                .and_then(|t| t.cpu_percent)
                .map(|c| format!(" (target CPU {c:.0}% of one CPU)"))
                .unwrap_or_default();
            writeln!(
                md,
                "- At {}: {}{cpu_note}.",
                l.spec.label(),
                escape(&l.reason)
            )?;
        }
    }
    md.push('\n');
    Ok(())
}
