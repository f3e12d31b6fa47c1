//! Every series the history holds, in one place: the sampler writes them by these
//! constants and the page reads them from `web/catalogue.js`, which is generated from
//! this list ([`javascript`]) and checked against it by `tests/contract.rs`. A rename
//! here fails that fast test until the page's copy is regenerated, and the page's
//! `@ts-check` then names every place that still spells the old field.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What a series belongs to: a scenario, its visibility probes, a postgres target, a
/// buffered writer, or soakd's own process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Scenario,
    Visibility,
    Postgres,
    Buffer,
    Process,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Scenario,
        Group::Visibility,
        Group::Postgres,
        Group::Buffer,
        Group::Process,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Scenario => "scenario",
            Group::Visibility => "visibility",
            Group::Postgres => "postgres",
            Group::Buffer => "buffer",
            Group::Process => "process",
        }
    }
}

/// How a series' values read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Per second.
    Rate,
    /// Seconds.
    S,
    /// 0 to 1.
    Ratio,
    Count,
    Bytes,
    Cores,
    /// 0 or 1.
    Flag,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Rate => "rate",
            Unit::S => "s",
            Unit::Ratio => "ratio",
            Unit::Count => "count",
            Unit::Bytes => "bytes",
            Unit::Cores => "cores",
            Unit::Flag => "flag",
        }
    }
}

/// One series of the history: its group, its field (for a family, the prefix its
/// members share, each member's field being the prefix and a kind or state), its unit
/// and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Series {
    pub group: Group,
    pub field: &'static str,
    pub unit: Unit,
    /// A family: `field` is a prefix (`error_ratio.`) followed by what this names (a
    /// `kind`, a `state`).
    pub member: Option<&'static str>,
    pub help: &'static str,
}

const fn one(group: Group, field: &'static str, unit: Unit, help: &'static str) -> Series {
    Series {
        group,
        field,
        unit,
        member: None,
        help,
    }
}

const fn family(
    group: Group,
    field: &'static str,
    member: &'static str,
    unit: Unit,
    help: &'static str,
) -> Series {
    Series {
        group,
        field,
        unit,
        member: Some(member),
        help,
    }
}

/// A scenario's series.
pub mod scenario {
    use crate::history::catalogue::{family, one, Group::Scenario as G, Series, Unit};
    pub const TARGET_RATE: Series = one(
        G,
        "target_rate",
        Unit::Rate,
        "The rate the schedule (or an override) asks for.",
    );
    pub const OVERRIDE: Series = one(
        G,
        "override",
        Unit::Rate,
        "The rate override set through the control API, while one is.",
    );
    pub const PAUSED: Series = one(
        G,
        "paused",
        Unit::Flag,
        "1 while paused through the control API.",
    );
    pub const ACHIEVED_RATE: Series = one(
        G,
        "achieved_rate",
        Unit::Rate,
        "Operations started per second.",
    );
    pub const COMPLETED_RATE: Series = one(
        G,
        "completed_rate",
        Unit::Rate,
        "Operations finished per second (any outcome).",
    );
    pub const IN_FLIGHT: Series = one(
        G,
        "in_flight",
        Unit::Count,
        "Operations started and not finished (peak of the second).",
    );
    pub const MAX_IN_FLIGHT: Series = one(
        G,
        "max_in_flight",
        Unit::Count,
        "The scenario's cap on operations in flight.",
    );
    pub const DROPPED_RATE: Series = one(
        G,
        "dropped_rate",
        Unit::Rate,
        "Arrivals dropped per second (cap reached, or more than 1 s late).",
    );
    pub const ERROR_RATIO: Series = one(
        G,
        "error_ratio",
        Unit::Ratio,
        "Failed operations as a share of those finished.",
    );
    pub const ERROR_RATIO_BY_KIND: Series = family(
        G,
        "error_ratio.",
        "kind",
        Unit::Ratio,
        "The error ratio of one error kind.",
    );
    pub const LAG_P99: Series = one(G, "lag_p99", Unit::S, "p99 of actual minus intended start.");
    pub const SLO_P50: Series = one(G, "slo_p50", Unit::S, "The SLO's p50 limit.");
    pub const SLO_P95: Series = one(G, "slo_p95", Unit::S, "The SLO's p95 limit.");
    pub const SLO_P99: Series = one(G, "slo_p99", Unit::S, "The SLO's p99 limit.");
    pub const P50: Series = one(G, "p50", Unit::S, "Latency p50 from the intended start, all ops, over the last 5 s (1 s rows) or the minute (1 min rows).");
    pub const P95: Series = one(G, "p95", Unit::S, "Latency p95, as p50.");
    pub const P99: Series = one(G, "p99", Unit::S, "Latency p99, as p50.");
}

