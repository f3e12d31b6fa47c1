//! `soakd report`: a stored run as the seed's performance-baseline document (Markdown)
//! plus SVG charts — latency percentiles and error ratio against offered load with the
//! knee marked, and pool in-use against its maximum per level.

use super::store::format_utc;
use super::{
    findings, frontier, Finding, LevelResult, Phase, Run, RunStatus, ScenarioLevel, Verdict,
};
use crate::config::search::SearchMode;
use crate::units::format_rate;
use std::fmt::Write as _;

/// A rendered report: the Markdown text and the charts it links, by file name.
#[derive(Debug, Clone)]
pub struct Report {
    pub markdown: String,
    pub charts: Vec<(String, String)>,
}

fn ms(s: Option<f64>) -> String {
    s.map(super::fmt_latency).unwrap_or_else(|| "–".into())
}

fn pct(r: f64) -> String {
    if r == 0.0 {
        "0%".into()
    } else if r < 0.001 {
        format!("{:.3}%", r * 100.0)
    } else {
        format!("{:.2}%", r * 100.0)
    }
}

fn mib(b: Option<u64>) -> String {
    match b {
        Some(b) => format!("{:.0}MB", b as f64 / 1_048_576.0),
        None => "–".into(),
    }
}

fn cpu(c: Option<f64>) -> String {
    c.map(|c| format!("{c:.0}%")).unwrap_or_else(|| "–".into())
}

fn rate_num(r: f64) -> String {
    let s = format_rate(r);
    s.trim_end_matches("/s").to_string()
}

/// The levels where `scenario` was the only searched scenario under load, by rate.
fn isolated_levels<'a>(run: &'a Run, scenario: &str) -> Vec<(&'a LevelResult, &'a ScenarioLevel)> {
    let mut v: Vec<(&LevelResult, &ScenarioLevel)> = run
        .levels
        .iter()
        .filter(|l| l.spec.phase != Phase::Matrix)
        .filter_map(|l| match l.scenarios.as_slice() {
            [s] if s.scenario == scenario => Some((l, s)),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.1.offered_rate.total_cmp(&b.1.offered_rate));
    v
}

fn verdict_cell(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Pass) => "pass",
        Some(Verdict::Fail) => "**FAIL**",
        Some(Verdict::Invalid) => "*invalid*",
        None => "–",
    }
}

