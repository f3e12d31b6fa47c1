// @ts-check
// The two payloads the page reads, as JSDoc types: `/api/v1/status` and
// `/api/v1/history`. Their JSON Schemas (web/schema/) are checked against the daemon's
// real answers by tests/contract.rs; `tsc --noEmit` checks the page against these.

/** @typedef {import("./catalogue.js").Group} Group */

/** @typedef {"running" | "paused" | "paused by guard" | "draining"} RunState */

/**
 * Quantiles over a rolling window, each null while nothing finished in it.
 * @typedef {object} Latency
 * @property {number | null} p50
 * @property {number | null} p95
 * @property {number | null} p99
 * @property {number} window_seconds how far back the quantiles reach
 */

/**
 * @typedef {object} VisibilityStatus
 * @property {number} pending
 * @property {number} max_pending
 * @property {number} visible_total
 * @property {number} polls_total
 * @property {Latency} latency_seconds
 */

/**
 * @typedef {object} ScenarioStatus
 * @property {string} name
 * @property {string} target
 * @property {RunState} state
 * @property {string} stage
 * @property {number | null} stage_remaining_seconds
 * @property {number} target_rate
 * @property {number | null} rate_override
 * @property {number} achieved_rate
 * @property {number} in_flight
 * @property {number} max_in_flight
 * @property {number} started_total
 * @property {number} requests_total
 * @property {number} dropped_total
 * @property {Latency} latency_seconds
 * @property {Record<string, number>} errors
 * @property {VisibilityStatus} [visibility]
 * @property {{name: string, weight: number}[]} ops
 */

/** @typedef {"step_down" | "pause" | "recover" | "resume" | "suspend" | "revert"} GuardAction */

/**
 * @typedef {object} GuardStatus
 * @property {number} steps
 * @property {number} factor
 * @property {boolean} suspended
 * @property {GuardAction | null} last_action
 * @property {number | null} last_action_at
 */

/**
 * @typedef {object} Objective
 * @property {"p50" | "p95" | "p99" | "error_rate" | "e2e_p95"} name
 * @property {number} limit
 * @property {number | null} value
 * @property {boolean} ok
 */

/**
 * @typedef {object} SloStatus
 * @property {boolean} ok
 * @property {number} window_seconds
 * @property {Objective[]} objectives
 * @property {number | null} burn_rate_5m
 * @property {number | null} burn_rate_1h
 * @property {number} breached_seconds
 * @property {"local" | "prometheus"} source
 * @property {number} [shards]
 * @property {string} [prometheus_error]
 * @property {GuardStatus} [guard]
 */

/**
 * @typedef {"opening the results store" | "starting" | "warmup" | "measuring" | "cooldown" |
 *   "complete" | "failed" | "scheduled" | "leader unreachable"} SearchState
 */

/**
 * @typedef {object} SearchProgress
 * @property {string} name
 * @property {string | null} run_id
 * @property {SearchState} state
 * @property {string | null} level
 * @property {"step" | "refine" | "matrix" | null} phase
 * @property {number | null} level_remaining_seconds
 * @property {number} levels_done
 * @property {number} levels_max
 * @property {number} resumed
 * @property {{level: string, verdict: "pass" | "fail" | "invalid", reason: string} | null} last
 * @property {string | null} error
 * @property {{scenario: string, levels: number[], then: number | null}[]} plan
 * @property {number} runs_completed
 * @property {number} [next_run_at]
 * @property {Record<string, number>} [rates]
 * @property {string} [leader]
 * @property {string} [leader_error]
 */

/**
 * @typedef {object} Control
 * @property {boolean} enabled
 * @property {boolean} token_required
 * @property {string | null} reason
 */

/**
 * @typedef {object} ReloadState
 * @property {boolean} successful
 * @property {number} at_ms
 * @property {string[]} errors
 */

/**
 * `GET /api/v1/status`.
 * @typedef {object} Status
 * @property {string} version
 * @property {number} uptime_seconds
 * @property {boolean} config_last_reload_successful
 * @property {string | null} config_file
 * @property {ReloadState} reload
 * @property {Control} control
 * @property {boolean} results_store
 * @property {ScenarioStatus[]} scenarios
 * @property {Record<string, SloStatus>} slo
 * @property {SearchProgress | null} search
 */

/**
 * @typedef {"stage" | "override" | "pause" | "resume" | "reload" | "reload_failed" |
 *   "search_level" | "search" | "guard" | "restart"} EventKind
 */

/**
 * @typedef {object} Event
 * @property {number} id
 * @property {number} t_ms
 * @property {EventKind} kind
 * @property {string | null} scenario
 * @property {string} message
 */

/**
 * @typedef {object} SeriesView
 * @property {Group} group
 * @property {string} name
 * @property {string} field
 * @property {(number | null)[]} values
 */

/**
 * `GET /api/v1/history`.
 * @typedef {object} History
 * @property {"1s" | "1m"} resolution
 * @property {number} step_ms
 * @property {number} capacity
 * @property {number} now_ms
 * @property {number[]} t
 * @property {SeriesView[]} series
 * @property {Event[]} events
 */

export {};
