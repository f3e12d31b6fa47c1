// @ts-check
// The charts: a chart definition (layout.js) drawn with uPlot from the page's copy of
// the history, with soakd's events marked on the time axis.

import { $, h, cssVar } from "./dom.js";
import { FORMAT, fmtNum, fmtSecs } from "./format.js";
import { state, key, resolution, fieldsOf, hasSeries, everNonZero } from "./store.js";

/** @typedef {import("./catalogue.js").Group} Group */

/**
 * One line of a chart: a catalogue field, or a family (`prefix`) drawn as one line per
 * member (kind, state) that was ever non-zero.
 * @typedef {object} SeriesDef
 * @property {string} [field]
 * @property {string} [prefix]
 * @property {string} [label]
 * @property {boolean} [dash]
 * @property {"r"} [scale] the right-hand axis
 * @property {string} [colour] a CSS variable
 * @property {boolean} [optional] drawn only when the data has it
 */

/**
 * @typedef {object} ChartDef
 * @property {string} id
 * @property {string} title
 * @property {Group | "search"} group
 * @property {string} name
 * @property {string} unit a catalogue unit (format.js FORMAT)
 * @property {string} [unit2] the right-hand axis' unit
 * @property {SeriesDef[]} series
 */

/**
 * @typedef {object} Chart
 * @property {ChartDef} def
 * @property {HTMLElement} box
 * @property {any} u the uPlot instance, once drawn
 * @property {string} sig the fields it was built with
 */

export const CHART_HEIGHT = 170;
export const PALETTE = ["--c1", "--c2", "--c3", "--c4", "--c5", "--c6", "--c7"];
/** @type {Record<string, string>} */
const EVENT_COLOURS = { stage: "--c6", override: "--c5", pause: "--c3", resume: "--c2", reload: "--c4", reload_failed: "--c3", search_level: "--c1", search: "--c1", guard: "--c3", restart: "--c3", deploy: "--c2", deploy_verdict: "--c2", follow: "--c5" };

/** Every chart on the page, by id. @type {Map<string, Chart>} */
export const charts = new Map();

/**
 * Vertical marks at the events' times; the event list names them.
 * @param {ChartDef} def
 */
function eventsPlugin(def) {
  return {
    hooks: {
      draw: [
        /** @param {any} u */
        (u) => {
          const [x0, x1] = [u.scales.x.min, u.scales.x.max];
          const ctx = u.ctx;
          ctx.save();
          ctx.lineWidth = 1;
          ctx.setLineDash([3, 3]);
          let deploys = 0;
          for (const ev of state.events.values()) {
            if (def.group === "scenario" && ev.scenario && ev.scenario !== def.name) continue;
            // A verdict is listed, not marked: its deploy is.
            if (ev.kind === "deploy_verdict") continue;
            const t = ev.t_ms / 1000;
            if (t < x0 || t > x1) continue;
            const x = Math.round(u.valToPos(t, "x", true));
            // A deploy is the mark a reader looks for first: solid and wider.
            const deploy = ev.kind === "deploy";
            if (deploy) deploys++;
            ctx.lineWidth = deploy ? 2 : 1;
            ctx.setLineDash(deploy ? [] : [3, 3]);
            ctx.strokeStyle = cssVar(EVENT_COLOURS[ev.kind] || "--c7");
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
          ctx.restore();
          // How many deploys this chart marks (for the browser tests).
          const c = charts.get(def.id);
          if (c) c.box.dataset.deploys = String(deploys);
        },
      ],
    },
  };
}

/**
 * The lines a chart draws now: families expanded to their members.
 * @param {ChartDef} def
 * @returns {SeriesDef[]}
 */
function resolveSeries(def) {
  const group = /** @type {Group} */ (def.group);
  /** @type {SeriesDef[]} */
  const out = [];
  for (const s of def.series) {
    if (s.prefix != null) {
      // Only the kinds (states) that were ever non-zero: a server reports every state.
      for (const f of fieldsOf(group, def.name, s.prefix)) {
        if (!everNonZero(group, def.name, f)) continue;
        out.push({ ...s, field: f, label: (s.label || "") + f.slice(s.prefix.length) });
      }
    } else if (!s.optional || hasSeries(group, def.name, s.field || "")) {
      out.push(s);
    }
  }
  return out;
}

/**
 * The chart's columns over the chosen range: x in seconds, then one per line.
 * @param {ChartDef} def
 * @param {SeriesDef[]} series
 */
function chartData(def, series) {
  const d = state.data[resolution()];
  const last = d.t.length ? d.t[d.t.length - 1] : Date.now();
  const from = last - state.range * 1000;
  let i0 = d.t.findIndex((t) => t > from);
  if (i0 < 0) i0 = d.t.length;
  const xs = d.t.slice(i0).map((t) => t / 1000);
  const log = def.unit === "s";
  const ys = series.map((s) => {
    const arr = d.s.get(key(def.group, def.name, s.field || ""));
    if (!arr) return new Array(xs.length).fill(null);
    const part = arr.slice(i0);
    // A log scale has no 0: show a zero latency at 1 µs, the windows' resolution.
    return log && s.scale !== "r" ? part.map((v) => (v != null && v <= 0 ? 1e-6 : v)) : part;
  });
  return [xs, ...ys];
}

/**
 * uPlot's options for a chart.
 * @param {ChartDef} def
 * @param {SeriesDef[]} series
 * @param {number} width
 */
function makeOpts(def, series, width) {
  const fg = cssVar("--muted"), grid = cssVar("--grid");
  const f1 = FORMAT[def.unit] || FORMAT.count;
  const f2 = (def.unit2 && FORMAT[def.unit2]) || f1;
  /**
   * @param {string} scale
   * @param {number} side
   * @param {(v: number) => string} fmt
   */
  const axis = (scale, side, fmt) => ({
    scale, side, stroke: fg, size: 62,
    grid: { stroke: grid, width: 1, show: side === 3 },
    ticks: { stroke: grid, width: 1 },
    values: (/** @type {any} */ u, /** @type {number[]} */ vals) => vals.map((v) => (v == null ? "" : fmt(v))),
  });
  const zeroBased = (/** @type {any} */ u, /** @type {number} */ min, /** @type {number} */ max) => [0, max > 0 ? max * 1.1 : 1];
  // Latency on a log scale: milliseconds stay readable under a seconds-high SLO line.
  /** @type {Record<string, any>} */
  const scales = { x: { time: true }, y: def.unit === "s" ? { distr: 3, log: 10 } : { range: zeroBased } };
  /** @type {any[]} */
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
      { value: (/** @type {any} */ u, /** @type {number | null} */ v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString()) },
      ...series.map((s, i) => ({
        label: s.label || s.field,
        scale: s.scale === "r" ? "r" : "y",
        stroke: cssVar(s.colour || PALETTE[i % PALETTE.length]),
        width: s.dash ? 1 : 1.6,
        dash: s.dash ? [6, 4] : undefined,
        value: (/** @type {any} */ u, /** @type {number | null} */ v) => (v == null ? "–" : (s.scale === "r" ? f2 : f1)(v)),
        spanGaps: false,
        points: { show: false },
      })),
    ],
    plugins: [eventsPlugin(def)],
  };
}