/// Evidence-based bottleneck notes for one scenario, strongest first.
fn bottlenecks(levels: &[(&LevelResult, &ScenarioLevel)], cpus: usize, f: &Finding) -> Vec<String> {
    let mut out = Vec::new();
    let at = |r: f64| format_rate(r);
    // The level examined: the first failing one, else the highest measured.
    let focus = levels
        .iter()
        .find(|(_, s)| s.verdict == Some(Verdict::Fail))
        .or(levels.last());
    let Some((fl, fs)) = focus else {
        return out;
    };
    // Where latency started rising: first level whose p95 is over twice the first
    // level's.
    let base_p95 = levels.first().and_then(|(_, s)| s.latency.p95);
    let rise = levels.iter().find(|(_, s)| {
        matches!((base_p95, s.latency.p95), (Some(b), Some(p)) if p > 2.0 * b && p > 0.005)
    });
    // Pool saturation.
    let sat = levels.iter().find(|(_, s)| {
        s.pool
            .as_ref()
            .is_some_and(|p| p.max > 0 && p.in_use_peak >= p.max)
    });
    if let Some((_, s)) = sat {
        if let Some(p) = &s.pool {
            let order = match rise {
                Some((_, r)) if r.offered_rate > s.offered_rate => {
                    format!(", before latency rose (p95 doubled only at {})", at(r.offered_rate))
                }
                Some((_, r)) if r.offered_rate == s.offered_rate => {
                    ", at the same level where latency rose".to_string()
                }
                Some((_, r)) => format!(
                    ", after latency had already risen (at {}): the pool is a symptom, not the cause",
                    at(r.offered_rate)
                ),
                None => String::new(),
            };
            out.push(format!(
                "**Connection pool saturated** at {}: {}/{} connections in use, acquire p95 {}, {} acquire timeouts{order}.",
                at(s.offered_rate),
                p.in_use_peak,
                p.max,
                ms(p.acquire_p95),
                p.acquire_timeouts
            ));
        }
    }
    if let Some(b) = &fs.buffer {
        if b.capacity > 0 && (b.peak as f64 >= 0.8 * b.capacity as f64 || b.dropped_events > 0) {
            out.push(format!(
                "**Event buffer near its limit** at {}: peak {} of {} entries, {} events dropped, flush p95 {}.",
                at(fs.offered_rate),
                b.peak,
                b.capacity,
                b.dropped_events,
                ms(b.flush_p95)
            ));
        } else if let (Some(fp), Some(e2e)) = (b.flush_p95, b.e2e_p95) {
            out.push(format!(
                "Buffered writes kept up at {}: flush p95 {}, event E2E p95 {}, buffer peak {} of {}.",
                at(fs.offered_rate),
                ms(Some(fp)),
                ms(Some(e2e)),
                b.peak,
                b.capacity
            ));
        }
    }
    if let Some(t) = &fl.target {
        if let Some(c) = t.cpu_percent {
            let of_all = c / (cpus.max(1) as f64);
            if of_all >= 80.0 {
                out.push(format!(
                    "**Target CPU-bound** at {}: {c:.0}% of one CPU ({of_all:.0}% of the machine's {cpus}).",
                    at(fs.offered_rate)
                ));
            } else {
                out.push(format!(
                    "Target CPU at {}: {c:.0}% of one CPU ({of_all:.0}% of {cpus}) — not the limit.",
                    at(fs.offered_rate)
                ));
            }
        }
    }
    // The knee itself: how latency and concurrency moved from the lightest level.
    if let (Some((_, first)), true) = (levels.first(), fs.verdict == Some(Verdict::Fail)) {
        if let (Some(a), Some(b)) = (first.latency.p95, fs.latency.p95) {
            out.push(format!(
                "Latency knee: p95 went from {} at {} to {} at {} (×{:.1}) {}; operations in flight peaked at {} (from {}).{}",
                ms(Some(a)),
                at(first.offered_rate),
                ms(Some(b)),
                at(fs.offered_rate),
                b / a.max(1e-9),
                if first.error_ratio == 0.0 && fs.error_ratio == 0.0 {
                    "with no errors".to_string()
                } else {
                    format!(
                        "while errors went from {} to {}",
                        pct(first.error_ratio),
                        pct(fs.error_ratio)
                    )
                },
                fs.in_flight_peak,
                first.in_flight_peak,
                if fs.error_ratio < 0.001 && b > 2.0 * a {
                    " Latency rose without errors: requests queue at the target (a saturated resource — workers, a concurrency limit, connections), they are not being rejected."
                } else {
                    ""
                }
            ));
        }
    }
    if let Some(c) = fl.soakd.cpu_percent {
        if c / (cpus.max(1) as f64) >= 50.0 {
            out.push(format!(
                "soakd itself used {c:.0}% of one CPU at {} on this {cpus}-CPU machine: it competes with the target for CPU; run it on another host for higher levels.",
                at(fs.offered_rate)
            ));
        }
    }
    if let Some(pg) = &fl.postgres {
        let active = pg.connections_by_state.get("active").copied().unwrap_or(0);
        let total: i64 = pg.connections_by_state.values().sum();
        let mut s = format!(
            "Database at {}: {:.0} transactions/s, {total} connections ({active} active){}",
            at(fs.offered_rate),
            pg.transactions_per_second,
            pg.max_connections
                .map(|m| format!(" of max_connections {m}"))
                .unwrap_or_default()
        );
        if let Some(h) = pg.cache_hit_ratio {
            let _ = write!(s, ", cache hit ratio {:.2}%", h * 100.0);
        }
        if let Some(top) = pg.top_statements.first() {
            let _ = write!(
                s,
                "; slowest statement by mean time {:.2} ms over {} calls: `{}`",
                top.mean_ms,
                top.calls,
                top.query.replace('`', "'")
            );
            // Slow *and* busy: it keeps at least half a backend occupied. A batched
            // upsert taking 25 ms once a second is not a bottleneck.
            let busy = top.calls as f64 * top.mean_ms / 1000.0 / fl.window_seconds.max(1e-9);
            if top.mean_ms >= 10.0 && busy >= 0.5 {
                s = format!(
                    "**Slow statement** ({:.1} ms mean, {busy:.1} backends busy with it). {s}",
                    top.mean_ms
                );
            }
        }
        s.push('.');
        if pg
            .max_connections
            .is_some_and(|m| total as f64 >= 0.9 * m as f64)
        {
            s = format!("**Database connections near max_connections.** {s}");
        }
        out.push(s);
    }
    if fs.verdict == Some(Verdict::Fail) {
        if let Some((k, n)) = fs.errors.iter().max_by_key(|(_, n)| **n) {
            out.push(format!(
                "Dominant error at {}: `{k}` ({n} of {} operations).",
                at(fs.offered_rate),
                fs.completed
            ));
        }
    }
    if let Some(r) = f.first_invalid {
        out.push(format!(
            "**soakd could not offer {}** (level marked invalid, not a target limit): {}",
            at(r),
            levels
                .iter()
                .find(|(_, s)| s.offered_rate == r)
                .map(|(_, s)| s.reason.clone())
                .unwrap_or_default()
        ));
    }
    // Findings first (bold), then the knee, then context.
    out.sort_by_key(|n| {
        if n.starts_with("**") {
            0
        } else if n.starts_with("Latency knee") {
            1
        } else {
            2
        }
    });
    out
}

