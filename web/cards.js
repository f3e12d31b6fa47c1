// @ts-check
// The cards: one per scenario (facts, controls, charts), one per database, buffered
// writer, visibility probe set and soakd itself; the events; the capacity search and
// the stored runs.

import { $, h } from "./dom.js";
import { fmtNum, fmtSecs, fmtPct, fmtBytes, fmtDuration, timeOf } from "./format.js";
import { getJSON } from "./api.js";
import { F, GROUP } from "./catalogue.js";
import { state, latest, namesOf } from "./store.js";
import { chartBox, charts, drawLoadChart } from "./charts.js";
import { scenarioCharts, systemCharts, SYSTEM_GROUPS, SYSTEM_TITLES } from "./layout.js";
import { control, message } from "./controls.js";

/** @typedef {import("./types.js").ScenarioStatus} ScenarioStatus */
/** @typedef {import("./types.js").SloStatus} SloStatus */
/** @typedef {import("./types.js").SearchProgress} SearchProgress */

/**
 * A scenario's card: its facts, its controls and its charts.
 * @param {ScenarioStatus} st
 * @returns {HTMLElement}
 */
export function scenarioCard(st) {
  const name = st.name;
  const rateIn = /** @type {HTMLInputElement} */ (h("input", { type: "number", min: "0", step: "any", placeholder: "rate/s", "aria-label": `rate override for ${name}`, class: "control", "data-role": "rate" }));
  const path = `/api/v1/scenarios/${encodeURIComponent(name)}`;
  return h("article", { class: "card scenario", "data-scenario": name },
    h("header", {},
      h("h2", { text: name }),
      h("span", { class: "badge", "data-role": "state" }),
      h("span", { class: "muted", "data-role": "stage" }),
      h("span", { class: "grow" }),
      h("span", { class: "muted", text: `→ ${st.target}` })),
    h("div", { class: "facts", "data-role": "facts" }),
    h("div", { class: "controls" },
      h("button", { type: "button", class: "control", "data-role": "pause", onclick: () => {
        const paused = state.status?.scenarios.find((s) => s.name === name)?.state === "paused";
        control("POST", `${path}/${paused ? "resume" : "pause"}`);
      } }, "Pause"),
      rateIn,
      h("button", { type: "button", class: "control", "data-role": "set-rate", onclick: () => {
        const v = Number(rateIn.value);
        if (rateIn.value === "" || !(v >= 0)) return message("Type a rate per second (0 or more) first.", true);
        control("PUT", `${path}/rate`, { rate: v });
      } }, "Set rate"),
      h("button", { type: "button", class: "control", "data-role": "clear-rate", onclick: () => control("DELETE", `${path}/rate`) }, "Back to schedule")),
    h("div", { class: "charts" }, scenarioCharts(name).map(chartBox)));
}

/**
 * The rolling SLO (soakd_slo_ok): met or breached over its window, each objective's
 * value against its limit, and the error budget's burn rate.
 * @param {SloStatus | undefined} slo
 * @returns {HTMLElement[]}
 */
