// @ts-check
// soakd's API as the page reads it: typed answers (types.js) and the control calls.

/** @typedef {import("./types.js").Status} Status */
/** @typedef {import("./types.js").History} History */

/**
 * @param {string} path
 * @returns {Promise<any>}
 */
export async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

/** @typedef {import("./types.js").Soak} Soak */

/**
 * The soak's verdicts with each series' points averaged down to `points`; null when
 * the soak is not judged here (404).
 * @param {number} points
 * @returns {Promise<Soak | null>}
 */
export async function fetchSoak(points) {
  const r = await fetch(`/api/v1/soak?points=${points}`, { cache: "no-store" });
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(`/api/v1/soak: HTTP ${r.status}`);
  return r.json();
}

/** @typedef {import("./types.js").Deploys} Deploys */

/**
 * The deploys and their verdicts; null when they are not judged here (404).
 * @returns {Promise<Deploys | null>}
 */
export async function fetchDeploys() {
  const r = await fetch("/api/v1/deploys", { cache: "no-store" });
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(`/api/v1/deploys: HTTP ${r.status}`);
  return r.json();
}

/** @returns {Promise<Status>} */
export const fetchStatus = () => getJSON("/api/v1/status");

/**
 * Rows newer than `since` (unix ms) at `resolution`, and the events after it.
 * @param {"1s" | "1m"} resolution
 * @param {number} since
 * @returns {Promise<History>}
 */
export const fetchHistory = (resolution, since) => getJSON(`/api/v1/history?resolution=${resolution}&since=${since}`);

/**
 * A mutation through the control API, with the bearer token when there is one.
 * @param {string} method
 * @param {string} path
 * @param {unknown} body
 * @param {string} token
 * @returns {Promise<{ok: boolean, status: number, json: any}>}
 */
export async function send(method, path, body, token) {
  /** @type {Record<string, string>} */
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(path, { method, headers, body: body == null ? undefined : JSON.stringify(body) });
  const json = await r.json().catch(() => ({}));
  return { ok: r.ok, status: r.status, json };
}
