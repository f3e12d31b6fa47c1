// @ts-check
// The page's copy of the history: both resolutions as columns, appended from each
// incremental `/api/v1/history` answer and trimmed to the ring's capacity like the
// server's; the events by id; the latest status.

/** @typedef {import("./types.js").Status} Status */
/** @typedef {import("./types.js").History} History */
/** @typedef {import("./types.js").Event} Event */
/** @typedef {import("./catalogue.js").Group} Group */
/** @typedef {"1s" | "1m"} Resolution */

/**
 * @typedef {object} Columns
 * @property {number[]} t unix ms of each row
 * @property {Map<string, (number | null)[]>} s each series by `key`
 * @property {number} since the newest row's time
 * @property {number} cap the ring's capacity
 */

export const MAX_EVENTS = 1000;

export const state = {
  range: Number(sessionStorage.getItem("soakd-range")) || 3600,
  /** @type {Status | null} */
  status: null,
  /** @type {Record<Resolution, Columns>} */
  data: {
    "1s": { t: [], s: new Map(), since: 0, cap: 3600 },
    "1m": { t: [], s: new Map(), since: 0, cap: 1440 },
  },
  /** @type {Map<number, Event>} */
  events: new Map(),
  token: sessionStorage.getItem("soakd-token") || "",
  lastMinutePoll: 0,
  lastRunsPoll: 0,
  lastSoakPoll: 0,
  lastDeploysPoll: 0,
  runLevels: -1,
  /** @type {string | null} */
  runId: null,
};

/**
 * @param {Group | "search"} g
 * @param {string} n
 * @param {string} f
 */
export const key = (g, n, f) => `${g}|${n}|${f}`;

/**
 * Appends a history payload to the local copy, padding series that are missing on
 * either side so every column stays as long as the time column; keeps at most the
 * ring's capacity, like the server.
 * @param {Resolution} res
 * @param {History} p
 * @returns {boolean} whether rows were added
 */
export function merge(res, p) {
  const d = state.data[res];
  d.cap = p.capacity;
  for (const ev of p.events || []) state.events.set(ev.id, ev);
  while (state.events.size > MAX_EVENTS) state.events.delete(state.events.keys().next().value);
  const n = p.t.length;
  if (!n) return false;
  const old = d.t.length;
  for (const t of p.t) d.t.push(t);
  const seen = new Set();
  for (const s of p.series) {
    const k = key(s.group, s.name, s.field);
    seen.add(k);
    let arr = d.s.get(k);
    if (!arr) {
      arr = new Array(old).fill(null);
      d.s.set(k, arr);
    }
    for (const v of s.values) arr.push(v);
  }
  for (const [k, arr] of d.s) if (!seen.has(k)) for (let i = 0; i < n; i++) arr.push(null);
  const extra = d.t.length - d.cap;
  if (extra > 0) {
    d.t.splice(0, extra);
    for (const arr of d.s.values()) arr.splice(0, extra);
  }
  for (const [k, arr] of d.s) if (arr.every((v) => v == null)) d.s.delete(k);
  d.since = d.t[d.t.length - 1];
  return true;
}

/** @returns {Resolution} the resolution the chosen range is drawn at */
export const resolution = () => (state.range > 3600 ? "1m" : "1s");

/**
 * The latest value of a series at 1 s resolution (within the last 5 rows).
 * @param {Group} group
 * @param {string} name
 * @param {string} field
 * @returns {number | null}
 */
export function latest(group, name, field) {
  const arr = state.data["1s"].s.get(key(group, name, field));
  if (!arr) return null;
  for (let i = arr.length - 1; i >= 0 && i >= arr.length - 5; i--) if (arr[i] != null) return arr[i];
  return null;
}

/**
 * Fields of a group/name present in the data that start with `prefix`, sorted.
 * @param {Group} group
 * @param {string} name
 * @param {string} prefix
 * @returns {string[]}
 */
export function fieldsOf(group, name, prefix) {
  const out = new Set();
  for (const res of /** @type {Resolution[]} */ (["1s", "1m"])) {
    for (const k of state.data[res].s.keys()) {
      const [g, n, f] = k.split("|");
      if (g === group && n === name && f.startsWith(prefix)) out.add(f);
    }
  }
  return [...out].sort();
}

/**
 * @param {Group} group
 * @param {string} name
 * @param {string} field
 */
export const hasSeries = (group, name, field) =>
  /** @type {Resolution[]} */ (["1s", "1m"]).some((res) => state.data[res].s.has(key(group, name, field)));

/**
 * Whether a series ever held something other than 0.
 * @param {Group} group
 * @param {string} name
 * @param {string} field
 */
export function everNonZero(group, name, field) {
  for (const res of /** @type {Resolution[]} */ (["1s", "1m"])) {
    const arr = state.data[res].s.get(key(group, name, field));
    if (arr && arr.some((v) => v != null && v !== 0)) return true;
  }
  return false;
}

/**
 * The names (scenarios, targets, writers) the 1 s data holds for a group.
 * @param {Group} group
 * @returns {string[]}
 */
export function namesOf(group) {
  const out = new Set();
  for (const k of state.data["1s"].s.keys()) {
    const [g, n] = k.split("|");
    if (g === group) out.add(n);
  }
  return [...out].sort();
}