function sloFacts(slo) {
  if (!slo) return [];
  const fmt = (/** @type {import("./types.js").Objective} */ o) => (o.name === "error_rate" ? fmtPct : fmtSecs);
  const objectives = slo.objectives.map((o) =>
    h("span", { class: o.ok ? "" : "bad", text: `${o.name.replace("_", " ")} ${fmt(o)(o.value)} ≤ ${fmt(o)(o.limit)}` }));
  const out = [h("span", { "data-role": "slo" }, `SLO ${fmtDuration(slo.window_seconds)} `,
    h("span", { class: `badge ${slo.ok ? "ok" : "bad"}`, "data-role": "slo-state", text: slo.ok ? "met" : "breached" }),
    " ", ...objectives.flatMap((o, i) => (i ? [", ", o] : [o])))];
  if (slo.burn_rate_5m != null) {
    out.push(h("span", {}, "burn 5m/1h ", h("b", { text: `${fmtNum(slo.burn_rate_5m)} / ${fmtNum(slo.burn_rate_1h)}` })));
  }
  // With verdicts.prometheus: judged over every shard, or (while Prometheus cannot
  // answer) from this process alone, and why.
  if (slo.source === "prometheus") {
    out.push(h("span", { "data-role": "slo-source" }, "over ", h("b", { text: `${slo.shards} shard${slo.shards === 1 ? "" : "s"}` }), " (Prometheus)"));
  } else if (slo.prometheus_error) {
    out.push(h("span", { "data-role": "slo-source", class: "bad", title: slo.prometheus_error }, "this shard only: ", slo.prometheus_error));
  }
  const g = slo.guard;
  if (g) {
    const held = g.suspended ? "suspended (capacity search)" : g.factor === 0 ? "paused" : g.factor < 1 ? `rate at ${fmtNum(g.factor * 100)} %` : "watching";
    out.push(h("span", { "data-role": "guard", class: g.factor < 1 && !g.suspended ? "bad" : "" }, "guard ", h("b", { text: held }),
      g.last_action ? ` · last: ${g.last_action.replace("_", " ")}` : ""));
  }
  return out;
}

/**
 * Refreshes a scenario card from its status. The quantiles say which window they cover.
 * @param {HTMLElement} card
 * @param {ScenarioStatus} st
 */
export function updateScenarioCard(card, st) {
  const overridden = st.rate_override != null && st.state === "running";
  const shown = overridden ? "overridden" : st.state;
  const badge = $('[data-role="state"]', card);
  badge.textContent = shown;
  badge.className = `badge ${shown}`;
  const left = st.stage_remaining_seconds != null ? ` · ${fmtDuration(st.stage_remaining_seconds)} left` : "";
  $('[data-role="stage"]', card).textContent = overridden ? `override ${fmtNum(st.rate_override)}/s (schedule: ${st.stage})` : st.stage + left;
  const errors = Object.values(st.errors || {}).reduce((a, b) => a + b, 0);
  const lag = latest(GROUP.scenario, st.name, F.scenario.lag_p99);
  const q = st.latency_seconds;
  $('[data-role="facts"]', card).replaceChildren(
    h("span", {}, "target ", h("b", { text: fmtNum(st.target_rate) + "/s" })),
    // The last second's rate when the history has it (the status API's is a 10 s mean).
    h("span", {}, "achieved ", h("b", { "data-role": "achieved", text: fmtNum(latest(GROUP.scenario, st.name, F.scenario.achieved_rate) ?? st.achieved_rate) + "/s" })),
    h("span", { title: `over the last ${fmtDuration(q.window_seconds)}` }, `p50/p95/p99 (${fmtDuration(q.window_seconds)}) `, h("b", { "data-role": "quantiles", text: [q.p50, q.p95, q.p99].map(fmtSecs).join(" / ") })),
    h("span", {}, "in flight ", h("b", { text: `${st.in_flight} / ${st.max_in_flight}` })),
    h("span", {}, "errors ", h("b", { text: fmtNum(errors, 0) })),
    h("span", {}, "dropped ", h("b", { text: fmtNum(st.dropped_total, 0) })),
    h("span", {}, "lag p99 ", h("b", { text: fmtSecs(lag) })),
    ...sloFacts((state.status?.slo || {})[st.name]));
  $('[data-role="pause"]', card).textContent = st.state === "paused" ? "Resume" : "Pause";
}

/** One card per database, buffered writer, visibility probe set and soakd itself. */
export function ensureSystemCards() {
  const root = $("#systems");
  for (const group of SYSTEM_GROUPS) {
    for (const name of namesOf(group)) {
      const id = `${group}:${name}`;
      let card = /** @type {HTMLElement | null} */ (root.querySelector(`[data-system="${CSS.escape(id)}"]`));
      if (!card) {
        card = h("article", { class: `card ${group}`, "data-system": id },
          h("header", {}, h("h2", { text: SYSTEM_TITLES[group](name) }), h("span", { class: "facts", "data-role": "facts" })),
          h("div", { class: "charts" }, systemCharts(group, name).map(chartBox)));
        root.append(card);
      }
      $('[data-role="facts"]', card).replaceChildren(...systemFacts(group, name));
    }
  }
}

