//! What the levels say about the limit: evidence-based bottleneck notes per scenario
//! (pool, buffer, CPU, the latency knee, the database, errors, soakd itself), strongest
//! first, and the recommendations they lead to.

use super::cells::{ms, pct};
use crate::capacity::findings::Finding;
use crate::capacity::findings::Levels;
use crate::capacity::record::{LevelResult, ScenarioLevel, Verdict};
use crate::units::format_rate;

/// Bottleneck notes for one scenario, strongest first: findings (bold), then the knee,
/// then context.
pub(super) fn bottlenecks(levels: &Levels, cpus: usize, f: &Finding) -> Vec<String> {
    // The level examined: the first failing one, else the highest measured.
    let focus = levels
        .iter()
        .find(|(_, s)| s.verdict == Some(Verdict::Fail))
        .or(levels.last());
    let Some(&(fl, fs)) = focus else {
        return Vec::new();
    };
    let mut out: Vec<String> = [
        pool_note(levels),
        buffer_note(fs),
        cpu_note(fl, fs, cpus),
        knee_note(levels, fs),
        soakd_note(fl, fs, cpus),
        database_note(fl, fs),
        error_note(fs),
        invalid_note(levels, f),
    ]
    .into_iter()
    .flatten()
    .collect();
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

/// The first level whose pool was full, and whether latency had already risen by then.
fn pool_note(levels: &Levels) -> Option<String> {
    // Where latency started rising: the first level whose p95 is over twice the first's.
    let base_p95 = levels.first().and_then(|(_, s)| s.latency.p95);
    let rise = levels.iter().find(|(_, s)| {
        matches!((base_p95, s.latency.p95), (Some(b), Some(p)) if p > 2.0 * b && p > 0.005)
    });
    let (s, p) = levels.iter().find_map(|(_, s)| {
        s.pool
            .as_ref()
            .filter(|p| p.max > 0 && p.in_use_peak >= p.max)
            .map(|p| (s, p))
    })?;
    let order = match rise {
        Some((_, r)) if r.offered_rate > s.offered_rate => format!(
            ", before latency rose (p95 doubled only at {})",
            format_rate(r.offered_rate)
        ),
        Some((_, r)) if r.offered_rate == s.offered_rate => {
            ", at the same level where latency rose".to_string()
        }
        Some((_, r)) => format!(
            ", after latency had already risen (at {}): the pool is a symptom, not the cause",
            format_rate(r.offered_rate)
        ),
        None => String::new(),
    };
    Some(format!(
        "**Connection pool saturated** at {}: {}/{} connections in use, acquire p95 {}, {} acquire timeouts{order}.",
        format_rate(s.offered_rate),
        p.in_use_peak,
        p.max,
        ms(p.acquire_p95),
        p.acquire_timeouts
    ))
}

/// The buffered writer at the focus level: near its limit, or keeping up.
fn buffer_note(fs: &ScenarioLevel) -> Option<String> {
    let b = fs.buffer.as_ref()?;
    let at = format_rate(fs.offered_rate);
    if b.capacity > 0 && (b.peak as f64 >= 0.8 * b.capacity as f64 || b.dropped_events > 0) {
        return Some(format!(
            "**Event buffer near its limit** at {at}: peak {} of {} entries, {} events dropped, flush p95 {}.",
            b.peak,
            b.capacity,
            b.dropped_events,
            ms(b.flush_p95)
        ));
    }
    let (fp, e2e) = (b.flush_p95?, b.e2e_p95?);
    Some(format!(
        "Buffered writes kept up at {at}: flush p95 {}, event E2E p95 {}, buffer peak {} of {}.",
        ms(Some(fp)),
        ms(Some(e2e)),
        b.peak,
        b.capacity
    ))
}

/// The target's CPU at the focus level, against the machine's.
fn cpu_note(fl: &LevelResult, fs: &ScenarioLevel, cpus: usize) -> Option<String> {
    let c = fl.target.as_ref()?.cpu_percent?;
    let of_all = c / (cpus.max(1) as f64);
    let at = format_rate(fs.offered_rate);
    Some(if of_all >= 80.0 {
        format!("**Target CPU-bound** at {at}: {c:.0}% of one CPU ({of_all:.0}% of the machine's {cpus}).")
    } else {
        format!("Target CPU at {at}: {c:.0}% of one CPU ({of_all:.0}% of {cpus}) — not the limit.")
    })
}

/// The knee: how latency, errors and concurrency moved from the lightest level to the
/// first failing one.
fn knee_note(levels: &Levels, fs: &ScenarioLevel) -> Option<String> {
    if fs.verdict != Some(Verdict::Fail) {
        return None;
    }
    let (_, first) = levels.first()?;
    let (a, b) = (first.latency.p95?, fs.latency.p95?);
    let errors = if first.error_ratio == 0.0 && fs.error_ratio == 0.0 {
        "with no errors".to_string()
    } else {
        format!(
            "while errors went from {} to {}",
            pct(first.error_ratio),
            pct(fs.error_ratio)
        )
    };
    let queueing = if fs.error_ratio < 0.001 && b > 2.0 * a {
        " Latency rose without errors: requests queue at the target (a saturated resource — workers, a concurrency limit, connections), they are not being rejected."
    } else {
        ""
    };
    Some(format!(
        "Latency knee: p95 went from {} at {} to {} at {} (×{:.1}) {errors}; operations in flight peaked at {} (from {}).{queueing}",
        ms(Some(a)),
        format_rate(first.offered_rate),
        ms(Some(b)),
        format_rate(fs.offered_rate),
        b / a.max(1e-9),
        fs.in_flight_peak,
        first.in_flight_peak,
    ))
}

/// soakd competing with the target for CPU on a shared machine.
fn soakd_note(fl: &LevelResult, fs: &ScenarioLevel, cpus: usize) -> Option<String> {
    let c = fl.soakd.cpu_percent?;
    (c / (cpus.max(1) as f64) >= 50.0).then(|| format!(
        "soakd itself used {c:.0}% of one CPU at {} on this {cpus}-CPU machine: it competes with the target for CPU; run it on another host for higher levels.",
        format_rate(fs.offered_rate)
    ))
}

/// The database at the focus level: throughput, connections, cache, the slowest statement.
fn database_note(fl: &LevelResult, fs: &ScenarioLevel) -> Option<String> {
    let pg = fl.postgres.as_ref()?;
    let active = pg.connections_by_state.get("active").copied().unwrap_or(0);
    let total: i64 = pg.connections_by_state.values().sum();
    let mut s = format!(
        "Database at {}: {:.0} transactions/s, {total} connections ({active} active){}",
        format_rate(fs.offered_rate),
        pg.transactions_per_second,
        pg.max_connections
            .map(|m| format!(" of max_connections {m}"))
            .unwrap_or_default()
    );
    if let Some(h) = pg.cache_hit_ratio {
        s.push_str(&format!(", cache hit ratio {:.2}%", h * 100.0));
    }
    if let Some(top) = pg.top_statements.first() {
        s.push_str(&format!(
            "; slowest statement by mean time {:.2} ms over {} calls: `{}`",
            top.mean_ms,
            top.calls,
            top.query.replace('`', "'")
        ));
        // Slow *and* busy: it keeps at least half a backend occupied. A batched upsert
        // taking 25 ms once a second is not a bottleneck.
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
    Some(s)
}

/// The commonest error kind at a failing level.
fn error_note(fs: &ScenarioLevel) -> Option<String> {
    if fs.verdict != Some(Verdict::Fail) {
        return None;
    }
    let (k, n) = fs.errors.iter().max_by_key(|(_, n)| **n)?;
    Some(format!(
        "Dominant error at {}: `{k}` ({n} of {} operations).",
        format_rate(fs.offered_rate),
        fs.completed
    ))
}

/// A level soakd could not offer: never the target's limit.
fn invalid_note(levels: &Levels, f: &Finding) -> Option<String> {
    let r = f.first_invalid?;
    Some(format!(
        "**soakd could not offer {}** (level marked invalid, not a target limit): {}",
        format_rate(r),
        levels
            .iter()
            .find(|(_, s)| s.offered_rate == r)
            .map(|(_, s)| s.reason.clone())
            .unwrap_or_default()
    ))
}

/// What to do about the notes, most specific first.
pub(super) fn recommendations(notes: &[String], f: &Finding) -> Vec<String> {
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
