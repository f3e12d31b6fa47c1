// @ts-check
// The payloads the page reads, as JSDoc types: `/api/v1/status`, `/api/v1/history` and
// `/api/v1/soak`. Their JSON Schemas (web/schema/) are checked against the daemon's
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
 * @property {boolean} soak whether the soak is judged here (its cards are shown)
 * @property {boolean} deploys whether deploys are judged here (the Deploys card is shown)
 * @property {ScenarioStatus[]} scenarios
 * @property {Record<string, SloStatus>} slo
 * @property {SearchProgress | null} search
 */

/**
 * @typedef {"stage" | "override" | "pause" | "resume" | "reload" | "reload_failed" |
 *   "search_level" | "search" | "guard" | "restart" | "deploy" | "deploy_verdict" | "follow"} EventKind
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

/**
 * A trend per day: estimate and 95 % interval.
 * @typedef {object} PerDay
 * @property {number} estimate
 * @property {number} lower
 * @property {number} upper
 */

/**
 * The fitted line over the judged span (unix seconds).
 * @typedef {object} TrendLine
 * @property {number} t0
 * @property {number} t1
 * @property {number} start
 * @property {number} end
 */

/** @typedef {"growing" | "shrinking" | "flat" | "bounded" | "insufficient"} Verdict */

/**
 * @typedef {object} Judgement
 * @property {Verdict} verdict
 * @property {PerDay | null} absolute in the series' unit per day
 * @property {PerDay | null} relative relative to the level per day
 * @property {number | null} plateau
 * @property {number | null} period
 * @property {number | null} resolvable_period
 * @property {number} points
 * @property {string} reason
 * @property {TrendLine | null} line
 */

/**
 * @typedef {object} ChangePoint
 * @property {number} t
 * @property {number} uncertainty
 * @property {number} before
 * @property {number} after
 * @property {number | null} relative
 * @property {string | null} cause
 */

/**
 * @typedef {object} SoakSeries
 * @property {string} resource
 * @property {"gauge" | "counter"} shape
 * @property {boolean} judged false for limits, identities and counts kept as facts
 * @property {number | null} latest
 * @property {Judgement | null} judgement
 * @property {ChangePoint[]} change_points
 * @property {[number, number][]} [points] with `?points=N`
 */

/**
 * @typedef {object} SoakTarget
 * @property {string} target
 * @property {number[]} restarts
 * @property {boolean} restart_loop
 * @property {Record<string, string>} errors
 * @property {SoakSeries[]} series
 */

/**
 * `GET /api/v1/soak` (web/schema/soak.schema.json).
 * @typedef {object} Soak
 * @property {number} window_seconds
 * @property {number} warmup_seconds
 * @property {number} resolution_seconds
 * @property {SoakTarget[]} targets
 * @property {{scenario: string, op: string, series: SoakSeries[]}[]} ops
 */

/**
 * One measure of a deploy's comparison.
 * @typedef {object} DeployFinding
 * @property {string} subject `scenario/op`, or the scenario for dropped arrivals
 * @property {string} measure `p50`, `p95`, `p99`, `errors:<kind>` or `dropped`
 * @property {number} before
 * @property {number} after
 * @property {number} effect latency: after / before − 1; ratios: after − before
 * @property {number[]} ci the 95 % block-bootstrap interval of the effect
 * @property {number} p
 * @property {number} p_adjusted after Holm's correction over the deploy's tests
 * @property {number} min_effect
 * @property {"worse" | "better" | "none"} change
 * @property {string} why
 * @property {string} [relative_to] `deploys.controls`: the control target the effect
 *   is relative to (before and after stay the op's own)
 * @property {DeployDrift} [drift] `deploys.history`: the change against the op's own
 *   wander between windows without a deploy (latency only)
 */

/**
 * @typedef {object} DeployDrift
 * @property {number} pairs pairs of windows without a deploy
 * @property {number} hours the history they were laid over
 * @property {number[]} interval the 95 % prediction interval of a change between two
 *   windows without a deploy (after / before − 1)
 * @property {number} change the deploy's change measured the same way
 * @property {number} p
 * @property {number} p_adjusted after Holm's correction over the deploy's drift checks
 */

/**
 * @typedef {"pending" | "regressed" | "improved" | "unchanged" | "invalid"} DeployState
 */

/**
 * @typedef {object} Deploy
 * @property {string} id
 * @property {string} target
 * @property {number} at unix seconds
 * @property {string | null} from
 * @property {string | null} to
 * @property {"metrics" | "http" | "promql" | "api" | "restart"} source
 * @property {string} [note]
 * @property {{state: DeployState, load: DeployState, judged_at: number | null,
 *   resources: {state: DeployState, judged_at: number | null, reasons: string[]},
 *   windows: {before: number[], after: number[]}, findings: DeployFinding[],
 *   reasons: string[], first?: DeployState,
 *   series?: {subject: string, before: number[][], after: number[][]}[]}} verdict
 */

/**
 * `GET /api/v1/deploys` (web/schema/deploys.schema.json).
 * @typedef {object} Deploys
 * @property {{before_seconds: number, after_seconds: number, settle_seconds: number,
 *   block_seconds: number, baseline: "before" | "yesterday", debounce_seconds: number,
 *   false_alarm: number, min_effect_latency: number, min_effect_errors: number}} settings
 * @property {{target: string, version: string | null, source: string | null,
 *   error: string | null, read_at: number | null}[]} releases
 * @property {Deploy[]} deploys newest first
 */

export {};
