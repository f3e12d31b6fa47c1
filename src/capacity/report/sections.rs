//! The report's sections for a run and for each scenario searched on its own, in the
//! order they appear.

use super::analysis::recommendations;
use super::cells::{cpu, escape, mib, ms, pct, rate_num, verdict};
use super::svg;
use crate::capacity::findings::{frontier, Finding};
use crate::capacity::findings::{isolated_levels, Levels};
use crate::capacity::record::{Phase, Run, RunStatus, Verdict};
use crate::capacity::store::format_utc;
use crate::config::search::SearchMode;
use crate::units::{format_duration, format_rate};
use std::fmt::{self, Write as _};

/// The title, the run's facts, the method, and what "at the limit" means per scenario.
pub(super) fn header(md: &mut String, run: &Run) -> fmt::Result {
    let r = &run.record;
    writeln!(md, "# Performance Baseline Report — {}\n", r.name)?;
    let end = r
        .finished_at
        .map(format_utc)
        .unwrap_or_else(|| "not finished (interrupted or still running)".into());
    writeln!(md, "**Run:** `{}`  ", r.id)?;
    writeln!(
        md,
        "**Test date:** {} → {}  ",
        format_utc(r.started_at),
        end
    )?;
    writeln!(
        md,
        "**Status:** {}, {} levels  ",
        match r.status {
            RunStatus::Complete => "complete",
            RunStatus::Running => "incomplete",
        },
        run.levels.len()
    )?;
    writeln!(
        md,
        "**Environment:** {} (soakd {})  ",
        r.machine, r.soakd_version
    )?;
    writeln!(
        md,
        "**Method:** discrete levels, each held {} with the first {} excluded as warm-up; latency from HdrHistogram over the window, measured from each operation's intended start. A level **fails** when a scenario breaks its SLO; it is **invalid** when soakd itself could not offer it (schedule lag p99 over {} or achieved below {:.0}% of offered) — neither passed nor failed.\n",
        format_duration(r.search.each),
        format_duration(r.search.warmup),
        format_duration(r.search.lag_limit),
        r.search.min_achieved * 100.0
    )?;
    let shards = run
        .levels
        .iter()
        .flat_map(|l| l.scenarios.iter().filter_map(|s| s.shards))
        .max();
    if let Some(n) = shards {
        writeln!(
            md,
            "**Shards:** judged from Prometheus's sums over {n} shard{} (`verdicts.prometheus`): the counts, errors, drops, in-flight figures and latency are every shard's together (latency at the histogram buckets' resolution); soakd's CPU, runtime delay, request phases, pool and buffer are the leader's own.\n",
            if n == 1 { "" } else { "s" }
        )?;
    }
    writeln!(md, "| Scenario | Target | System at limit when |")?;
    writeln!(md, "|---|---|---|")?;
    for s in &r.search.scenarios {
        let slo = r.slos.get(&s.name).cloned().unwrap_or_default();
        let mut lim = Vec::new();
        if let Some(e) = slo.error_rate {
            lim.push(format!("error rate > {}", pct(e)));
        }
        for (n, v) in [
            ("p50", slo.p50),
            ("p95", slo.p95),
            ("p99", slo.p99),
            ("event E2E p95", slo.e2e_p95),
        ] {
            if let Some(v) = v {
                lim.push(format!("{n} > {}", ms(Some(v))));
            }
        }
        writeln!(
            md,
            "| {} | {} | {} |",
            s.name,
            r.targets.get(&s.name).map(String::as_str).unwrap_or("?"),
            lim.join(", ")
        )?;
    }
    Ok(())
}

/// The executive summary: each scenario's maximum sustainable rate and why the next
/// level broke — or, for a combined search, the frontier.
pub(super) fn summary(md: &mut String, run: &Run, found: &[Finding]) -> fmt::Result {
    let r = &run.record;
    md.push_str("\n---\n\n## Executive Summary\n\n");
    if r.search.mode != SearchMode::Matrix {
        md.push_str("Maximum sustainable capacity (highest level within SLO):\n\n");
        for f in found {
            capacity_line(md, run, f)?;
        }
    } else if let (Some(a), Some(b)) = (r.search.scenarios.first(), r.search.scenarios.get(1)) {
        writeln!(
            md,
            "Combined load: for each {} rate, the highest {} rate within both SLOs:\n",
            a.name, b.name
        )?;
        for (ra, rb) in frontier(run) {
            writeln!(
                md,
                "- {} {} + {} {}",
                a.name,
                format_rate(ra),
                b.name,
                rb.map(format_rate)
                    .unwrap_or_else(|| "— (none passed)".into())
            )?;
        }
    }
    md.push('\n');
    Ok(())
}

