// soakd's live page. No build step, no framework: uPlot draws the charts, everything
// else is plain DOM. Data comes from soakd's own API only:
//   /api/v1/status   every second: scenarios, search progress, reload state, control rules
//   /api/v1/history  every second (1 s rows) and every 30 s (1 min rows), incrementally
//                    with ?since=<newest row seen>, so each poll carries a row or two
//   /api/v1/runs     every 10 s: the stored capacity runs
// Controls go through the control API with its rules: a bearer token when one is
// configured (typed once, kept in sessionStorage, never in a URL).
"use strict";
(() => {
  const POLL_MS = 1000;
  const MINUTE_POLL_MS = 30000;
  const RUNS_POLL_MS = 10000;
  const MAX_EVENTS = 1000;
  const CHART_HEIGHT = 170;

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of kids.flat()) if (c != null) e.append(c);
    return e;
  }
  const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  // ---- formatting ----
  function fmtNum(v, digits = 1) {
    if (v == null || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(digits) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(digits) + "k";
    if (a >= 100) return v.toFixed(0);
    return v.toFixed(a < 10 && a > 0 && v % 1 !== 0 ? Math.max(digits, 1) : 0);
  }
  function fmtSecs(v) {
    if (v == null || Number.isNaN(v)) return "–";
    if (v === 0) return "0";
    if (v < 0.001) return (v * 1e6).toFixed(0) + " µs";
    if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 2 : v < 0.1 ? 1 : 0) + " ms";
    return v.toFixed(2) + " s";
  }
  const fmtPct = (v) => (v == null || Number.isNaN(v) ? "–" : (v * 100).toFixed(v < 0.01 && v > 0 ? 2 : 1) + " %");
  const fmtBytes = (v) => (v == null || Number.isNaN(v) ? "–" : (v / 1048576).toFixed(v >= 10485760 ? 0 : 1) + " MiB");
  function fmtDuration(s) {
    if (s == null) return "–";
    s = Math.max(0, Math.round(s));
    const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `${d}d ${hh}h`;
    if (hh) return `${hh}h ${m}m`;
    if (m) return s % 60 ? `${m}m ${s % 60}s` : `${m}m`;
    return `${s}s`;
  }
  const FORMAT = { rate: (v) => fmtNum(v) + "/s", s: fmtSecs, ratio: fmtPct, count: (v) => fmtNum(v, 0), bytes: fmtBytes, cores: (v) => fmtNum(v, 2) };
  const timeOf = (ms) => new Date(ms).toLocaleTimeString();

  // ---- state ----
  const state = {
    range: Number(sessionStorage.getItem("soakd-range")) || 3600,
    status: null,
    data: {
      "1s": { t: [], s: new Map(), since: 0, cap: 3600 },
      "1m": { t: [], s: new Map(), since: 0, cap: 1440 },
    },
    events: new Map(),
    charts: new Map(),
    token: sessionStorage.getItem("soakd-token") || "",
    lastMinutePoll: 0,
    lastRunsPoll: 0,
    runLevels: -1,
    runId: null,
    runChart: null,
  };
  const key = (g, n, f) => `${g}|${n}|${f}`;

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  }

  // Appends a history payload to the local copy, padding series that are missing on
  // either side so every column stays as long as the time column; keeps at most the
  // ring's capacity, like the server.
  function merge(res, p) {
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

  const resolution = () => (state.range > 3600 ? "1m" : "1s");

  // The latest value of a series at 1 s resolution.
  function latest(group, name, field) {
    const arr = state.data["1s"].s.get(key(group, name, field));
    if (!arr) return null;
    for (let i = arr.length - 1; i >= 0 && i >= arr.length - 5; i--) if (arr[i] != null) return arr[i];
    return null;
  }

  // Fields of a group/name present in the data, in a stable order.
  function fieldsOf(group, name, prefix) {
    const out = new Set();
    for (const res of ["1s", "1m"]) {
      for (const k of state.data[res].s.keys()) {
        const [g, n, f] = k.split("|");
        if (g === group && n === name && f.startsWith(prefix)) out.add(f);
      }
    }
    return [...out].sort();
  }

  const hasSeries = (group, name, field) => ["1s", "1m"].some((res) => state.data[res].s.has(key(group, name, field)));

  function everNonZero(group, name, field) {
    for (const res of ["1s", "1m"]) {
      const arr = state.data[res].s.get(key(group, name, field));
      if (arr && arr.some((v) => v != null && v !== 0)) return true;
    }
    return false;
  }

  function namesOf(group) {
    const out = new Set();
    for (const k of state.data["1s"].s.keys()) {
      const [g, n] = k.split("|");
      if (g === group) out.add(n);
    }
    return [...out].sort();
  }

  // ---- charts ----
  const PALETTE = ["--c1", "--c2", "--c3", "--c4", "--c5", "--c6", "--c7"];
  const EVENT_COLOURS = { stage: "--c6", override: "--c5", pause: "--c3", resume: "--c2", reload: "--c4", reload_failed: "--c3", search_level: "--c1", search: "--c1", guard: "--c3" };

  // Vertical marks at the events' times; the event list names them.
  function eventsPlugin(def) {
    return {
      hooks: {
        draw: [
          (u) => {
            const [x0, x1] = [u.scales.x.min, u.scales.x.max];
            const ctx = u.ctx;
            ctx.save();
            ctx.lineWidth = 1;
            ctx.setLineDash([3, 3]);
            for (const ev of state.events.values()) {
              if (def.group === "scenario" && ev.scenario && ev.scenario !== def.name) continue;
              const t = ev.t_ms / 1000;
              if (t < x0 || t > x1) continue;
              const x = Math.round(u.valToPos(t, "x", true));
              ctx.strokeStyle = cssVar(EVENT_COLOURS[ev.kind] || "--c7");
              ctx.beginPath();
              ctx.moveTo(x, u.bbox.top);
              ctx.lineTo(x, u.bbox.top + u.bbox.height);
              ctx.stroke();
            }
            ctx.restore();
          },
        ],
      },
    };
  }

  // def: {id, title, group, name, unit, unit2, series: [{field | prefix, label, dash, scale, colour}]}
  function resolveSeries(def) {
    const out = [];
    for (const s of def.series) {
      if (s.prefix != null) {
        // Only the kinds (states) that were ever non-zero: a server reports every state.
        for (const f of fieldsOf(def.group, def.name, s.prefix)) {
          if (!everNonZero(def.group, def.name, f)) continue;
          out.push({ ...s, field: f, label: (s.label || "") + f.slice(s.prefix.length) });
        }
      } else if (!s.optional || hasSeries(def.group, def.name, s.field)) {
        out.push(s);
      }
    }
    return out;
  }

  function chartData(def, series) {
    const d = state.data[resolution()];
    const last = d.t.length ? d.t[d.t.length - 1] : Date.now();
    const from = last - state.range * 1000;
    let i0 = d.t.findIndex((t) => t > from);
    if (i0 < 0) i0 = d.t.length;
    const xs = d.t.slice(i0).map((t) => t / 1000);
    const log = def.unit === "s";
    const ys = series.map((s) => {
      const arr = d.s.get(key(def.group, def.name, s.field));
      if (!arr) return new Array(xs.length).fill(null);
      const part = arr.slice(i0);
      // A log scale has no 0: show a zero latency at 1 µs, the windows' resolution.
      return log && s.scale !== "r" ? part.map((v) => (v != null && v <= 0 ? 1e-6 : v)) : part;
    });
    return [xs, ...ys];
  }

  function makeOpts(def, series, width) {
    const fg = cssVar("--muted"), grid = cssVar("--grid");
    const f1 = FORMAT[def.unit] || FORMAT.count;
    const f2 = FORMAT[def.unit2] || f1;
    const axis = (scale, side, fmt) => ({
      scale, side, stroke: fg, size: 62,
      grid: { stroke: grid, width: 1, show: side === 3 },
      ticks: { stroke: grid, width: 1 },
      values: (u, vals) => vals.map((v) => (v == null ? "" : fmt(v))),
    });
    const zeroBased = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];
    // Latency on a log scale: milliseconds stay readable under a seconds-high SLO line.
    const scales = { x: { time: true }, y: def.unit === "s" ? { distr: 3, log: 10 } : { range: zeroBased } };
    const axes = [{ stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } }, axis("y", 3, f1)];
    if (series.some((s) => s.scale === "r")) {
      scales.r = { range: def.unit2 === "ratio" ? [0, 1] : zeroBased };
      axes.push(axis("r", 1, f2));
    }
    return {
      width, height: CHART_HEIGHT,
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      scales, axes,
      series: [
        { value: (u, v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString()) },
        ...series.map((s, i) => ({
          label: s.label || s.field,
          scale: s.scale === "r" ? "r" : "y",
          stroke: cssVar(s.colour || PALETTE[i % PALETTE.length]),
          width: s.dash ? 1 : 1.6,
          dash: s.dash ? [6, 4] : undefined,
          value: (u, v) => (v == null ? "–" : (s.scale === "r" ? f2 : f1)(v)),
          spanGaps: false,
          points: { show: false },
        })),
      ],
      plugins: [eventsPlugin(def)],
    };
  }

  function chartBox(def) {
    const box = h("div", { class: "chart", "data-chart": def.id, "data-points": "0" }, h("h3", { text: def.title }), h("div", { class: "plot" }));
    state.charts.set(def.id, { def, box, u: null, sig: "" });
    return box;
  }

  function drawChart(c) {
    const series = resolveSeries(c.def);
    const sig = series.map((s) => s.field).join(",");
    const data = chartData(c.def, series);
    const plot = $(".plot", c.box);
    const width = Math.max(200, plot.clientWidth || c.box.clientWidth || 300);
    if (!series.length) {
      if (c.u) c.u.destroy();
      c.u = null;
      plot.replaceChildren(h("div", { class: "empty", text: "no data yet" }));
      c.box.dataset.points = "0";
      return;
    }
    if (!c.u || c.sig !== sig) {
      if (c.u) c.u.destroy();
      plot.replaceChildren();
      c.u = new uPlot(makeOpts(c.def, series, width), data, plot);
      c.sig = sig;
    } else {
      c.u.setData(data);
      if (Math.abs(c.u.width - width) > 2) c.u.setSize({ width, height: CHART_HEIGHT });
    }
    let points = 0;
    let newest = null;
    for (let i = 1; i < data.length; i++) {
      data[i].forEach((v, k) => {
        if (v == null) return;
        points++;
        if (newest == null || k > newest) newest = k;
      });
    }
    c.box.dataset.points = String(points);
    // Away from the cursor, the legend shows the newest values instead of dashes.
    if (newest != null && !(c.u.cursor.left >= 0)) c.u.setLegend({ idx: newest });
  }

  // ---- cards ----
  function scenarioCharts(name) {
    const g = "scenario";
    return [
      { id: `${name}-rate`, title: "Rate: target vs achieved", group: g, name, unit: "rate", series: [
        { field: "target_rate", label: "target", dash: true, colour: "--c7" },
        { field: "achieved_rate", label: "achieved", colour: "--c1" },
        { field: "completed_rate", label: "completed", colour: "--c2" },
      ] },
      { id: `${name}-latency`, title: "Latency from intended start (last 5 s)", group: g, name, unit: "s", series: [
        { field: "p50", label: "p50", colour: "--c2" },
        { field: "p95", label: "p95", colour: "--c1" },
        { field: "p99", label: "p99", colour: "--c4" },
        { field: "slo_p95", label: "SLO p95", dash: true, colour: "--slo", optional: true },
        { field: "slo_p99", label: "SLO p99", dash: true, colour: "--c5", optional: true },
      ] },
      { id: `${name}-errors`, title: "Errors by kind (share of completed)", group: g, name, unit: "ratio", series: [
        { field: "error_ratio", label: "all", colour: "--c7" },
        { prefix: "error_ratio.", label: "" },
      ] },
      { id: `${name}-inflight`, title: "In flight vs cap, dropped", group: g, name, unit: "count", unit2: "rate", series: [
        { field: "in_flight", label: "in flight", colour: "--c1" },
        { field: "max_in_flight", label: "cap", dash: true, colour: "--c7" },
        { field: "dropped_rate", label: "dropped/s", scale: "r", colour: "--c3" },
      ] },
    ];
  }

  function controlsEnabled() {
    const c = state.status && state.status.control;
    if (!c) return false;
    if (!c.enabled) return false;
    if (c.token_required && !state.token) return false;
    return true;
  }

  function scenarioCard(st) {
    const name = st.name;
    const rateIn = h("input", { type: "number", min: "0", step: "any", placeholder: "rate/s", "aria-label": `rate override for ${name}`, class: "control", "data-role": "rate" });
    const card = h("article", { class: "card scenario", "data-scenario": name },
      h("header", {},
        h("h2", { text: name }),
        h("span", { class: "badge", "data-role": "state" }),
        h("span", { class: "muted", "data-role": "stage" }),
        h("span", { class: "grow" }),
        h("span", { class: "muted", text: `→ ${st.target}` })),
      h("div", { class: "facts", "data-role": "facts" }),
      h("div", { class: "controls" },
        h("button", { type: "button", class: "control", "data-role": "pause", onclick: () => {
          const paused = state.status.scenarios.find((s) => s.name === name)?.state === "paused";
          control("POST", `/api/v1/scenarios/${encodeURIComponent(name)}/${paused ? "resume" : "pause"}`);
        } }, "Pause"),
        rateIn,
        h("button", { type: "button", class: "control", "data-role": "set-rate", onclick: () => {
          const v = Number(rateIn.value);
          if (rateIn.value === "" || !(v >= 0)) return message("Type a rate per second (0 or more) first.", true);
          control("PUT", `/api/v1/scenarios/${encodeURIComponent(name)}/rate`, { rate: v });
        } }, "Set rate"),
        h("button", { type: "button", class: "control", "data-role": "clear-rate", onclick: () =>
          control("DELETE", `/api/v1/scenarios/${encodeURIComponent(name)}/rate`) }, "Back to schedule")),
      h("div", { class: "charts" }, scenarioCharts(name).map(chartBox)));
    return card;
  }

  // The rolling SLO (soakd_slo_ok): met or breached over its window, each objective's
  // value against its limit, and the error budget's burn rate.
  function sloFacts(slo) {
    if (!slo) return [];
    const fmt = (o) => (o.name === "error_rate" ? fmtPct : fmtSecs);
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

  function updateScenarioCard(card, st) {
    const overridden = st.rate_override != null && st.state === "running";
    const shown = overridden ? "overridden" : st.state;
    const badge = $('[data-role="state"]', card);
    badge.textContent = shown;
    badge.className = `badge ${shown}`;
    const left = st.stage_remaining_seconds != null ? ` · ${fmtDuration(st.stage_remaining_seconds)} left` : "";
    $('[data-role="stage"]', card).textContent = overridden ? `override ${fmtNum(st.rate_override)}/s (schedule: ${st.stage})` : st.stage + left;
    const errors = Object.values(st.errors || {}).reduce((a, b) => a + b, 0);
    const lag = latest("scenario", st.name, "lag_p99");
    $('[data-role="facts"]', card).replaceChildren(
      h("span", {}, "target ", h("b", { text: fmtNum(st.target_rate) + "/s" })),
      // The last second's rate when the history has it (the status API's is a 10 s mean).
      h("span", {}, "achieved ", h("b", { "data-role": "achieved", text: fmtNum(latest("scenario", st.name, "achieved_rate") ?? st.achieved_rate) + "/s" })),
      h("span", {}, "p50/p95/p99 ", h("b", { text: [st.latency_seconds.p50, st.latency_seconds.p95, st.latency_seconds.p99].map(fmtSecs).join(" / ") })),
      h("span", {}, "in flight ", h("b", { text: `${st.in_flight} / ${st.max_in_flight}` })),
      h("span", {}, "errors ", h("b", { text: fmtNum(errors, 0) })),
      h("span", {}, "dropped ", h("b", { text: fmtNum(st.dropped_total, 0) })),
      h("span", {}, "lag p99 ", h("b", { text: fmtSecs(lag) })),
      ...sloFacts((state.status.slo || {})[st.name]));
    $('[data-role="pause"]', card).textContent = st.state === "paused" ? "Resume" : "Pause";
  }

  function systemCharts(group, name) {
    if (group === "postgres") {
      return [
        { id: `pg-${name}-pool`, title: "Pool: in use / idle / max", group, name, unit: "count", series: [
          { field: "pool_in_use", label: "in use", colour: "--c1" },
          { field: "pool_idle", label: "idle", colour: "--c2" },
          { field: "pool_max", label: "max", dash: true, colour: "--c7" },
        ] },
        { id: `pg-${name}-acquire`, title: "Acquire p95, acquire timeouts", group, name, unit: "s", unit2: "rate", series: [
          { field: "acquire_p95", label: "acquire p95", colour: "--c4" },
          { field: "acquire_timeouts_rate", label: "timeouts/s", scale: "r", colour: "--c3" },
        ] },
        { id: `pg-${name}-tps`, title: "Transactions and cache hit ratio", group, name, unit: "rate", unit2: "ratio", series: [
          { field: "tps", label: "transactions/s", colour: "--c1", optional: true },
          { field: "cache_hit_ratio", label: "cache hit", scale: "r", colour: "--c2", optional: true },
          { field: "pg_up", label: "pg_up", scale: "r", dash: true, colour: "--c7", optional: true },
        ] },
        { id: `pg-${name}-conns`, title: "Server connections by state", group, name, unit: "count", series: [
          { prefix: "connections.", label: "" },
        ] },
      ];
    }
    if (group === "buffer") {
      return [
        { id: `buf-${name}-fill`, title: "Fill vs limit", group, name, unit: "count", series: [
          { field: "fill", label: "entries", colour: "--c1" },
          { field: "limit", label: "limit", dash: true, colour: "--c7" },
        ] },
        { id: `buf-${name}-latency`, title: "Flush p95, end-to-end p95", group, name, unit: "s", series: [
          { field: "flush_p95", label: "flush p95", colour: "--c4" },
          { field: "e2e_p95", label: "E2E p95", colour: "--c1" },
        ] },
        { id: `buf-${name}-rates`, title: "Flushed, refused", group, name, unit: "rate", series: [
          { field: "flushed_rate", label: "flushed/s", colour: "--c2" },
          { field: "refused_rate", label: "refused/s", colour: "--c3" },
          { field: "flush_errors_rate", label: "flush errors/s", colour: "--c5" },
        ] },
      ];
    }
    if (group === "visibility") {
      return [
        { id: `vis-${name}-latency`, title: "Write → visible p50 / p95 / p99", group, name, unit: "s", series: [
          { field: "p50", label: "p50", colour: "--c2" },
          { field: "p95", label: "p95", colour: "--c1" },
          { field: "p99", label: "p99", colour: "--c4" },
        ] },
        { id: `vis-${name}-pending`, title: "Probes pending vs max_pending", group, name, unit: "count", series: [
          { field: "pending", label: "pending", colour: "--c1" },
          { field: "max_pending", label: "max_pending", dash: true, colour: "--c7" },
        ] },
        { id: `vis-${name}-rates`, title: "Visible, not visible (deadline), polls", group, name, unit: "rate", series: [
          { field: "visible_rate", label: "visible/s", colour: "--c2" },
          { field: "not_visible_rate", label: "not visible/s", colour: "--c3" },
          { field: "polls_rate", label: "polls/s", colour: "--c6", dash: true },
        ] },
      ];
    }
    return [
      { id: "process-cpu", title: "soakd CPU (cores)", group, name, unit: "cores", series: [{ field: "cpu_cores", label: "cores", colour: "--c1" }] },
      { id: "process-memory", title: "soakd memory", group, name, unit: "bytes", series: [
        { field: "rss_bytes", label: "RSS", colour: "--c4" },
        { field: "heap_bytes", label: "allocator committed", colour: "--c2" },
        { field: "bounded_bytes", label: "bounded structures", colour: "--c5" },
        { field: "history_bytes", label: "history rings", colour: "--c6" },
      ] },
    ];
  }

  const SYSTEM_TITLES = { postgres: (n) => `Database ${n}`, buffer: (n) => `Buffered writer ${n}`, visibility: (n) => `Visibility ${n}: write → readable`, process: () => "soakd itself" };

  function ensureSystemCards() {
    const root = $("#systems");
    for (const group of ["postgres", "buffer", "visibility", "process"]) {
      for (const name of namesOf(group)) {
        const id = `${group}:${name}`;
        let card = root.querySelector(`[data-system="${CSS.escape(id)}"]`);
        if (!card) {
          card = h("article", { class: `card ${group}`, "data-system": id },
            h("header", {}, h("h2", { text: SYSTEM_TITLES[group](name) }), h("span", { class: "facts", "data-role": "facts" })),
            h("div", { class: "charts" }, systemCharts(group, name).map(chartBox)));
          root.append(card);
        }
        const facts = $('[data-role="facts"]', card);
        if (group === "postgres") {
          const up = latest(group, name, "pg_up");
          facts.replaceChildren(
            h("span", {}, "pool ", h("b", { text: `${fmtNum(latest(group, name, "pool_in_use"), 0)} / ${fmtNum(latest(group, name, "pool_max"), 0)}` })),
            up == null ? "" : h("span", { class: `badge ${up >= 1 ? "ok" : "bad"}`, text: up >= 1 ? "pg_up" : "pg down" }));
        } else if (group === "buffer") {
          facts.replaceChildren(h("span", {}, "fill ", h("b", { text: `${fmtNum(latest(group, name, "fill"), 0)} / ${fmtNum(latest(group, name, "limit"), 0)}` })));
        } else if (group === "visibility") {
          facts.replaceChildren(
            h("span", {}, "p50/p95/p99 ", h("b", { text: ["p50", "p95", "p99"].map((f) => fmtSecs(latest(group, name, f))).join(" / ") })),
            h("span", {}, " pending ", h("b", { text: `${fmtNum(latest(group, name, "pending"), 0)} / ${fmtNum(latest(group, name, "max_pending"), 0)}` })));
        } else {
          facts.replaceChildren(h("span", {}, "CPU ", h("b", { text: fmtNum(latest(group, name, "cpu_cores"), 2) })), h("span", {}, " RSS ", h("b", { text: fmtBytes(latest(group, name, "rss_bytes")) })));
        }
      }
    }
  }

  // ---- header, controls, events ----
  function renderHeader(st) {
    $("#version").textContent = `v${st.version}`;
    $("#uptime").textContent = `up ${fmtDuration(st.uptime_seconds)}`;
    $("#config").textContent = st.config_file || "embedded config";
    const r = st.reload || { successful: true, errors: [] };
    const badge = $("#reload-state");
    badge.textContent = r.successful ? "config ok" : "last reload failed";
    badge.className = `badge ${r.successful ? "ok" : "bad"}`;
    badge.title = `at ${new Date(r.at_ms).toLocaleString()}`;
    const errBox = $("#reload-error");
    errBox.hidden = r.successful;
    if (!r.successful) errBox.textContent = `The last reload was rejected (the running config is unchanged):\n${r.errors.join("\n")}`;
    const c = st.control || {};
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
    for (const e of $$(".control")) {
      e.disabled = !on;
      e.title = on ? e.title : note.textContent;
    }
  }

  let messageTimer = null;
  function message(text, bad) {
    const m = $("#message");
    m.hidden = false;
    m.textContent = text;
    m.className = `note${bad ? " error" : ""}`;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => (m.hidden = true), bad ? 10000 : 4000);
  }

  async function control(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    try {
      const r = await fetch(path, { method, headers, body: body == null ? undefined : JSON.stringify(body) });
      const j = await r.json().catch(() => ({}));
      if (!r.ok) {
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
    await poll(true);
  }

  function renderEvents() {
    const list = $("#events");
    const evs = [...state.events.values()].sort((a, b) => b.id - a.id).slice(0, 100);
    list.replaceChildren(...evs.map((e) => h("li", { "data-kind": e.kind },
      h("time", { datetime: new Date(e.t_ms).toISOString(), text: timeOf(e.t_ms) }),
      h("span", { class: "kind", text: e.kind.replace("_", " ") }),
      e.scenario ? h("b", { text: `${e.scenario} ` }) : "",
      e.message)));
    if (!evs.length) list.replaceChildren(h("li", { class: "muted", text: "nothing yet" }));
  }

  // ---- capacity search and stored runs ----
  async function renderSearch(p) {
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
    $("[data-role=search-head]", box).replaceChildren(
      h("h2", { text: `Capacity search ${p.name || ""}` }),
      h("span", { class: `badge ${p.state === "failed" ? "failed" : p.state === "complete" || p.state === "scheduled" ? "ok" : "warn"}`, "data-role": "search-state", text: p.state }),
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
        const run = await getJSON(`/api/v1/runs/${encodeURIComponent(p.run_id)}`);
        renderRunLevels(run);
      } catch (e) {
        /* the store may not have the run yet */
      }
    }
  }

  function renderRunLevels(run) {
    const box = $("#search");
    const rows = run.levels.map((l) => h("tr", {},
      h("td", { text: String(l.seq + 1) }),
      h("td", { text: l.spec.rates.map(([s, r]) => `${s} ${fmtNum(r)}/s`).join(", ") }),
      h("td", { text: l.scenarios.map((s) => fmtSecs(s.latency.p95)).join(" / ") }),
      h("td", { text: l.scenarios.map((s) => fmtPct(s.error_ratio)).join(" / ") }),
      h("td", { class: `verdict ${l.verdict}`, text: l.verdict }),
      h("td", { text: l.reason })));
    $("[data-role=levels]", box).replaceChildren(rows.length ? h("table", {}, h("tr", {}, ...["#", "offered", "p95", "errors", "verdict", "why"].map((t) => h("th", { text: t }))), ...rows) : h("p", { class: "muted", text: "no level measured yet" }));
    // Latency against offered load: one line per scenario and quantile, x = offered rate.
    const by = new Map();
    for (const l of run.levels) for (const s of l.scenarios) {
      if (!(s.offered_rate > 0)) continue;
      if (!by.has(s.scenario)) by.set(s.scenario, []);
      by.get(s.scenario).push(s);
    }
    const c = state.charts.get("search-latency");
    const plot = $(".plot", c.box);
    const xs = [...new Set([...by.values()].flat().map((s) => s.offered_rate))].sort((a, b) => a - b);
    if (!xs.length) {
      plot.replaceChildren(h("div", { class: "empty", text: "no level measured yet" }));
      c.box.dataset.points = "0";
      return;
    }
    const series = [];
    const data = [xs];
    let i = 0;
    for (const [name, levels] of by) for (const q of ["p95", "p99"]) {
      const at = new Map(levels.map((s) => [s.offered_rate, s.latency[q]]));
      data.push(xs.map((x) => (at.has(x) ? at.get(x) : null)));
      series.push({ label: `${name} ${q}`, stroke: cssVar(PALETTE[i++ % PALETTE.length]), width: 1.6, dash: q === "p99" ? [6, 4] : undefined, spanGaps: true, points: { show: true, size: 6 }, value: (u, v) => fmtSecs(v) });
    }
    const fg = cssVar("--muted"), grid = cssVar("--grid");
    if (c.u) c.u.destroy();
    plot.replaceChildren();
    c.u = new uPlot({
      width: Math.max(300, plot.clientWidth || 600), height: 220,
      scales: { x: { time: false }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, label: "offered /s", values: (u, v) => v.map((x) => fmtNum(x)) },
        { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 62, values: (u, v) => v.map(fmtSecs) },
      ],
      series: [{ label: "offered", value: (u, v) => (v == null ? "–" : fmtNum(v) + "/s") }, ...series],
    }, data, plot);
    let points = 0;
    for (let k = 1; k < data.length; k++) for (const v of data[k]) if (v != null) points++;
    c.box.dataset.points = String(points);
  }

  async function renderRuns() {
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
          ...list.slice(0, 50).map((r) => h("tr", {},
            h("td", {}, h("a", { href: `/runs/${encodeURIComponent(r.id)}`, text: r.id })),
            h("td", { text: r.name }), h("td", { text: r.status }),
            h("td", { text: new Date(r.started_at * 1000).toLocaleString() }), h("td", { text: String(r.levels) }))))
        : h("p", { class: "muted", text: "no runs stored yet" }));
  }

  // ---- the loop ----
  function render() {
    const st = state.status;
    if (!st) return;
    const root = $("#scenarios");
    const names = st.scenarios.map((s) => s.name);
    for (const card of $$("article.scenario", root)) {
      if (!names.includes(card.dataset.scenario)) {
        for (const b of $$(".chart", card)) {
          const c = state.charts.get(b.dataset.chart);
          if (c && c.u) c.u.destroy();
          state.charts.delete(b.dataset.chart);
        }
        card.remove();
      }
    }
    for (const s of st.scenarios) {
      let card = root.querySelector(`article.scenario[data-scenario="${CSS.escape(s.name)}"]`);
      if (!card) {
        card = scenarioCard(s);
        root.append(card);
      }
      updateScenarioCard(card, s);
    }
    renderHeader(st); // after the cards: their controls get the enabled state too
    ensureSystemCards();
    for (const c of state.charts.values()) if (c.def.group !== "search") drawChart(c);
    renderEvents();
  }

  let polling = false;
  async function poll(force) {
    if (polling && !force) return;
    polling = true;
    try {
      const d1 = state.data["1s"];
      const [st, hist] = await Promise.all([
        getJSON("/api/v1/status"),
        getJSON(`/api/v1/history?resolution=1s&since=${d1.since}`).catch(() => null),
      ]);
      state.status = st;
      if (hist) merge("1s", hist);
      const now = Date.now();
      if (now - state.lastMinutePoll > MINUTE_POLL_MS) {
        state.lastMinutePoll = now;
        const hm = await getJSON(`/api/v1/history?resolution=1m&since=${state.data["1m"].since}`).catch(() => null);
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
      document.body.dataset.updated = String(now);
    } catch (e) {
      message(`soakd is not answering: ${e.message || e}`, true);
    } finally {
      polling = false;
    }
  }

  function setRange(r) {
    state.range = r;
    sessionStorage.setItem("soakd-range", String(r));
    for (const b of $$(".range button")) b.classList.toggle("on", Number(b.dataset.range) === r);
    for (const c of state.charts.values()) if (c.def.group !== "search") drawChart(c);
  }

  // For the browser tests and the devtools console: what each chart holds.
  window.soakd = {
    charts: () => [...state.charts.values()].map((c) => ({ id: c.def.id, points: Number(c.box.dataset.points) })),
    last(chartId, label) {
      const c = state.charts.get(chartId);
      if (!c || !c.u) return null;
      const i = c.u.series.findIndex((s) => s.label === label);
      if (i < 1) return null;
      const d = c.u.data[i];
      for (let k = d.length - 1; k >= 0; k--) if (d[k] != null) return d[k];
      return null;
    },
  };

  for (const b of $$(".range button")) b.addEventListener("click", () => setRange(Number(b.dataset.range)));
  $("#reload-btn").addEventListener("click", () => control("POST", "/-/reload"));
  $("#token-box").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("#token").value.trim();
    $("#token").value = "";
    if (state.token) sessionStorage.setItem("soakd-token", state.token);
    render();
  });
  window.addEventListener("resize", () => { for (const c of state.charts.values()) if (c.def.group !== "search") drawChart(c); });
  // Colours are read from CSS when a chart is built: rebuild them when the scheme flips.
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    for (const c of state.charts.values()) c.sig = "";
    state.runLevels = -1;
    render();
  });
  setRange(state.range);
  poll(true);
  setInterval(() => poll(false), POLL_MS);
})();
