//! The cost of serving an hour of history: fills the 1 s ring with 3,600 rows for
//! SCENARIOS scenarios (default 10) — the fields the sampler writes for each, plus one
//! postgres target, one buffered writer and the process — then times building and
//! encoding `GET /api/v1/history` responses: the whole hour (a page opening) and one
//! row (a page polling). Used by `scripts/bench/dashboard.sh`.
//!
//!   cargo run --release --example history_serve [SCENARIOS]

use soakd::config::dashboard::DashboardConfig;
use soakd::events::{EventKind, EventLog};
use soakd::history::catalogue::{buffer, postgres, process, scenario, Series};
use soakd::history::{History, Key, Resolution};
use std::time::Instant;

/// The fields the sampler writes for a scenario with an SLO and two error kinds.
const SCENARIO_FIELDS: &[Series] = &[
    scenario::TARGET_RATE,
    scenario::ACHIEVED_RATE,
    scenario::COMPLETED_RATE,
    scenario::DROPPED_RATE,
    scenario::IN_FLIGHT,
    scenario::MAX_IN_FLIGHT,
    scenario::PAUSED,
    scenario::P50,
    scenario::P95,
    scenario::P99,
    scenario::LAG_P99,
    scenario::ERROR_RATIO,
    scenario::SLO_P95,
];
const SCENARIO_ERROR_KINDS: &[&str] = &["status_5xx", "timeout"];
const PG_FIELDS: &[Series] = &[
    postgres::POOL_IN_USE,
    postgres::POOL_IDLE,
    postgres::POOL_MAX,
    postgres::ACQUIRE_P95,
    postgres::ACQUIRE_TIMEOUTS_RATE,
    postgres::PG_UP,
    postgres::TPS,
    postgres::CACHE_HIT_RATIO,
];
const PG_STATES: &[&str] = &["active", "idle"];
const BUFFER_FIELDS: &[Series] = &[
    buffer::FILL,
    buffer::LIMIT,
    buffer::FLUSH_P95,
    buffer::E2E_P95,
    buffer::FLUSHED_RATE,
    buffer::REFUSED_RATE,
    buffer::FLUSH_ERRORS_RATE,
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let scenarios: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let history = History::new(DashboardConfig::default());
    let events = EventLog::new(1000);
    let mut keys = Vec::new();
    for s in 0..scenarios {
        let name = format!("scenario-{s}");
        keys.extend(SCENARIO_FIELDS.iter().map(|f| Key::of(f, &name)));
        keys.extend(
            SCENARIO_ERROR_KINDS
                .iter()
                .map(|k| Key::member(&scenario::ERROR_RATIO_BY_KIND, &name, k)),
        );
    }
    keys.extend(PG_FIELDS.iter().map(|f| Key::of(f, "db")));
    keys.extend(
        PG_STATES
            .iter()
            .map(|s| Key::member(&postgres::CONNECTIONS_BY_STATE, "db", s)),
    );
    keys.extend(BUFFER_FIELDS.iter().map(|f| Key::of(f, "events")));
    keys.extend(
        [
            process::CPU_CORES,
            process::RSS_BYTES,
            process::HISTORY_BYTES,
        ]
        .map(|f| Key::of(&f, "soakd")),
    );
    let t0 = 1_800_000_000_000i64;
    let rows = history.capacity(Resolution::Second) as i64;
    let fill = Instant::now();
    for r in 0..rows {
        // Values with realistic digits (rates, seconds, ratios), not round numbers.
        let row: Vec<(Key, f32)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    k.clone(),
                    ((r * 7919 + i as i64 * 104_729) % 100_000) as f32 / 997.0,
                )
            })
            .collect();
        history.push(Resolution::Second, t0 + r * 1000, &row);
        if r % 300 == 0 {
            events.push_at(
                t0 + r * 1000,
                EventKind::Stage,
                Some("scenario-0"),
                "stage 2/3: hold 500/s",
            );
        }
    }
    let fill_ms = fill.elapsed().as_secs_f64() * 1e3;
    // Builds and encodes the response rows newer than `since`, `n` times: the median
    // time in ms and the body's size.
    let serve = |since: i64, n: usize| {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let payload =
                soakd::dashboard::history_payload(&history, &events, Resolution::Second, since);
            bytes = serde_json::to_vec(&payload).map_or(0, |b| b.len());
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        (median(times), bytes)
    };
    let (full, bytes_full) = serve(0, 21);
    let (inc, bytes_inc) = serve(t0 + (rows - 2) * 1000, 101);
    println!(
        "{scenarios} scenarios, {} series, {rows} rows of 1 s; ring values {:.1} MiB (filled in {fill_ms:.0} ms)",
        keys.len(),
        history.value_bytes() as f64 / 1048576.0
    );
    println!(
        "whole hour (since=0): {:.2} MiB JSON, built and encoded in {:.1} ms (median of 21)",
        bytes_full as f64 / 1048576.0,
        full
    );
    println!("one poll (since=last row): {bytes_inc} bytes, {inc:.3} ms (median of 101)");
}