fn recommendations(notes: &[String], f: &Finding) -> Vec<String> {
    let has = |k: &str| notes.iter().any(|n| n.contains(k));
    let mut out = Vec::new();
    if has("Connection pool saturated") && !has("symptom") {
        out.push("Raise the connection pool (max_connections) or put PgBouncer in front; alert on pool utilization > 80 % (`DatabaseConnectionPoolHigh`).".to_string());
    }
    if has("Event buffer near its limit") {
        out.push("Flush more often or in larger batches, or raise buffer_size_limit; watch `soakd_buffer_events / soakd_buffer_capacity_events`.".to_string());
    }
    if has("Target CPU-bound") {
        out.push("The target is CPU-bound: give it more CPU or scale it horizontally behind a load balancer.".to_string());
    }
    if has("Database connections near max_connections") {
        out.push(
            "Raise PostgreSQL max_connections or pool connections in front of it.".to_string(),
        );
    }
    if has("**Slow statement**") {
        out.push(
            "Check the slowest statement's plan (EXPLAIN ANALYZE) and its indexes.".to_string(),
        );
    }
    if f.first_invalid.is_some() {
        out.push("Raise the scenario's max_in_flight or run soakd on a separate host (or shard it with `--shard i/n`) to test above the invalid level.".to_string());
    }
    if has("competes with the target") {
        out.push(
            "Run soakd and the target on separate machines: here they shared the CPUs.".to_string(),
        );
    }
    if has("requests queue at the target") && out.is_empty() {
        out.push("Requests queue at the target without errors: find the saturated resource (worker pool, concurrency limit, connection pool) from the target's own metrics at the knee, and raise it or scale out.".to_string());
    }
    if f.first_failure.is_none() && f.first_invalid.is_none() {
        out.push("No level failed: extend the ladder to find the limit.".to_string());
    }
    if out.is_empty() {
        out.push("Investigate the dominant error kind and the latency breakdown at the first failing level.".to_string());
    }
    out
}