/// One scenario's line of the summary: its best level, where it broke, and whether soakd
/// could not offer a level.
fn capacity_line(md: &mut String, run: &Run, f: &Finding) -> fmt::Result {
    let levels = isolated_levels(run, &f.scenario);
    let best = f
        .max_sustainable
        .and_then(|m| levels.iter().find(|(_, s)| s.offered_rate == m));
    match (f.max_sustainable, best) {
        (Some(m), Some((_, s))) => write!(
            md,
            "- **{}: {}** (p95 {}, error rate {})",
            f.scenario,
            format_rate(m),
            ms(s.latency.p95),
            pct(s.error_ratio)
        )?,
        _ => write!(md, "- **{}: no level passed**", f.scenario)?,
    }
    if let Some(x) = f.first_failure {
        let why = levels
            .iter()
            .find(|(_, s)| s.offered_rate == x)
            .map(|(_, s)| s.reason.clone())
            .unwrap_or_default();
        write!(md, "; breaks at {} ({why})", format_rate(x))?;
    }
    if let Some(x) = f.first_invalid {
        write!(
            md,
            "; soakd could not offer {} (invalid level: the limit may be higher)",
            format_rate(x)
        )?;
    }
    if f.first_failure.is_none() && f.first_invalid.is_none() {
        md.push_str("; no level failed (the limit is above the ladder)");
    }
    md.push('\n');
    Ok(())
}

/// The strongest bottleneck note of every scenario that hit a limit.
pub(super) fn primary_bottlenecks(
    md: &mut String,
    found: &[Finding],
    notes: &[Vec<String>],
) -> fmt::Result {
    for (f, n) in found.iter().zip(notes) {
        let limited = f.first_failure.is_some() || f.first_invalid.is_some();
        if let (Some(n), true) = (n.first(), limited) {
            writeln!(md, "Primary bottleneck for {}: {}\n", f.scenario, n)?;
        }
    }
    Ok(())
}

/// Everything about one scenario searched on its own: results, generator and resources,
/// database, errors, capacity, analysis, charts.
pub(super) fn scenario(
    md: &mut String,
    charts: &mut Vec<(String, String)>,
    run: &Run,
    i: usize,
    name: &str,
    f: &Finding,
    notes: &[String],
) -> fmt::Result {
    let levels = isolated_levels(run, name);
    writeln!(md, "---\n\n## Scenario {}: {} (isolated)\n", i + 1, name)?;
    if levels.is_empty() {
        md.push_str("No level measured yet.\n\n");
        return Ok(());
    }
    results(md, run, name, &levels)?;
    generator(md, &levels)?;
    phases(md, &levels)?;
    database(md, &levels)?;
    errors_by_kind(md, &levels)?;
    max_capacity(md, run, name, &levels, f)?;
    bottleneck_analysis(md, notes, f)?;
    scenario_charts(md, charts, run, name, &levels, f)
}

/// The seed's unit for a scenario: RPS for the API, EPS for events (buffered writes, or
/// the gRPC event handler), QPS for direct database load.
fn unit(run: &Run, name: &str, levels: &Levels) -> &'static str {
    let buffered = levels.iter().any(|(_, x)| x.buffer.is_some());
    let target = run
        .record
        .targets
        .get(name)
        .map(String::as_str)
        .unwrap_or("");
    if buffered || target.ends_with("(grpc)") {
        "EPS"
    } else if target.ends_with("(postgres)") {
        "QPS"
    } else {
        "RPS"
    }
}

/// The seed's results table: latency percentiles, errors, the target's CPU and memory.
fn results(md: &mut String, run: &Run, name: &str, levels: &Levels) -> fmt::Result {
    let target_known = levels.iter().any(|(l, _)| l.target.is_some());
    let measured = run.record.search.target_process.is_some();
    md.push_str("### Test Results\n\n");
    writeln!(
        md,
        "| {} | p50 | p95 | p99 | Error Rate | CPU % | Memory | p99.9 | Achieved | Verdict |",
        unit(run, name, levels)
    )?;
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for (l, x) in levels {
        let (c, m) = match &l.target {
            Some(t) => (cpu(t.cpu_percent), mib(t.rss_bytes)),
            None if measured => ("–".into(), "–".into()),
            None => (cpu(l.soakd.cpu_percent), mib(l.soakd.rss_bytes)),
        };
        writeln!(
            md,
            "| {}{} | {} | {} | {} | {} | {} | {} | {} | {:.1}/s | {} |",
            rate_num(x.offered_rate),
            if l.spec.phase == Phase::Refine {
                "ʳ"
            } else {
                ""
            },
            ms(x.latency.p50),
            ms(x.latency.p95),
            ms(x.latency.p99),
            pct(x.error_ratio),
            c,
            m,
            ms(x.latency.p999),
            x.achieved_rate,
            verdict(x.verdict)
        )?;
    }
    writeln!(
        md,
        "\nCPU % (of one CPU) and Memory (peak RSS) are {}. ʳ: a bisection level between the last good and the first bad step.\n",
        if target_known {
            "the target process's"
        } else if measured {
            "not measured: this scenario's target is not the configured `target_process`"
        } else {
            "soakd's own (no `target_process` configured)"
        }
    )
}