/// A scenario's visibility probes (write to visible).
pub mod visibility {
    use crate::history::catalogue::{one, Group::Visibility as G, Series, Unit};
    pub const P50: Series = one(
        G,
        "p50",
        Unit::S,
        "Write-to-visible p50 over the last 10 s (1 s rows) or the minute.",
    );
    pub const P95: Series = one(G, "p95", Unit::S, "Write-to-visible p95, as p50.");
    pub const P99: Series = one(G, "p99", Unit::S, "Write-to-visible p99, as p50.");
    pub const PENDING: Series = one(
        G,
        "pending",
        Unit::Count,
        "Probes polling now (peak of the second).",
    );
    pub const MAX_PENDING: Series = one(
        G,
        "max_pending",
        Unit::Count,
        "The scenario's cap on probes polling at once.",
    );
    pub const VISIBLE_RATE: Series = one(
        G,
        "visible_rate",
        Unit::Rate,
        "Writes seen visible per second.",
    );
    pub const NOT_VISIBLE_RATE: Series = one(
        G,
        "not_visible_rate",
        Unit::Rate,
        "Writes not visible by the deadline, per second.",
    );
    pub const POLLS_RATE: Series = one(G, "polls_rate", Unit::Rate, "Polls sent per second.");
}

/// A postgres target's pool, and the statistics of the target that collects them.
pub mod postgres {
    use crate::history::catalogue::{family, one, Group::Postgres as G, Series, Unit};
    pub const POOL_IN_USE: Series = one(
        G,
        "pool_in_use",
        Unit::Count,
        "Connections in use (peak of the second).",
    );
    pub const POOL_IDLE: Series = one(G, "pool_idle", Unit::Count, "Connections idle in the pool.");
    pub const POOL_MAX: Series = one(G, "pool_max", Unit::Count, "The pool's maximum.");
    pub const ACQUIRE_P95: Series = one(
        G,
        "acquire_p95",
        Unit::S,
        "p95 of the wait for a pooled connection.",
    );
    pub const ACQUIRE_TIMEOUTS_RATE: Series = one(
        G,
        "acquire_timeouts_rate",
        Unit::Rate,
        "Acquire timeouts per second.",
    );
    pub const PG_UP: Series = one(
        G,
        "pg_up",
        Unit::Flag,
        "1 while the statistics collector reaches the server.",
    );
    pub const TPS: Series = one(
        G,
        "tps",
        Unit::Rate,
        "Transactions per second (commits and rollbacks, between collections).",
    );
    pub const CACHE_HIT_RATIO: Series = one(
        G,
        "cache_hit_ratio",
        Unit::Ratio,
        "Blocks found in shared buffers as a share of blocks read.",
    );
    pub const CONNECTIONS_BY_STATE: Series = family(
        G,
        "connections.",
        "state",
        Unit::Count,
        "Server connections in one state (pg_stat_activity).",
    );
}

/// A scenario's buffered writer.
pub mod buffer {
    use crate::history::catalogue::{one, Group::Buffer as G, Series, Unit};
    pub const FILL: Series = one(G, "fill", Unit::Count, "Entries held (peak of the second).");
    pub const LIMIT: Series = one(G, "limit", Unit::Count, "The buffer's size limit.");
    pub const FLUSH_P95: Series = one(G, "flush_p95", Unit::S, "p95 of a flush's duration.");
    pub const E2E_P95: Series = one(G, "e2e_p95", Unit::S, "p95 of accept-to-commit.");
    pub const FLUSHED_RATE: Series = one(
        G,
        "flushed_rate",
        Unit::Rate,
        "Entries committed per second.",
    );
    pub const REFUSED_RATE: Series = one(
        G,
        "refused_rate",
        Unit::Rate,
        "Events refused per second (buffer full).",
    );
    pub const FLUSH_ERRORS_RATE: Series = one(
        G,
        "flush_errors_rate",
        Unit::Rate,
        "Failed flush statements per second.",
    );
}

/// soakd's own process.
pub mod process {
    use crate::history::catalogue::{one, Group::Process as G, Series, Unit};
    pub const CPU_CORES: Series = one(G, "cpu_cores", Unit::Cores, "CPU seconds per second.");
    pub const RSS_BYTES: Series = one(
        G,
        "rss_bytes",
        Unit::Bytes,
        "Resident memory (peak of the second).",
    );
    pub const HEAP_BYTES: Series = one(
        G,
        "heap_bytes",
        Unit::Bytes,
        "The allocator's committed bytes.",
    );
    pub const BOUNDED_BYTES: Series = one(
        G,
        "bounded_bytes",
        Unit::Bytes,
        "The bounded structures' bytes (soakd_memory_bytes summed).",
    );
    pub const HISTORY_BYTES: Series = one(
        G,
        "history_bytes",
        Unit::Bytes,
        "The history rings' values.",
    );
}