/**
 * @param {import("./catalogue.js").Group} group
 * @param {string} name
 * @returns {HTMLElement[]}
 */
function systemFacts(group, name) {
  if (group === GROUP.postgres) {
    const P = F.postgres;
    const up = latest(group, name, P.pg_up);
    return [
      h("span", {}, "pool ", h("b", { text: `${fmtNum(latest(group, name, P.pool_in_use), 0)} / ${fmtNum(latest(group, name, P.pool_max), 0)}` })),
      ...(up == null ? [] : [h("span", { class: `badge ${up >= 1 ? "ok" : "bad"}`, text: up >= 1 ? "pg_up" : "pg down" })]),
    ];
  }
  if (group === GROUP.buffer) {
    return [h("span", {}, "fill ", h("b", { text: `${fmtNum(latest(group, name, F.buffer.fill), 0)} / ${fmtNum(latest(group, name, F.buffer.limit), 0)}` }))];
  }
  if (group === GROUP.visibility) {
    const V = F.visibility;
    return [
      h("span", {}, "p50/p95/p99 ", h("b", { text: [V.p50, V.p95, V.p99].map((f) => fmtSecs(latest(group, name, f))).join(" / ") })),
      h("span", {}, " pending ", h("b", { text: `${fmtNum(latest(group, name, V.pending), 0)} / ${fmtNum(latest(group, name, V.max_pending), 0)}` })),
    ];
  }
  return [
    h("span", {}, "CPU ", h("b", { text: fmtNum(latest(group, name, F.process.cpu_cores), 2) })),
    h("span", {}, " RSS ", h("b", { text: fmtBytes(latest(group, name, F.process.rss_bytes)) })),
  ];
}

/** The newest events, newest first. */
export function renderEvents() {
  const list = $("#events");
  const evs = [...state.events.values()].sort((a, b) => b.id - a.id).slice(0, 100);
  list.replaceChildren(...evs.map((e) => h("li", { "data-kind": e.kind },
    h("time", { datetime: new Date(e.t_ms).toISOString(), text: timeOf(e.t_ms) }),
    h("span", { class: "kind", text: e.kind.replace("_", " ") }),
    e.scenario ? h("b", { text: `${e.scenario} ` }) : "",
    e.message)));
  if (!evs.length) list.replaceChildren(h("li", { class: "muted", text: "nothing yet" }));
}

/**
 * The capacity search's panel, when one is configured.
 * @param {SearchProgress | null} p
 */
