// @ts-check
// The page's layout as data: which charts each card has and what each draws, by the
// history catalogue's names (catalogue.js), so a renamed series is a type error here.

import { F, GROUP, UNIT } from "./catalogue.js";

/** @typedef {import("./charts.js").ChartDef} ChartDef */
/** @typedef {import("./catalogue.js").Group} Group */

const S = F.scenario, V = F.visibility, P = F.postgres, B = F.buffer, X = F.process;

/**
 * A scenario card's charts.
 * @param {string} name
 * @returns {ChartDef[]}
 */
export function scenarioCharts(name) {
  const group = GROUP.scenario;
  return [
    { id: `${name}-rate`, title: "Rate: target vs achieved", group, name, unit: UNIT.scenario[S.target_rate], series: [
      { field: S.target_rate, label: "target", dash: true, colour: "--c7" },
      { field: S.achieved_rate, label: "achieved", colour: "--c1" },
      { field: S.completed_rate, label: "completed", colour: "--c2" },
    ] },
    { id: `${name}-latency`, title: "Latency from intended start (last 5 s)", group, name, unit: UNIT.scenario[S.p95], series: [
      { field: S.p50, label: "p50", colour: "--c2" },
      { field: S.p95, label: "p95", colour: "--c1" },
      { field: S.p99, label: "p99", colour: "--c4" },
      { field: S.slo_p95, label: "SLO p95", dash: true, colour: "--slo", optional: true },
      { field: S.slo_p99, label: "SLO p99", dash: true, colour: "--c5", optional: true },
    ] },
    { id: `${name}-errors`, title: "Errors by kind (share of completed)", group, name, unit: UNIT.scenario[S.error_ratio], series: [
      { field: S.error_ratio, label: "all", colour: "--c7" },
      { prefix: S.error_ratio_by_kind, label: "" },
    ] },
    { id: `${name}-inflight`, title: "In flight vs cap, dropped", group, name, unit: UNIT.scenario[S.in_flight], unit2: UNIT.scenario[S.dropped_rate], series: [
      { field: S.in_flight, label: "in flight", colour: "--c1" },
      { field: S.max_in_flight, label: "cap", dash: true, colour: "--c7" },
      { field: S.dropped_rate, label: "dropped/s", scale: "r", colour: "--c3" },
    ] },
  ];
}

/** The system cards' groups, in the page's order. @type {Group[]} */
export const SYSTEM_GROUPS = [GROUP.postgres, GROUP.buffer, GROUP.visibility, GROUP.process];

/** @type {Record<string, (name: string) => string>} */
export const SYSTEM_TITLES = {
  [GROUP.postgres]: (n) => `Database ${n}`,
  [GROUP.buffer]: (n) => `Buffered writer ${n}`,
  [GROUP.visibility]: (n) => `Visibility ${n}: write → readable`,
  [GROUP.process]: () => "soakd itself",
};

/**
 * A system card's charts: a database, a buffered writer, a scenario's visibility
 * probes, or soakd itself.
 * @param {Group} group
 * @param {string} name
 * @returns {ChartDef[]}
 */
export function systemCharts(group, name) {
  if (group === GROUP.postgres) {
    return [
      { id: `pg-${name}-pool`, title: "Pool: in use / idle / max", group, name, unit: UNIT.postgres[P.pool_in_use], series: [
        { field: P.pool_in_use, label: "in use", colour: "--c1" },
        { field: P.pool_idle, label: "idle", colour: "--c2" },
        { field: P.pool_max, label: "max", dash: true, colour: "--c7" },
      ] },
      { id: `pg-${name}-acquire`, title: "Acquire p95, acquire timeouts", group, name, unit: UNIT.postgres[P.acquire_p95], unit2: UNIT.postgres[P.acquire_timeouts_rate], series: [
        { field: P.acquire_p95, label: "acquire p95", colour: "--c4" },
        { field: P.acquire_timeouts_rate, label: "timeouts/s", scale: "r", colour: "--c3" },
      ] },
      { id: `pg-${name}-tps`, title: "Transactions and cache hit ratio", group, name, unit: UNIT.postgres[P.tps], unit2: UNIT.postgres[P.cache_hit_ratio], series: [
        { field: P.tps, label: "transactions/s", colour: "--c1", optional: true },
        { field: P.cache_hit_ratio, label: "cache hit", scale: "r", colour: "--c2", optional: true },
        { field: P.pg_up, label: "pg_up", scale: "r", dash: true, colour: "--c7", optional: true },
      ] },
      { id: `pg-${name}-conns`, title: "Server connections by state", group, name, unit: UNIT.postgres[P.connections_by_state], series: [
        { prefix: P.connections_by_state, label: "" },
      ] },
    ];
  }
  if (group === GROUP.buffer) {
    return [
      { id: `buf-${name}-fill`, title: "Fill vs limit", group, name, unit: UNIT.buffer[B.fill], series: [
        { field: B.fill, label: "entries", colour: "--c1" },
        { field: B.limit, label: "limit", dash: true, colour: "--c7" },
      ] },
      { id: `buf-${name}-latency`, title: "Flush p95, end-to-end p95", group, name, unit: UNIT.buffer[B.flush_p95], series: [
        { field: B.flush_p95, label: "flush p95", colour: "--c4" },
        { field: B.e2e_p95, label: "E2E p95", colour: "--c1" },
      ] },
      { id: `buf-${name}-rates`, title: "Flushed, refused", group, name, unit: UNIT.buffer[B.flushed_rate], series: [
        { field: B.flushed_rate, label: "flushed/s", colour: "--c2" },
        { field: B.refused_rate, label: "refused/s", colour: "--c3" },
        { field: B.flush_errors_rate, label: "flush errors/s", colour: "--c5" },
      ] },
    ];
  }
  if (group === GROUP.visibility) {
    return [
      { id: `vis-${name}-latency`, title: "Write → visible p50 / p95 / p99", group, name, unit: UNIT.visibility[V.p95], series: [
        { field: V.p50, label: "p50", colour: "--c2" },
        { field: V.p95, label: "p95", colour: "--c1" },
        { field: V.p99, label: "p99", colour: "--c4" },
      ] },
      { id: `vis-${name}-pending`, title: "Probes pending vs max_pending", group, name, unit: UNIT.visibility[V.pending], series: [
        { field: V.pending, label: "pending", colour: "--c1" },
        { field: V.max_pending, label: "max_pending", dash: true, colour: "--c7" },
      ] },
      { id: `vis-${name}-rates`, title: "Visible, not visible (deadline), polls", group, name, unit: UNIT.visibility[V.visible_rate], series: [
        { field: V.visible_rate, label: "visible/s", colour: "--c2" },
        { field: V.not_visible_rate, label: "not visible/s", colour: "--c3" },
        { field: V.polls_rate, label: "polls/s", colour: "--c6", dash: true },
      ] },
    ];
  }
  return [
    { id: "process-cpu", title: "soakd CPU (cores)", group, name, unit: UNIT.process[X.cpu_cores], series: [{ field: X.cpu_cores, label: "cores", colour: "--c1" }] },
    { id: "process-memory", title: "soakd memory", group, name, unit: UNIT.process[X.rss_bytes], series: [
      { field: X.rss_bytes, label: "RSS", colour: "--c4" },
      { field: X.heap_bytes, label: "allocator committed", colour: "--c2" },
      { field: X.bounded_bytes, label: "bounded structures", colour: "--c5" },
      { field: X.history_bytes, label: "history rings", colour: "--c6" },
    ] },
  ];
}