/// Renders a run.
pub fn render(run: &Run) -> Report {
    let r = &run.record;
    let mut md = String::new();
    let mut charts = Vec::new();
    let _ = writeln!(md, "# Performance Baseline Report — {}\n", r.name);
    let end = r
        .finished_at
        .map(format_utc)
        .unwrap_or_else(|| "not finished (interrupted or still running)".into());
    let _ = writeln!(md, "**Run:** `{}`  ", r.id);
    let _ = writeln!(
        md,
        "**Test date:** {} → {}  ",
        format_utc(r.started_at),
        end
    );
    let _ = writeln!(
        md,
        "**Status:** {}, {} levels  ",
        match r.status {
            RunStatus::Complete => "complete",
            RunStatus::Running => "incomplete",
        },
        run.levels.len()
    );
    let _ = writeln!(
        md,
        "**Environment:** {} (soakd {})  ",
        r.machine, r.soakd_version
    );
    let _ = writeln!(
        md,
        "**Method:** discrete levels, each held {} with the first {} excluded as warm-up; latency from HdrHistogram over the window, measured from each operation's intended start. A level **fails** when a scenario breaks its SLO; it is **invalid** when soakd itself could not offer it (schedule lag p99 over {} or achieved below {:.0}% of offered) — neither passed nor failed.\n",
        crate::units::format_duration(r.search.each),
        crate::units::format_duration(r.search.warmup),
        crate::units::format_duration(r.search.lag_limit),
        r.search.min_achieved * 100.0
    );
    let _ = writeln!(md, "| Scenario | Target | System at limit when |");
    let _ = writeln!(md, "|---|---|---|");
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
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            s.name,
            r.targets.get(&s.name).map(String::as_str).unwrap_or("?"),
            lim.join(", ")
        );
    }
    md.push_str("\n---\n\n## Executive Summary\n\n");
    let found = findings(run);
    let matrix = r.search.mode == SearchMode::Matrix;
    if !matrix {
        md.push_str("Maximum sustainable capacity (highest level within SLO):\n\n");
        for f in &found {
            let levels = isolated_levels(run, &f.scenario);
            let best = f
                .max_sustainable
                .and_then(|m| levels.iter().find(|(_, s)| s.offered_rate == m));
            let mut line = match (f.max_sustainable, best) {
                (Some(m), Some((_, s))) => format!(
                    "- **{}: {}** (p95 {}, error rate {})",
                    f.scenario,
                    format_rate(m),
                    ms(s.latency.p95),
                    pct(s.error_ratio)
                ),
                _ => format!("- **{}: no level passed**", f.scenario),
            };
            if let Some(x) = f.first_failure {
                let why = levels
                    .iter()
                    .find(|(_, s)| s.offered_rate == x)
                    .map(|(_, s)| s.reason.clone())
                    .unwrap_or_default();
                let _ = write!(line, "; breaks at {} ({why})", format_rate(x));
            }
            if let Some(x) = f.first_invalid {
                let _ = write!(
                    line,
                    "; soakd could not offer {} (invalid level: the limit may be higher)",
                    format_rate(x)
                );
            }
            if f.first_failure.is_none() && f.first_invalid.is_none() {
                line.push_str("; no level failed (the limit is above the ladder)");
            }
            md.push_str(&line);
            md.push('\n');
        }
    } else if let (Some(a), Some(b)) = (r.search.scenarios.first(), r.search.scenarios.get(1)) {
        let _ = writeln!(
            md,
            "Combined load: for each {} rate, the highest {} rate within both SLOs:\n",
            a.name, b.name
        );
        for (ra, rb) in frontier(run) {
            let _ = writeln!(
                md,
                "- {} {} + {} {}",
                a.name,
                format_rate(ra),
                b.name,
                rb.map(format_rate)
                    .unwrap_or_else(|| "— (none passed)".into())
            );
        }
    }
    md.push('\n');

    let mut all_notes: Vec<(String, Vec<String>)> = Vec::new();
    if !matrix {
        for f in &found {
            let levels = isolated_levels(run, &f.scenario);
            let notes = bottlenecks(&levels, r.cpus, f);
            let limited = f.first_failure.is_some() || f.first_invalid.is_some();
            if let (Some(n), true) = (notes.first(), limited) {
                let _ = writeln!(md, "Primary bottleneck for {}: {}\n", f.scenario, n);
            }
            all_notes.push((f.scenario.clone(), notes));
        }
    }

    // Per scenario.
    for (i, s) in r.search.scenarios.iter().enumerate() {
        if matrix {
            break;
        }
        let levels = isolated_levels(run, &s.name);
        let f = &found[i];
        // The seed's units: RPS for the API, EPS for events (buffered writes, or the
        // gRPC event handler), QPS for direct database load.
        let buffered = levels.iter().any(|(_, x)| x.buffer.is_some());
        let target = r.targets.get(&s.name).map(String::as_str).unwrap_or("");
        let unit = if buffered || target.ends_with("(grpc)") {
            "EPS"
        } else if target.ends_with("(postgres)") {
            "QPS"
        } else {
            "RPS"
        };
        let _ = writeln!(md, "---\n\n## Scenario {}: {} (isolated)\n", i + 1, s.name);
        if levels.is_empty() {
            md.push_str("No level measured yet.\n\n");
            continue;
        }
        let target_known = levels.iter().any(|(l, _)| l.target.is_some());
        let measured = r.search.target_process.is_some();
        md.push_str("### Test Results\n\n");
        let _ = writeln!(
            md,
            "| {unit} | p50 | p95 | p99 | Error Rate | CPU % | Memory | p99.9 | Achieved | Verdict |"
        );
        md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
        for (l, x) in &levels {
            let (c, m) = match &l.target {
                Some(t) => (cpu(t.cpu_percent), mib(t.rss_bytes)),
                None if measured => ("–".into(), "–".into()),
                None => (cpu(l.soakd.cpu_percent), mib(l.soakd.rss_bytes)),
            };
            let _ = writeln!(
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
                verdict_cell(x.verdict)
            );
        }
        let _ = writeln!(
            md,
            "\nCPU % (of one CPU) and Memory (peak RSS) are {}. ʳ: a bisection level between the last good and the first bad step.\n",
            if target_known {
                "the target process's"
            } else if measured {
                "not measured: this scenario's target is not the configured `target_process`"
            } else {
                "soakd's own (no `target_process` configured)"
            }
        );
        // Generator and resources.
        md.push_str("### Generator, pool and buffer\n\n");
        md.push_str("| Offered | Achieved | Dropped | Lag p99 | In flight (peak/max) | soakd CPU % | soakd RSS | Pool in use (peak/max) | Acquire p95 | Buffer peak | Flush p95 | Event E2E p95 |\n");
        md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (l, x) in &levels {
            let pool = x
                .pool
                .as_ref()
                .map(|p| format!("{}/{}", p.in_use_peak, p.max))
                .unwrap_or_else(|| "–".into());
            let b = x.buffer.as_ref();
            let _ = writeln!(
                md,
                "| {} | {:.1}/s | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |",
                format_rate(x.offered_rate),
                x.achieved_rate,
                x.dropped,
                ms(x.lag_p99),
                x.in_flight_peak,
                x.max_in_flight,
                cpu(l.soakd.cpu_percent),
                mib(l.soakd.rss_bytes),
                pool,
                ms(x.pool.as_ref().and_then(|p| p.acquire_p95)),
                b.map(|b| format!("{}/{}", b.peak, b.capacity))
                    .unwrap_or_else(|| "–".into()),
                ms(b.and_then(|b| b.flush_p95)),
                ms(b.and_then(|b| b.e2e_p95)),
            );
        }
        md.push('\n');
        if levels.iter().any(|(l, _)| l.postgres.is_some()) {
            md.push_str("### Database\n\n| Offered | Transactions/s | Cache hit | Dead tuples (Δ) | Connections by state | Slowest statement (mean) |\n|---|---|---|---|---|---|\n");
            for (l, x) in &levels {
                if let Some(pg) = &l.postgres {
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
                            format!(
                                "{:.2} ms `{}`",
                                t.mean_ms,
                                q.replace('`', "'").replace('|', "\\|")
                            )
                        })
                        .unwrap_or_else(|| "–".into());
                    let _ = writeln!(
                        md,
                        "| {} | {:.0} | {} | {} ({:+}) | {} | {} |",
                        format_rate(x.offered_rate),
                        pg.transactions_per_second,
                        pg.cache_hit_ratio.map(pct).unwrap_or_else(|| "–".into()),
                        pg.dead_tuples,
                        pg.dead_tuples_delta,
                        conns.join(", "),
                        top
                    );
                }
            }
            md.push('\n');
        }
        let with_errors: Vec<_> = levels
            .iter()
            .filter(|(_, x)| !x.errors.is_empty())
            .collect();
        if !with_errors.is_empty() {
            md.push_str("### Errors by kind\n\n| Offered | Errors |\n|---|---|\n");
            for (_, x) in with_errors {
                let e: Vec<String> = x.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let _ = writeln!(md, "| {} | {} |", format_rate(x.offered_rate), e.join(", "));
            }
            md.push('\n');
        }
        md.push_str("### Maximum Capacity\n\n");
        match f.max_sustainable {
            Some(m) => {
                let _ = writeln!(
                    md,
                    "- **Recommended:** {} (highest level within SLO)",
                    format_rate(m)
                );
                let slo_p95 = r.slos.get(&s.name).and_then(|x| x.p95);
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
                    Some(c) => {
                        let _ = writeln!(md, "- **Conservative:** {} (error rate < 0.1 % and p95 at most half its SLO)", format_rate(c));
                    }
                    None => md.push_str("- **Conservative:** none of the passing levels had error rate < 0.1 % with p95 at most half its SLO\n"),
                }
            }
            None => md.push_str("- No level passed: the limit is below the first level.\n"),
        }
        md.push_str("\n### Bottleneck Analysis\n\n");
        let notes = all_notes
            .iter()
            .find(|(n, _)| *n == s.name)
            .map(|x| x.1.clone())
            .unwrap_or_default();
        if notes.is_empty() {
            md.push_str("No evidence collected for this scenario.\n");
        }
        for n in &notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push_str("\n### Optimization Recommendations\n\n");
        for (k, rec) in recommendations(&notes, f).iter().enumerate() {
            let _ = writeln!(md, "{}. {rec}", k + 1);
        }
        // Charts.
        let knee = f.first_failure.or(f.first_invalid);
        let lat = latency_chart(
            &s.name,
            &levels,
            r.slos.get(&s.name).and_then(|x| x.p95),
            knee,
        );
        let err = error_chart(
            &s.name,
            &levels,
            r.slos.get(&s.name).and_then(|x| x.error_rate),
            knee,
        );
        let _ = writeln!(
            md,
            "\n![latency vs offered load]({0}-latency.svg)\n![error ratio vs offered load]({0}-errors.svg)",
            s.name
        );
        charts.push((format!("{}-latency.svg", s.name), lat));
        charts.push((format!("{}-errors.svg", s.name), err));
        if levels.iter().any(|(_, x)| x.pool.is_some()) {
            charts.push((
                format!("{}-pool.svg", s.name),
                pool_chart(&s.name, &levels, knee),
            ));
            let _ = writeln!(md, "![pool in use vs max]({}-pool.svg)", s.name);
        }
        md.push('\n');
    }

    if matrix {
        if let (Some(a), Some(b)) = (r.search.scenarios.first(), r.search.scenarios.get(1)) {
            let _ = writeln!(md, "---\n\n## Combined Load ({} × {})\n", a.name, b.name);
            let mut cols: Vec<f64> = Vec::new();
            let mut rows: Vec<f64> = Vec::new();
            for l in &run.levels {
                for (n, v) in &l.spec.rates {
                    if *n == a.name && !rows.contains(v) {
                        rows.push(*v);
                    }
                    if *n == b.name && !cols.contains(v) {
                        cols.push(*v);
                    }
                }
            }
            let _ = write!(md, "| {} \\ {} |", a.name, b.name);
            for c in &cols {
                let _ = write!(md, " {} |", format_rate(*c));
            }
            md.push_str("\n|---|");
            md.push_str(&"---|".repeat(cols.len()));
            md.push('\n');
            for ra in &rows {
                let _ = write!(md, "| {} |", format_rate(*ra));
                for rb in &cols {
                    let cell = run.levels.iter().find(|l| {
                        l.spec.rates.iter().any(|(n, v)| *n == a.name && v == ra)
                            && l.spec.rates.iter().any(|(n, v)| *n == b.name && v == rb)
                    });
                    match cell {
                        Some(l) => {
                            let p: Vec<String> = l
                                .scenarios
                                .iter()
                                .map(|x| format!("{} p95 {}", x.scenario, ms(x.latency.p95)))
                                .collect();
                            let _ = write!(
                                md,
                                " {} ({}) |",
                                verdict_cell(Some(l.verdict)),
                                p.join(", ")
                            );
                        }
                        None => md.push_str(" not run |"),
                    }
                }
                md.push('\n');
            }
            md.push('\n');
            // Every cell with the seed's columns, per scenario.
            md.push_str("### Test Results\n\n");
            let _ = writeln!(
                md,
                "| {} | {} | Scenario | p50 | p95 | p99 | Error Rate | CPU % | Memory | Achieved | Verdict |",
                a.name, b.name
            );
            md.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
            for l in &run.levels {
                for x in &l.scenarios {
                    let (c, m) = match &l.target {
                        Some(t) => (cpu(t.cpu_percent), mib(t.rss_bytes)),
                        None => (cpu(l.soakd.cpu_percent), mib(l.soakd.rss_bytes)),
                    };
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1}/s | {} |",
                        rate_num(l.spec.rate_of(&a.name)),
                        rate_num(l.spec.rate_of(&b.name)),
                        x.scenario,
                        ms(x.latency.p50),
                        ms(x.latency.p95),
                        ms(x.latency.p99),
                        pct(x.error_ratio),
                        c,
                        m,
                        x.achieved_rate,
                        verdict_cell(x.verdict)
                    );
                }
            }
            let _ = writeln!(
                md,
                "\nCPU % (of one CPU) and Memory (peak RSS) are {}.\n",
                if run.levels.iter().any(|l| l.target.is_some()) {
                    "the target process's"
                } else {
                    "soakd's own (no `target_process` configured)"
                }
            );
            let rows = frontier(run);
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|(ra, rb)| rb.map(|rb| (*ra, rb)))
                .collect();
            let knee = rows.iter().find(|(_, rb)| rb.is_none()).map(|(ra, _)| *ra);
            let x_label = format!("{} rate (/s)", a.name);
            charts.push((
                "frontier.svg".to_string(),
                render_chart(&Chart {
                    title: format!(
                        "combined capacity: highest {} rate per {} rate",
                        b.name, a.name
                    ),
                    x_label: &x_label,
                    y_label: "highest passing rate (/s)",
                    y_log: false,
                    series: vec![Series {
                        name: format!("{} within SLO", b.name),
                        color: "#1f77b4",
                        points: points.clone(),
                        dashed: false,
                    }],
                    hlines: vec![],
                    knee,
                    y_fmt: fmt_int,
                }),
            ));
            md.push_str("![combined capacity frontier](frontier.svg)\n\n");
            md.push_str("### Bottleneck Analysis\n\n");
            let sums: Vec<f64> = points.iter().map(|(ra, rb)| ra + rb).collect();
            let lo = sums.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = sums.iter().copied().fold(0.0, f64::max);
            if sums.len() >= 2 && hi <= 1.5 * lo {
                let _ = writeln!(
                    md,
                    "- **One shared limit**: along the frontier {} + {} stays between {} and {} operations/s whatever the mix — both paths draw on the same resource, so plan capacity for their sum.",
                    a.name,
                    b.name,
                    rate_num(lo),
                    rate_num(hi)
                );
            } else if sums.len() >= 2 {
                let _ = writeln!(
                    md,
                    "- The passing sum of {} + {} ranges from {} to {} operations/s along the frontier: the paths do not share one simple budget.",
                    a.name,
                    b.name,
                    rate_num(lo),
                    rate_num(hi)
                );
            }
            // Why each row ended: its first failing cell.
            for &(ra, _) in &rows {
                let first_bad = run.levels.iter().find(|l| {
                    l.verdict != Verdict::Pass
                        && l.spec.rates.iter().any(|(n, v)| *n == a.name && *v == ra)
                });
                if let Some(l) = first_bad {
                    let cpu_note = l
                        .target
                        .as_ref()
                        .and_then(|t| t.cpu_percent)
                        .map(|c| format!(" (target CPU {c:.0}% of one CPU)"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        md,
                        "- At {}: {}{cpu_note}.",
                        l.spec.label(),
                        l.reason.replace('|', "\\|")
                    );
                }
            }
            md.push('\n');
        }
    }

    md.push_str(
        "---\n\n## All Levels\n\n| # | Phase | Level | Verdict | Reason |\n|---|---|---|---|---|\n",
    );
    for l in &run.levels {
        let _ = writeln!(
            md,
            "| {} | {:?} | {} | {} | {} |",
            l.seq + 1,
            l.spec.phase,
            l.spec.label(),
            verdict_cell(Some(l.verdict)),
            l.reason.replace('|', "\\|")
        );
    }
    Report {
        markdown: md,
        charts,
    }
}