export async function renderSearch(p) {
  const box = $("#search");
  if (!p) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const left = p.level_remaining_seconds != null ? ` · ${fmtDuration(p.level_remaining_seconds)} left in this level` : "";
  const plan = (p.plan || []).map((l) => h("li", {}, h("b", { text: l.scenario }), `: ${l.levels.map((r) => fmtNum(r)).join(", ")} /s`, l.then != null ? ` → soak at ${fmtNum(l.then)}/s` : " → back to its schedule"));
  if (!$("[data-role=search-head]", box)) {
    box.replaceChildren(
      h("div", { "data-role": "search-head" }),
      h("ul", { class: "plan", "data-role": "plan" }),
      h("div", { "data-role": "levels" }),
      chartBox({ id: "search-latency", title: "Latency vs offered load (levels measured so far)", group: "search", name: "", unit: "s", series: [] }));
  }
  const stateClass = p.state === "failed" ? "failed" : p.state === "complete" || p.state === "scheduled" ? "ok" : "warn";
  $("[data-role=search-head]", box).replaceChildren(
    h("h2", { text: `Capacity search ${p.name || ""}` }),
    h("span", { class: `badge ${stateClass}`, "data-role": "search-state", text: p.state }),
    h("div", { class: "facts" },
      p.leader ? h("span", { "data-role": "leader" }, "following ", h("a", { href: p.leader, text: p.leader }), " (shard 0 runs the search; this shard applies its share of each level)") : "",
      p.run_id ? h("span", {}, "run ", h("a", { href: `${p.leader || ""}/runs/${encodeURIComponent(p.run_id)}`, text: p.run_id })) : "",
      p.level ? h("span", {}, "level ", h("b", { text: p.level }), p.phase ? ` (${p.phase})` : "", left) : "",
      h("span", {}, "levels done ", h("b", { text: `${p.levels_done} of at most ${p.levels_max}` })),
      p.next_run_at != null ? h("span", { "data-role": "next-run" }, "next run ", h("b", { text: new Date(p.next_run_at * 1000).toLocaleString() }), ` (in ${fmtDuration(Math.max(0, p.next_run_at - Date.now() / 1000))})`) : "",
      p.runs_completed > 1 ? h("span", { text: `${p.runs_completed} runs since start` }) : "",
      p.resumed ? h("span", { text: `${p.resumed} resumed` }) : "",
      p.last ? h("span", {}, "last: ", h("b", { text: `${p.last.level} ${p.last.verdict}` }), ` — ${p.last.reason}`) : "",
      p.error ? h("span", { class: "badge bad", text: p.error }) : "",
      p.leader_error ? h("span", { class: "badge bad", text: p.leader_error }) : ""));
  $("[data-role=plan]", box).replaceChildren(...plan);
  // A follower's runs are in its leader's store.
  if (p.run_id && !p.leader && (p.levels_done !== state.runLevels || p.run_id !== state.runId)) {
    state.runLevels = p.levels_done;
    state.runId = p.run_id;
    try {
      renderRunLevels(await getJSON(`/api/v1/runs/${encodeURIComponent(p.run_id)}`));
    } catch (e) {
      /* the store may not have the run yet */
    }
  }
}

/**
 * A run's levels as a table, and latency against offered load.
 * @param {any} run `GET /api/v1/runs/{id}`
 */
export function renderRunLevels(run) {
  const box = $("#search");
  const rows = run.levels.map((/** @type {any} */ l) => h("tr", {},
    h("td", { text: String(l.seq + 1) }),
    h("td", { text: l.spec.rates.map((/** @type {[string, number]} */ [s, r]) => `${s} ${fmtNum(r)}/s`).join(", ") }),
    h("td", { text: l.scenarios.map((/** @type {any} */ s) => fmtSecs(s.latency.p95)).join(" / ") }),
    h("td", { text: l.scenarios.map((/** @type {any} */ s) => fmtPct(s.error_ratio)).join(" / ") }),
    h("td", { class: `verdict ${l.verdict}`, text: l.verdict }),
    h("td", { text: l.reason })));
  $("[data-role=levels]", box).replaceChildren(rows.length ? h("table", {}, h("tr", {}, ...["#", "offered", "p95", "errors", "verdict", "why"].map((t) => h("th", { text: t }))), ...rows) : h("p", { class: "muted", text: "no level measured yet" }));
  const c = charts.get("search-latency");
  if (c) drawLoadChart(c, run.levels.map((/** @type {any} */ l) => l.scenarios));
}

/** The stored capacity runs, newest first. */
export async function renderRuns() {
  const box = $("#runs");
  let list;
  try {
    list = (await getJSON("/api/v1/runs")).runs;
  } catch (e) {
    box.hidden = true; // no results store
    return;
  }
  box.hidden = false;
  box.replaceChildren(h("h2", { text: "Stored capacity runs" }),
    list.length
      ? h("table", { class: "runs" }, h("tr", {}, ...["run", "name", "status", "started", "levels"].map((t) => h("th", { text: t }))),
        ...list.slice(0, 50).map((/** @type {any} */ r) => h("tr", {},
          h("td", {}, h("a", { href: `/runs/${encodeURIComponent(r.id)}`, text: r.id })),
          h("td", { text: r.name }), h("td", { text: r.status }),
          h("td", { text: new Date(r.started_at * 1000).toLocaleString() }), h("td", { text: String(r.levels) }))))
      : h("p", { class: "muted", text: "no runs stored yet" }));
}