/// Every series, by group.
pub const ALL: &[Series] = &[
    scenario::TARGET_RATE,
    scenario::OVERRIDE,
    scenario::PAUSED,
    scenario::ACHIEVED_RATE,
    scenario::COMPLETED_RATE,
    scenario::IN_FLIGHT,
    scenario::MAX_IN_FLIGHT,
    scenario::DROPPED_RATE,
    scenario::ERROR_RATIO,
    scenario::ERROR_RATIO_BY_KIND,
    scenario::LAG_P99,
    scenario::SLO_P50,
    scenario::SLO_P95,
    scenario::SLO_P99,
    scenario::P50,
    scenario::P95,
    scenario::P99,
    visibility::P50,
    visibility::P95,
    visibility::P99,
    visibility::PENDING,
    visibility::MAX_PENDING,
    visibility::VISIBLE_RATE,
    visibility::NOT_VISIBLE_RATE,
    visibility::POLLS_RATE,
    postgres::POOL_IN_USE,
    postgres::POOL_IDLE,
    postgres::POOL_MAX,
    postgres::ACQUIRE_P95,
    postgres::ACQUIRE_TIMEOUTS_RATE,
    postgres::PG_UP,
    postgres::TPS,
    postgres::CACHE_HIT_RATIO,
    postgres::CONNECTIONS_BY_STATE,
    buffer::FILL,
    buffer::LIMIT,
    buffer::FLUSH_P95,
    buffer::E2E_P95,
    buffer::FLUSHED_RATE,
    buffer::REFUSED_RATE,
    buffer::FLUSH_ERRORS_RATE,
    process::CPU_CORES,
    process::RSS_BYTES,
    process::HEAP_BYTES,
    process::BOUNDED_BYTES,
    process::HISTORY_BYTES,
];

/// The catalogue entry a stored field belongs to: itself, or the family whose prefix
/// it starts with.
pub fn find(group: Group, field: &str) -> Option<&'static Series> {
    ALL.iter().find(|s| {
        s.group == group
            && if s.member.is_some() {
                field.len() > s.field.len() && field.starts_with(s.field)
            } else {
                field == s.field
            }
    })
}

/// The JavaScript identifier of a field; a family is named as its Rust constant is
/// (`error_ratio.` of kinds → `error_ratio_by_kind`).
fn js_name(s: &Series) -> String {
    match s.member {
        Some(m) => format!("{}_by_{m}", s.field.trim_end_matches('.')),
        None => s.field.to_string(),
    }
}

/// `web/catalogue.js`: the catalogue as an ES module the page imports.
pub fn javascript() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// @ts-check\n// Generated from src/history/catalogue.rs: do not edit. `tests/contract.rs` checks\n// it; `SOAKD_BLESS=1 cargo test --test contract` rewrites it after a change there.\n"
    );
    let groups: Vec<String> = Group::ALL
        .iter()
        .map(|g| format!("{:?}", g.as_str()))
        .collect();
    let _ = writeln!(out, "/** @typedef {{{}}} Group */\n", groups.join(" | "));
    let _ = writeln!(out, "/** The history's groups. */");
    let _ = writeln!(out, "export const GROUP = Object.freeze({{");
    for g in Group::ALL {
        let _ = writeln!(out, "  {0}: /** @type {{Group}} */ ({0:?}),", g.as_str());
    }
    let _ = writeln!(out, "}});\n");
    let _ = writeln!(
        out,
        "/** Each group's fields; a family's (`…_by_kind`) is the prefix its members share. */"
    );
    let _ = writeln!(out, "export const F = Object.freeze({{");
    for g in Group::ALL {
        let _ = writeln!(out, "  {}: Object.freeze({{", g.as_str());
        for s in ALL.iter().filter(|s| s.group == g) {
            let _ = writeln!(out, "    /** {} */", s.help);
            let _ = writeln!(out, "    {}: {:?},", js_name(s), s.field);
        }
        let _ = writeln!(out, "  }}),");
    }
    let _ = writeln!(out, "}});\n");
    let _ = writeln!(
        out,
        "/** The unit of each group's fields (families by their prefix). */"
    );
    let _ = writeln!(out, "export const UNIT = Object.freeze({{");
    for g in Group::ALL {
        let _ = writeln!(out, "  {}: Object.freeze({{", g.as_str());
        for s in ALL.iter().filter(|s| s.group == g) {
            let _ = writeln!(out, "    {:?}: {:?},", s.field, s.unit.as_str());
        }
        let _ = writeln!(out, "  }}),");
    }
    let _ = writeln!(out, "}});");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unique_within_a_group_and_families_end_in_a_dot() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert!(!(a.group == b.group && a.field == b.field), "{a:?} twice");
            }
            assert_eq!(a.member.is_some(), a.field.ends_with('.'), "{a:?}");
            assert!(!a.help.is_empty());
        }
    }

    #[test]
    fn a_family_member_finds_its_family_and_nothing_else_matches() {
        assert_eq!(
            find(Group::Scenario, "error_ratio.timeout"),
            Some(&scenario::ERROR_RATIO_BY_KIND)
        );
        assert_eq!(
            find(Group::Scenario, "error_ratio"),
            Some(&scenario::ERROR_RATIO)
        );
        assert_eq!(find(Group::Scenario, "error_ratio."), None);
        assert_eq!(find(Group::Postgres, "p95"), None);
        assert_eq!(find(Group::Visibility, "p95"), Some(&visibility::P95));
    }

    #[test]
    fn the_page_module_names_every_field_once() {
        let js = javascript();
        for s in ALL {
            assert!(
                js.contains(&format!("    {}: {:?},", js_name(s), s.field)),
                "{s:?}"
            );
        }
        assert!(js.contains("error_ratio_by_kind: \"error_ratio.\""), "{js}");
    }
}