/// What soakd offered and what it cost: achieved rate, drops, lag, concurrency, its own
/// CPU, its runtime's scheduling delay and memory, the pool and the buffered writer.
fn generator(md: &mut String, levels: &Levels) -> fmt::Result {
    md.push_str("### Generator, pool and buffer\n\n");
    md.push_str("| Offered | Achieved | Dropped | Lag p99 | In flight (peak/max) | soakd CPU % | Runtime delay p99 | soakd RSS | Pool in use (peak/max) | Acquire p95 | Buffer peak | Flush p95 | Event E2E p95 |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (l, x) in levels {
        let pool = x
            .pool
            .as_ref()
            .map(|p| format!("{}/{}", p.in_use_peak, p.max))
            .unwrap_or_else(|| "–".into());
        let b = x.buffer.as_ref();
        writeln!(
            md,
            "| {} | {:.1}/s | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            format_rate(x.offered_rate),
            x.achieved_rate,
            x.dropped,
            ms(x.lag_p99),
            x.in_flight_peak,
            x.max_in_flight,
            cpu(l.soakd.cpu_percent),
            ms(l.soakd.runtime_delay_p99),
            mib(l.soakd.rss_bytes),
            pool,
            ms(x.pool.as_ref().and_then(|p| p.acquire_p95)),
            b.map(|b| format!("{}/{}", b.peak, b.capacity))
                .unwrap_or_else(|| "–".into()),
            ms(b.and_then(|b| b.flush_p95)),
            ms(b.and_then(|b| b.e2e_p95)),
        )?;
    }
    md.push('\n');
    Ok(())
}

/// Where an HTTP operation's time went at each level (mean per operation by phase), for
/// scenarios on the HTTP/1.1 fast path: a knee in `first_byte` is the server, in `queue`
/// the client's connection cap, in `connect` connection churn or the network.
fn phases(md: &mut String, levels: &Levels) -> fmt::Result {
    if levels.iter().all(|(_, x)| x.phases.is_empty()) {
        return Ok(());
    }
    md.push_str("### Where the time went (HTTP, mean per operation)\n\n| Offered | Queue | Connect | TLS | First byte | Body | Latency p50 |\n|---|---|---|---|---|---|---|\n");
    for (_, x) in levels {
        let cell = |p: &str| ms(x.phases.get(p).copied());
        writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            format_rate(x.offered_rate),
            cell("queue"),
            cell("connect"),
            cell("tls"),
            cell("first_byte"),
            cell("body"),
            ms(x.latency.p50),
        )?;
    }
    md.push_str("\nA phase that never happened at a level is –. The phases add up to the operation's latency less its schedule lag; p50 latency beside them for scale.\n\n");
    Ok(())
}

/// The database per level, where statistics were collected.
fn database(md: &mut String, levels: &Levels) -> fmt::Result {
    if !levels.iter().any(|(l, _)| l.postgres.is_some()) {
        return Ok(());
    }
    md.push_str("### Database\n\n| Offered | Transactions/s | Cache hit | Dead tuples (Δ) | Connections by state | Slowest statement (mean) |\n|---|---|---|---|---|---|\n");
    for (l, x) in levels {
        let Some(pg) = &l.postgres else { continue };
        let conns: Vec<String> = pg
            .connections_by_state
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let top = pg
            .top_statements
            .first()
            .map(|t| {
                let q: String = t.query.chars().take(60).collect();
                format!("{:.2} ms `{}`", t.mean_ms, escape(&q.replace('`', "'")))
            })
            .unwrap_or_else(|| "–".into());
        writeln!(
            md,
            "| {} | {:.0} | {} | {} ({:+}) | {} | {} |",
            format_rate(x.offered_rate),
            pg.transactions_per_second,
            pg.cache_hit_ratio.map(pct).unwrap_or_else(|| "–".into()),
            pg.dead_tuples,
            pg.dead_tuples_delta,
            conns.join(", "),
            top
        )?;
    }
    md.push('\n');
    Ok(())
}