// ---------------------------------------------------------------------------
// SVG

struct Series {
    name: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

struct Chart<'a> {
    title: String,
    x_label: &'a str,
    y_label: &'a str,
    y_log: bool,
    series: Vec<Series>,
    /// Horizontal reference lines (label, y).
    hlines: Vec<(String, f64)>,
    /// The knee: a vertical line at this x.
    knee: Option<f64>,
    y_fmt: fn(f64) -> String,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let mut t = Vec::new();
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
        t
    } else {
        let span = (hi - lo).max(1e-12);
        let raw = span / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| span / s <= 6.0)
            .unwrap_or(mag * 10.0);
        let mut t = Vec::new();
        let mut v = (lo / step).ceil() * step;
        while v <= hi + step * 1e-9 {
            t.push(v);
            v += step;
        }
        t
    }
}

fn render_chart(c: &Chart) -> String {
    let (w, h) = (720.0, 400.0);
    let (l, r, t, b) = (80.0, 150.0, 40.0, 55.0);
    let pw = w - l - r;
    let ph = h - t - b;
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
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(out, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        l + pw / 2.0,
        esc(&c.title)
    );
    if xs.is_empty() {
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
            w / 2.0,
            h / 2.0
        );
        return out;
    }
    let x_min = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let x_max = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let x_log = x_min > 0.0 && x_max / x_min > 20.0;
    let (x0, x1) = if x_log {
        (x_min / 1.2, x_max * 1.2)
    } else {
        let pad = ((x_max - x_min) * 0.05).max(x_max.abs() * 0.05).max(1e-9);
        ((x_min - pad).max(0.0), x_max + pad)
    };
    let pos: Vec<f64> = ys.iter().cloned().filter(|y| *y > 0.0).collect();
    let y_log = c.y_log && !pos.is_empty();
    let (y0, y1) = if y_log {
        let lo = pos.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = pos.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
        (lo, hi)
    } else {
        let hi = ys.iter().cloned().fold(0.0, f64::max);
        (0.0, if hi > 0.0 { hi * 1.1 } else { 1.0 })
    };
    let fx = |x: f64| -> f64 {
        let f = if x_log {
            (x.ln() - x0.ln()) / (x1.ln() - x0.ln())
        } else {
            (x - x0) / (x1 - x0)
        };
        l + f.clamp(0.0, 1.0) * pw
    };
    let fy = |y: f64| -> f64 {
        let f = if y_log {
            (y.max(y0).ln() - y0.ln()) / (y1.ln() - y0.ln())
        } else {
            (y - y0) / (y1 - y0)
        };
        t + ph - f.clamp(0.0, 1.0) * ph
    };
    // Grid and axes.
    for v in nice_ticks(y0, y1, y_log) {
        let y = fy(v);
        let _ = write!(
            out,
            r##"<line x1="{l}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e0e0e0"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            l + pw,
            l - 6.0,
            y + 4.0,
            esc(&(c.y_fmt)(v))
        );
    }
    let mut xt: Vec<f64> = xs.clone();
    xt.sort_by(f64::total_cmp);
    xt.dedup();
    if xt.len() > 12 {
        xt = nice_ticks(x0.max(1e-9), x1, x_log);
    }
    for v in xt {
        let x = fx(v);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            t + ph,
            t + ph + 4.0,
            t + ph + 18.0,
            esc(&rate_num(v))
        );
    }
    let _ = write!(
        out,
        r##"<rect x="{l}" y="{t}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}{}</text>"#,
        l + pw / 2.0,
        h - 12.0,
        esc(c.x_label),
        if x_log { " (log scale)" } else { "" }
    );
    let _ = write!(
        out,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}{}</text>"#,
        t + ph / 2.0,
        esc(c.y_label),
        if y_log { " (log scale)" } else { "" }
    );
    for (label, y) in &c.hlines {
        let yy = fy(*y);
        let _ = write!(
            out,
            r##"<line x1="{l}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#d62728" stroke-dasharray="6,4"/><text x="{:.1}" y="{:.1}" fill="#d62728">{}</text>"##,
            l + pw,
            l + pw + 6.0,
            yy + 4.0,
            esc(label)
        );
    }
    if let Some(k) = c.knee {
        let x = fx(k);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{:.1}" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="3,3"/><text x="{:.1}" y="{:.1}" fill="#ff7f0e" font-weight="bold">knee {}</text>"##,
            t + ph,
            x + 4.0,
            t + 14.0,
            esc(&format_rate(k))
        );
    }
    for (i, s) in c.series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", fx(*x), fy(*y)))
            .collect();
        let dash = if s.dashed {
            r#" stroke-dasharray="8,4""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            pts.join(" "),
            s.color
        );
        for (x, y) in &s.points {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#,
                fx(*x),
                fy(*y),
                s.color
            );
        }
        let ly = t + 10.0 + 18.0 * i as f64;
        let _ = write!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            l + pw + 10.0,
            l + pw + 30.0,
            s.color,
            l + pw + 36.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