/**
 * A chart's box, registered to be drawn.
 * @param {ChartDef} def
 * @returns {HTMLElement}
 */
export function chartBox(def) {
  const box = h("div", { class: "chart", "data-chart": def.id, "data-points": "0" }, h("h3", { text: def.title }), h("div", { class: "plot" }));
  charts.set(def.id, { def, box, u: null, sig: "" });
  return box;
}

/**
 * Draws (or updates) a chart from the current data.
 * @param {Chart} c
 */
export function drawChart(c) {
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
  /** @type {number | null} */
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

/** Redraws every chart of the history (the search's chart is drawn from its run). */
export function drawAll() {
  for (const c of charts.values()) if (c.def.group !== "search") drawChart(c);
}

/**
 * Forgets the charts inside `root` (a card being removed).
 * @param {HTMLElement} root
 */
export function dropCharts(root) {
  for (const b of root.querySelectorAll(".chart")) {
    const id = /** @type {HTMLElement} */ (b).dataset.chart || "";
    const c = charts.get(id);
    if (c && c.u) c.u.destroy();
    charts.delete(id);
  }
}

/**
 * Latency against offered load from a capacity run's levels: one line per scenario and
 * quantile, x the offered rate.
 * @param {Chart} c
 * @param {{offered_rate: number, scenario: string, latency: Record<string, number | null>}[][]} levels each level's scenarios
 */
export function drawLoadChart(c, levels) {
  /** @type {Map<string, {offered_rate: number, latency: Record<string, number | null>}[]>} */
  const by = new Map();
  for (const l of levels) for (const s of l) {
    if (!(s.offered_rate > 0)) continue;
    if (!by.has(s.scenario)) by.set(s.scenario, []);
    by.get(s.scenario)?.push(s);
  }
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
  for (const [name, ls] of by) for (const q of ["p95", "p99"]) {
    const at = new Map(ls.map((s) => [s.offered_rate, s.latency[q]]));
    data.push(xs.map((x) => (at.has(x) ? at.get(x) ?? null : null)));
    series.push({ label: `${name} ${q}`, stroke: cssVar(PALETTE[i++ % PALETTE.length]), width: 1.6, dash: q === "p99" ? [6, 4] : undefined, spanGaps: true, points: { show: true, size: 6 }, value: (/** @type {any} */ u, /** @type {number} */ v) => fmtSecs(v) });
  }
  const fg = cssVar("--muted"), grid = cssVar("--grid");
  if (c.u) c.u.destroy();
  plot.replaceChildren();
  c.u = new uPlot({
    width: Math.max(300, plot.clientWidth || 600), height: 220,
    scales: { x: { time: false }, y: { range: (/** @type {any} */ u, /** @type {number} */ min, /** @type {number} */ max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, label: "offered /s", values: (/** @type {any} */ u, /** @type {number[]} */ v) => v.map((x) => fmtNum(x)) },
      { stroke: fg, grid: { stroke: grid }, ticks: { stroke: grid }, size: 62, values: (/** @type {any} */ u, /** @type {number[]} */ v) => v.map(fmtSecs) },
    ],
    series: [{ label: "offered", value: (/** @type {any} */ u, /** @type {number | null} */ v) => (v == null ? "–" : fmtNum(v) + "/s") }, ...series],
  }, data, plot);
  let points = 0;
  for (let k = 1; k < data.length; k++) for (const v of data[k]) if (v != null) points++;
  c.box.dataset.points = String(points);
}