/// Error counts by kind at the levels that had any.
fn errors_by_kind(md: &mut String, levels: &Levels) -> fmt::Result {
    let with_errors: Vec<_> = levels
        .iter()
        .filter(|(_, x)| !x.errors.is_empty())
        .collect();
    if with_errors.is_empty() {
        return Ok(());
    }
    md.push_str("### Errors by kind\n\n| Offered | Errors |\n|---|---|\n");
    for (_, x) in with_errors {
        let e: Vec<String> = x.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(md, "| {} | {} |", format_rate(x.offered_rate), e.join(", "))?;
    }
    md.push('\n');
    Ok(())
}

/// The recommended rate (highest within SLO) and a conservative one (error rate < 0.1 %
/// and p95 at most half its SLO).
fn max_capacity(
    md: &mut String,
    run: &Run,
    name: &str,
    levels: &Levels,
    f: &Finding,
) -> fmt::Result {
    md.push_str("### Maximum Capacity\n\n");
    let Some(m) = f.max_sustainable else {
        md.push_str("- No level passed: the limit is below the first level.\n");
        return Ok(());
    };
    writeln!(
        md,
        "- **Recommended:** {} (highest level within SLO)",
        format_rate(m)
    )?;
    let slo_p95 = run.record.slos.get(name).and_then(|x| x.p95);
    let conservative = levels
        .iter()
        .filter(|(_, x)| {
            x.verdict == Some(Verdict::Pass)
                && x.error_ratio < 0.001
                && match (slo_p95, x.latency.p95) {
                    (Some(l), Some(p)) => p <= l / 2.0,
                    _ => true,
                }
        })
        .map(|(_, x)| x.offered_rate)
        .fold(None, |a: Option<f64>, r| Some(a.map_or(r, |a| a.max(r))));
    match conservative {
        Some(c) => writeln!(
            md,
            "- **Conservative:** {} (error rate < 0.1 % and p95 at most half its SLO)",
            format_rate(c)
        ),
        None => {
            md.push_str("- **Conservative:** none of the passing levels had error rate < 0.1 % with p95 at most half its SLO\n");
            Ok(())
        }
    }
}

/// The bottleneck notes, then the recommendations they lead to.
fn bottleneck_analysis(md: &mut String, notes: &[String], f: &Finding) -> fmt::Result {
    md.push_str("\n### Bottleneck Analysis\n\n");
    if notes.is_empty() {
        md.push_str("No evidence collected for this scenario.\n");
    }
    for n in notes {
        writeln!(md, "- {n}")?;
    }
    md.push_str("\n### Optimization Recommendations\n\n");
    for (k, rec) in recommendations(notes, f).iter().enumerate() {
        writeln!(md, "{}. {rec}", k + 1)?;
    }
    Ok(())
}

/// Latency and errors against offered load (and the pool, where there is one), linked
/// from the Markdown and added to the report's charts.
fn scenario_charts(
    md: &mut String,
    charts: &mut Vec<(String, String)>,
    run: &Run,
    name: &str,
    levels: &Levels,
    f: &Finding,
) -> fmt::Result {
    let knee = f.first_failure.or(f.first_invalid);
    let slo = run.record.slos.get(name);
    let lat = svg::latency(name, levels, slo.and_then(|x| x.p95), knee);
    let err = svg::errors(name, levels, slo.and_then(|x| x.error_rate), knee);
    writeln!(
        md,
        "\n![latency vs offered load]({name}-latency.svg)\n![error ratio vs offered load]({name}-errors.svg)"
    )?;
    charts.push((format!("{name}-latency.svg"), lat));
    charts.push((format!("{name}-errors.svg"), err));
    if levels.iter().any(|(_, x)| x.pool.is_some()) {
        charts.push((format!("{name}-pool.svg"), svg::pool(name, levels, knee)));
        writeln!(md, "![pool in use vs max]({name}-pool.svg)")?;
    }
    md.push('\n');
    Ok(())
}

/// Every level in the order it ran, with its verdict and reason.
pub(super) fn all_levels(md: &mut String, run: &Run) -> fmt::Result {
    md.push_str(
        "---\n\n## All Levels\n\n| # | Phase | Level | Verdict | Reason |\n|---|---|---|---|---|\n",
    );
    for l in &run.levels {
        writeln!(
            md,
            "| {} | {:?} | {} | {} | {} |",
            l.seq + 1,
            l.spec.phase,
            l.spec.label(),
            verdict(Some(l.verdict)),
            escape(&l.reason)
        )?;
    }
    Ok(())
}
