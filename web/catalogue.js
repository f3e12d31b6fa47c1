// @ts-check
// Generated from src/history/catalogue.rs: do not edit. `tests/contract.rs` checks
// it; `SOAKD_BLESS=1 cargo test --test contract` rewrites it after a change there.

/** @typedef {"scenario" | "visibility" | "postgres" | "buffer" | "process"} Group */

/** The history's groups. */
export const GROUP = Object.freeze({
  scenario: /** @type {Group} */ ("scenario"),
  visibility: /** @type {Group} */ ("visibility"),
  postgres: /** @type {Group} */ ("postgres"),
  buffer: /** @type {Group} */ ("buffer"),
  process: /** @type {Group} */ ("process"),
});

/** Each group's fields; a family's (`…_by_kind`) is the prefix its members share. */
export const F = Object.freeze({
  scenario: Object.freeze({
    /** The rate the schedule (or an override) asks for. */
    target_rate: "target_rate",
    /** The rate override set through the control API, while one is. */
    override: "override",
    /** 1 while paused through the control API. */
    paused: "paused",
    /** Operations started per second. */
    achieved_rate: "achieved_rate",
    /** Operations finished per second (any outcome). */
    completed_rate: "completed_rate",
    /** Operations started and not finished (peak of the second). */
    in_flight: "in_flight",
    /** The scenario's cap on operations in flight. */
    max_in_flight: "max_in_flight",
    /** Arrivals dropped per second (cap reached, or more than 1 s late). */
    dropped_rate: "dropped_rate",
    /** Failed operations as a share of those finished. */
    error_ratio: "error_ratio",
    /** The error ratio of one error kind. */
    error_ratio_by_kind: "error_ratio.",
    /** p99 of actual minus intended start. */
    lag_p99: "lag_p99",
    /** The SLO's p50 limit. */
    slo_p50: "slo_p50",
    /** The SLO's p95 limit. */
    slo_p95: "slo_p95",
    /** The SLO's p99 limit. */
    slo_p99: "slo_p99",
    /** Latency p50 from the intended start, all ops, over the last 5 s (1 s rows) or the minute (1 min rows). */
    p50: "p50",
    /** Latency p95, as p50. */
    p95: "p95",
    /** Latency p99, as p50. */
    p99: "p99",
  }),
  visibility: Object.freeze({
    /** Write-to-visible p50 over the last 10 s (1 s rows) or the minute. */
    p50: "p50",
    /** Write-to-visible p95, as p50. */
    p95: "p95",
    /** Write-to-visible p99, as p50. */
    p99: "p99",
    /** Probes polling now (peak of the second). */
    pending: "pending",
    /** The scenario's cap on probes polling at once. */
    max_pending: "max_pending",
    /** Writes seen visible per second. */
    visible_rate: "visible_rate",
    /** Writes not visible by the deadline, per second. */
    not_visible_rate: "not_visible_rate",
    /** Polls sent per second. */
    polls_rate: "polls_rate",
  }),
  postgres: Object.freeze({
    /** Connections in use (peak of the second). */
    pool_in_use: "pool_in_use",
    /** Connections idle in the pool. */
    pool_idle: "pool_idle",
    /** The pool's maximum. */
    pool_max: "pool_max",
    /** p95 of the wait for a pooled connection. */
    acquire_p95: "acquire_p95",
    /** Acquire timeouts per second. */
    acquire_timeouts_rate: "acquire_timeouts_rate",
    /** 1 while the statistics collector reaches the server. */
    pg_up: "pg_up",
    /** Transactions per second (commits and rollbacks, between collections). */
    tps: "tps",
    /** Blocks found in shared buffers as a share of blocks read. */
    cache_hit_ratio: "cache_hit_ratio",
    /** Server connections in one state (pg_stat_activity). */
    connections_by_state: "connections.",
  }),
  buffer: Object.freeze({
    /** Entries held (peak of the second). */
    fill: "fill",
    /** The buffer's size limit. */
    limit: "limit",
    /** p95 of a flush's duration. */
    flush_p95: "flush_p95",
    /** p95 of accept-to-commit. */
    e2e_p95: "e2e_p95",
    /** Entries committed per second. */
    flushed_rate: "flushed_rate",
    /** Events refused per second (buffer full). */
    refused_rate: "refused_rate",
    /** Failed flush statements per second. */
    flush_errors_rate: "flush_errors_rate",
  }),
  process: Object.freeze({
    /** CPU seconds per second. */
    cpu_cores: "cpu_cores",
    /** Resident memory (peak of the second). */
    rss_bytes: "rss_bytes",
    /** The allocator's committed bytes. */
    heap_bytes: "heap_bytes",
    /** The bounded structures' bytes (soakd_memory_bytes summed). */
    bounded_bytes: "bounded_bytes",
    /** The history rings' values. */
    history_bytes: "history_bytes",
  }),
});

/** The unit of each group's fields (families by their prefix). */
export const UNIT = Object.freeze({
  scenario: Object.freeze({
    "target_rate": "rate",
    "override": "rate",
    "paused": "flag",
    "achieved_rate": "rate",
    "completed_rate": "rate",
    "in_flight": "count",
    "max_in_flight": "count",
    "dropped_rate": "rate",
    "error_ratio": "ratio",
    "error_ratio.": "ratio",
    "lag_p99": "s",
    "slo_p50": "s",
    "slo_p95": "s",
    "slo_p99": "s",
    "p50": "s",
    "p95": "s",
    "p99": "s",
  }),
  visibility: Object.freeze({
    "p50": "s",
    "p95": "s",
    "p99": "s",
    "pending": "count",
    "max_pending": "count",
    "visible_rate": "rate",
    "not_visible_rate": "rate",
    "polls_rate": "rate",
  }),
  postgres: Object.freeze({
    "pool_in_use": "count",
    "pool_idle": "count",
    "pool_max": "count",
    "acquire_p95": "s",
    "acquire_timeouts_rate": "rate",
    "pg_up": "flag",
    "tps": "rate",
    "cache_hit_ratio": "ratio",
    "connections.": "count",
  }),
  buffer: Object.freeze({
    "fill": "count",
    "limit": "count",
    "flush_p95": "s",
    "e2e_p95": "s",
    "flushed_rate": "rate",
    "refused_rate": "rate",
    "flush_errors_rate": "rate",
  }),
  process: Object.freeze({
    "cpu_cores": "cores",
    "rss_bytes": "bytes",
    "heap_bytes": "bytes",
    "bounded_bytes": "bytes",
    "history_bytes": "bytes",
  }),
});
