// @ts-check
// Numbers for people: rates, durations, ratios, bytes.

/**
 * @param {number | null | undefined} v
 * @param {number} [digits]
 * @returns {string}
 */
export function fmtNum(v, digits = 1) {
  if (v == null || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(digits) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(digits) + "k";
  if (a >= 100) return v.toFixed(0);
  return v.toFixed(a < 10 && a > 0 && v % 1 !== 0 ? Math.max(digits, 1) : 0);
}

/**
 * Seconds as µs, ms or s.
 * @param {number | null | undefined} v
 * @returns {string}
 */
export function fmtSecs(v) {
  if (v == null || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  if (v < 0.001) return (v * 1e6).toFixed(0) + " µs";
  if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 2 : v < 0.1 ? 1 : 0) + " ms";
  return v.toFixed(2) + " s";
}

/** @param {number | null | undefined} v */
export const fmtPct = (v) => (v == null || Number.isNaN(v) ? "–" : (v * 100).toFixed(v < 0.01 && v > 0 ? 2 : 1) + " %");

/** @param {number | null | undefined} v */
export const fmtBytes = (v) => (v == null || Number.isNaN(v) ? "–" : (v / 1048576).toFixed(v >= 10485760 ? 0 : 1) + " MiB");

/**
 * A duration in seconds as `2d 3h`, `4m 5s`, …
 * @param {number | null | undefined} s
 * @returns {string}
 */
export function fmtDuration(s) {
  if (s == null) return "–";
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return s % 60 ? `${m}m ${s % 60}s` : `${m}m`;
  return `${s}s`;
}

/**
 * A formatter per unit of the history's catalogue (`UNIT` in catalogue.js).
 * @type {Record<string, (v: number) => string>}
 */
export const FORMAT = {
  rate: (v) => fmtNum(v) + "/s",
  s: fmtSecs,
  ratio: fmtPct,
  count: (v) => fmtNum(v, 0),
  flag: (v) => fmtNum(v, 0),
  bytes: fmtBytes,
  cores: (v) => fmtNum(v, 2),
};

/** @param {number} ms unix milliseconds */
export const timeOf = (ms) => new Date(ms).toLocaleTimeString();
