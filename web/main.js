// @ts-check
// soakd's live page. No build step, no framework: uPlot draws the charts, everything
// else is plain DOM, as ES modules served from the binary. Data comes from soakd's own
// API only:
//   /api/v1/status   every second: scenarios, search progress, reload state, control rules
//   /api/v1/history  every second (1 s rows) and every 30 s (1 min rows), incrementally
//                    with ?since=<newest row seen>, so each poll carries a row or two
//   /api/v1/runs     every 10 s: the stored capacity runs
//   /api/v1/soak     every 10 s: the soak's verdicts on the system under test (soak.js)
//   /api/v1/deploys  every 10 s: the deploys and their verdicts (deploys.js)
// The modules: api.js (the API, typed by types.js), store.js (the page's copy of the
// history), format.js, dom.js, catalogue.js (the history's series, generated from the
// daemon's catalogue), layout.js (which charts each card has, as data), charts.js,
// cards.js, controls.js; this file is the loop.

import { $, $$ } from "./dom.js";
import { fetchStatus, fetchHistory } from "./api.js";
import { state, merge } from "./store.js";
import { charts, drawAll, dropCharts } from "./charts.js";
import { scenarioCard, updateScenarioCard, ensureSystemCards, renderEvents, renderSearch, renderRuns } from "./cards.js";
import { renderHeader, control, message, onControlled } from "./controls.js";
import { renderSoak, resetSoakCharts, soakCharts, SOAK_POLL_MS } from "./soak.js";
import { renderDeploys, DEPLOYS_POLL_MS } from "./deploys.js";

const POLL_MS = 1000;
const MINUTE_POLL_MS = 30000;
const RUNS_POLL_MS = 10000;

/** Every card, chart and list from the latest status and history. */
function render() {
  const st = state.status;
  if (!st) return;
  const root = $("#scenarios");
  const names = st.scenarios.map((s) => s.name);
  for (const card of $$("article.scenario", root)) {
    if (!names.includes(card.dataset.scenario || "")) {
      dropCharts(card);
      card.remove();
    }
  }
  for (const s of st.scenarios) {
    let card = /** @type {HTMLElement | null} */ (root.querySelector(`article.scenario[data-scenario="${CSS.escape(s.name)}"]`));
    if (!card) {
      card = scenarioCard(s);
      root.append(card);
    }
    updateScenarioCard(card, s);
  }
  renderHeader(st); // after the cards: their controls get the enabled state too
  ensureSystemCards();
  drawAll();
  renderEvents();
}

let polling = false;

/** A history that could not be read (it may be turned off): nothing to merge. @returns {null} */
const noHistory = () => null;

/**
 * One poll: the status and the newest history rows (the 1 min rows and the runs less
 * often), then a render.
 * @param {boolean} force poll even while one is under way
 */
async function poll(force) {
  if (polling && !force) return;
  polling = true;
  try {
    const d1 = state.data["1s"];
    const [st, hist] = await Promise.all([fetchStatus(), fetchHistory("1s", d1.since).catch(noHistory)]);
    state.status = st;
    if (hist) merge("1s", hist);
    const now = Date.now();
    if (now - state.lastMinutePoll > MINUTE_POLL_MS) {
      state.lastMinutePoll = now;
      const hm = await fetchHistory("1m", state.data["1m"].since).catch(noHistory);
      if (hm) merge("1m", hm);
    }
    render();
    await renderSearch(st.search);
    if (!st.results_store) {
      $("#runs").hidden = true;
    } else if (now - state.lastRunsPoll > RUNS_POLL_MS) {
      state.lastRunsPoll = now;
      await renderRuns();
    }
    if (!st.soak) {
      $("#soak").hidden = true;
    } else if (now - state.lastSoakPoll > SOAK_POLL_MS) {
      state.lastSoakPoll = now;
      await renderSoak();
    }
    if (!st.deploys) {
      $("#deploys").hidden = true;
    } else if (now - state.lastDeploysPoll > DEPLOYS_POLL_MS) {
      state.lastDeploysPoll = now;
      await renderDeploys();
    }
    document.body.dataset.updated = String(now);
  } catch (e) {
    message(`soakd is not answering: ${e.message || e}`, true);
  } finally {
    polling = false;
  }
}

/**
 * The time range the charts show, in seconds (kept for the tab).
 * @param {number} r
 */
function setRange(r) {
  state.range = r;
  sessionStorage.setItem("soakd-range", String(r));
  for (const b of $$(".range button")) b.classList.toggle("on", Number(b.dataset.range) === r);
  drawAll();
}

// For the browser tests and the devtools console: what each chart holds.
window.soakd = {
  charts: () => [...charts.values()].map((c) => ({ id: c.def.id, points: Number(c.box.dataset.points), deploys: Number(c.box.dataset.deploys || 0) })),
  soak: () => [...soakCharts].map(([id, c]) => ({ id, points: Number(c.box.dataset.points), verdict: c.box.dataset.verdict || "", band: c.band, drawn: !!c.u })),
  /**
   * The newest value of a chart's line.
   * @param {string} chartId
   * @param {string} label
   */
  last(chartId, label) {
    const c = charts.get(chartId);
    if (!c || !c.u) return null;
    const i = c.u.series.findIndex((/** @type {{label: string}} */ s) => s.label === label);
    if (i < 1) return null;
    const d = c.u.data[i];
    for (let k = d.length - 1; k >= 0; k--) if (d[k] != null) return d[k];
    return null;
  },
};

onControlled(() => poll(true));
for (const b of $$(".range button")) b.addEventListener("click", () => setRange(Number(b.dataset.range)));
$("#reload-btn").addEventListener("click", () => control("POST", "/-/reload"));
$("#token-box").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = /** @type {HTMLInputElement} */ ($("#token"));
  state.token = input.value.trim();
  input.value = "";
  if (state.token) sessionStorage.setItem("soakd-token", state.token);
  render();
});
window.addEventListener("resize", drawAll);
// Colours are read from CSS when a chart is built: rebuild them when the scheme flips.
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  for (const c of charts.values()) c.sig = "";
  resetSoakCharts();
  state.lastSoakPoll = 0;
  state.runLevels = -1;
  render();
});
setRange(state.range);
poll(true);
setInterval(() => poll(false), POLL_MS);