fn fmt_ms(v: f64) -> String {
    ms(Some(v))
}

fn fmt_pct(v: f64) -> String {
    if v == 0.0 {
        "0%".into()
    } else {
        format!("{:.3}%", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + ""
    }
}

fn fmt_int(v: f64) -> String {
    format!("{v:.0}")
}

fn latency_chart(
    name: &str,
    levels: &[(&LevelResult, &ScenarioLevel)],
    slo_p95: Option<f64>,
    knee: Option<f64>,
) -> String {
    let pick = |f: fn(&ScenarioLevel) -> Option<f64>| -> Vec<(f64, f64)> {
        levels
            .iter()
            .filter_map(|(_, s)| f(s).map(|v| (s.offered_rate, v)))
            .collect()
    };
    let series = vec![
        Series {
            name: "p50".into(),
            color: "#2ca02c",
            points: pick(|s| s.latency.p50),
            dashed: false,
        },
        Series {
            name: "p95".into(),
            color: "#1f77b4",
            points: pick(|s| s.latency.p95),
            dashed: false,
        },
        Series {
            name: "p99".into(),
            color: "#9467bd",
            points: pick(|s| s.latency.p99),
            dashed: false,
        },
    ];
    render_chart(&Chart {
        title: format!("{name}: latency vs offered load"),
        x_label: "offered load (/s)",
        y_label: "latency",
        y_log: true,
        series,
        hlines: slo_p95
            .map(|v| (format!("SLO p95 {}", ms(Some(v))), v))
            .into_iter()
            .collect(),
        knee,
        y_fmt: fmt_ms,
    })
}

fn error_chart(
    name: &str,
    levels: &[(&LevelResult, &ScenarioLevel)],
    slo: Option<f64>,
    knee: Option<f64>,
) -> String {
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
        y_fmt: fmt_pct,
    })
}

fn pool_chart(name: &str, levels: &[(&LevelResult, &ScenarioLevel)], knee: Option<f64>) -> String {
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
        y_fmt: fmt_int,
    })
}

/// Writes `report.md` and the charts into `dir`; returns the files written.
pub fn write(report: &Report, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    let p = dir.join("report.md");
    std::fs::write(&p, &report.markdown)?;
    out.push(p);
    for (name, svg) in &report.charts {
        let p = dir.join(name);
        std::fs::write(&p, svg)?;
        out.push(p);
    }
    Ok(out)
}
