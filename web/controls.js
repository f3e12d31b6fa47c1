// @ts-check
// The header (version, config, reload state) and the controls: every mutation goes
// through the control API with its rules — a bearer token when one is configured
// (typed once, kept in sessionStorage, never in a URL), none from afar without one.

import { $, $$ } from "./dom.js";
import { fmtDuration } from "./format.js";
import { send } from "./api.js";
import { state } from "./store.js";

/** @typedef {import("./types.js").Status} Status */

/** What runs after every control call (main.js polls at once). @type {() => Promise<void>} */
let afterControl = async () => {};

/** @param {() => Promise<void>} f */
export function onControlled(f) {
  afterControl = f;
}

/** Whether the controls can act now (the daemon allows it, and the token is known). */
export function controlsEnabled() {
  const c = state.status && state.status.control;
  if (!c) return false;
  if (!c.enabled) return false;
  if (c.token_required && !state.token) return false;
  return true;
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let messageTimer;

/**
 * A note under the header, gone after a while.
 * @param {string} text
 * @param {boolean} bad
 */
export function message(text, bad) {
  const m = $("#message");
  m.hidden = false;
  m.textContent = text;
  m.className = `note${bad ? " error" : ""}`;
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => (m.hidden = true), bad ? 10000 : 4000);
}

/**
 * A mutation through the control API; its outcome is shown as a message.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 */
export async function control(method, path, body) {
  try {
    const r = await send(method, path, body, state.token);
    if (!r.ok) {
      const j = r.json || {};
      const detail = j.errors ? `\n${j.errors.join("\n")}` : "";
      message(`${method} ${path}: ${j.error || `HTTP ${r.status}`}${detail}`, true);
      if (r.status === 401) {
        state.token = "";
        sessionStorage.removeItem("soakd-token");
      }
    } else {
      message(`${method} ${path}: done`, false);
    }
  } catch (e) {
    message(`${method} ${path}: ${e}`, true);
  }
  await afterControl();
}

/**
 * The header: version, uptime, config file, the last reload, and whether controls work.
 * @param {Status} st
 */
export function renderHeader(st) {
  $("#version").textContent = `v${st.version}`;
  $("#uptime").textContent = `up ${fmtDuration(st.uptime_seconds)}`;
  $("#config").textContent = st.config_file || "embedded config";
  const r = st.reload || { successful: true, errors: [], at_ms: 0 };
  const badge = $("#reload-state");
  badge.textContent = r.successful ? "config ok" : "last reload failed";
  badge.className = `badge ${r.successful ? "ok" : "bad"}`;
  badge.title = `at ${new Date(r.at_ms).toLocaleString()}`;
  const errBox = $("#reload-error");
  errBox.hidden = r.successful;
  if (!r.successful) errBox.textContent = `The last reload was rejected (the running config is unchanged):\n${r.errors.join("\n")}`;
  const c = st.control || { enabled: false, token_required: false, reason: null };
  const note = $("#control-note");
  const tokenBox = $("#token-box");
  if (!c.enabled) {
    note.hidden = false;
    note.textContent = `Controls are disabled: ${c.reason || "the daemon refuses mutations"}.`;
    tokenBox.hidden = true;
  } else if (c.token_required && !state.token) {
    note.hidden = false;
    note.textContent = "Controls are disabled until you enter the control token (this daemon requires one).";
    tokenBox.hidden = false;
  } else {
    note.hidden = true;
    tokenBox.hidden = !c.token_required;
  }
  const on = controlsEnabled();
  for (const e of /** @type {HTMLButtonElement[]} */ ($$(".control"))) {
    e.disabled = !on;
    e.title = on ? e.title : note.textContent || "";
  }
}
