// @ts-check
// The "Soak health" cards: one per observed target, each series drawn with its points,
// its fitted trend and the trend's 95 % band, its change points marked and its verdict
// as a badge; and one card of soakd's own series of each op, as a table. Read from
// /api/v1/soak every SOAK_POLL_MS (the judge itself runs at most once a minute).

import { $, $$, h, cssVar } from "./dom.js";
import { fetchSoak } from "./api.js";
import { fmtNum, fmtSecs, fmtPct, fmtBytes } from "./format.js";

/** @typedef {import("./types.js").Soak} Soak */
/** @typedef {import("./types.js").SoakSeries} SoakSeries */
/** @typedef {import("./types.js").SoakTarget} SoakTarget */

export const SOAK_POLL_MS = 10000;
/** Points per series asked for (the judged span averaged down to this many). */
const POINTS = 120;
const HEIGHT = 130;
const DAY = 86400;

/**
 * Every series chart on the soak cards, by `target|resource`.
 * @type {Map<string, {box: HTMLElement, u: any, sig: string, band: boolean}>}
 */
export const soakCharts = new Map();

/**
 * How a resource's value reads: its name carries its unit.
 * @param {string} resource
 * @returns {(v: number | null) => string}
 */
function formatOf(resource) {
  const kind = resource.split(".").pop() || resource;
  if (kind.endsWith("_bytes")) return fmtBytes;
  if (/^p\d\d_seconds$/.test(kind)) return fmtSecs;
  if (kind.endsWith("_ratio")) return fmtPct;
  return (v) => fmtNum(v, Math.abs(v || 0) >= 100 ? 0 : 2);
}

/**
 * The trend per day with its interval, as the verdict chose it.
 * @param {SoakSeries} s
 */
function trendText(s) {
  const j = s.judgement;
  if (!j) return "";
  if (j.relative) {
    const p = (/** @type {number} */ x) => (x * 100).toFixed(2);
    return `${p(j.relative.estimate)} %/day (${p(j.relative.lower)} to ${p(j.relative.upper)})`;
  }
  if (j.absolute) {
    const f = formatOf(s.resource);
    return `${f(j.absolute.estimate)}/day (${f(j.absolute.lower)} to ${f(j.absolute.upper)})`;
  }
  return "";
}

/** @param {SoakSeries} s */
const verdictOf = (s) => (s.judgement ? s.judgement.verdict : "pending");

/** @param {SoakSeries} s */
const badge = (s) => h("span", { class: `badge verdict-${verdictOf(s)}`, "data-role": "verdict", text: verdictOf(s) });

/**
 * The trend line and its band at each x: the fitted line, and every line through the
 * span's middle with a slope within the interval (a bow tie: sure in the middle).
 * @param {SoakSeries} s
 * @param {number[]} xs
 * @returns {[(number | null)[], (number | null)[], (number | null)[]] | null}
 */
function trendColumns(s, xs) {
  const j = s.judgement;
  if (!j || !j.line || !j.absolute) return null;
  const { t0, t1, start, end } = j.line;
  const abs = j.absolute;
  const tm = (t0 + t1) / 2, vm = (start + end) / 2;
  const inside = (/** @type {number} */ t) => t >= t0 - 1 && t <= t1 + 1;
  const at = (/** @type {number} */ slope, /** @type {number} */ t) => vm + (slope / DAY) * (t - tm);
  return [
    xs.map((t) => (inside(t) ? start + ((end - start) * (t - t0)) / (t1 - t0 || 1) : null)),
    xs.map((t) => (inside(t) ? Math.min(at(abs.lower, t), at(abs.upper, t)) : null)),
    xs.map((t) => (inside(t) ? Math.max(at(abs.lower, t), at(abs.upper, t)) : null)),
  ];
}

/**
 * Dashed red lines at the change points.
 * @param {import("./types.js").ChangePoint[]} cps
 */
function changePlugin(cps) {
  return {
    hooks: {
      draw: [
        /** @param {any} u */
        (u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = cssVar("--bad");
          ctx.setLineDash([4, 3]);
          for (const cp of cps) {
            if (cp.t < u.scales.x.min || cp.t > u.scales.x.max) continue;
            const x = Math.round(u.valToPos(cp.t, "x", true));
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

/**
 * Draws (or redraws) one series' chart.
 * @param {{box: HTMLElement, u: any, sig: string, band: boolean}} c
 * @param {SoakSeries} s
 */
function drawSeries(c, s) {
  const pts = s.points || [];
  const xs = pts.map((p) => p[0]);
  const trend = trendColumns(s, xs);
  /** @type {(number | null)[][]} */
  const data = [xs, pts.map((p) => p[1])];
  if (trend) data.push(...trend);
  const plot = $(".plot", c.box);
  c.box.dataset.points = String(pts.length);
  c.band = !!trend;
  if (!pts.length) {
    if (c.u) c.u.destroy();
    c.u = null;
    plot.replaceChildren(h("div", { class: "empty", text: "no points yet" }));
    return;
  }
  const fmt = formatOf(s.resource);
  const fg = cssVar("--muted"), grid = cssVar("--grid"), orange = cssVar("--c2") || "#ff7f0e";
  const width = Math.max(200, plot.clientWidth || c.box.clientWidth || 300);
  const sig = `${trend ? 1 : 0}|${s.change_points.length}|${width > 0}`;
  if (c.u && c.sig === sig) {
    c.u.setData(data);
    if (Math.abs(c.u.width - width) > 2) c.u.setSize({ width, height: HEIGHT });
    return;
  }
  if (c.u) c.u.destroy();
  plot.replaceChildren();
  /** @type {any[]} */
  const series = [
    { value: (/** @type {any} */ u, /** @type {number | null} */ v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString()) },
    { label: s.resource, stroke: cssVar("--c1"), width: 1.5, points: { show: false }, value: (/** @type {any} */ u, /** @type {number | null} */ v) => fmt(v) },
  ];
  if (trend) {
    series.push(
      { label: "trend", stroke: orange, width: 1.5, dash: [6, 4], points: { show: false }, value: (/** @type {any} */ u, /** @type {number | null} */ v) => fmt(v) },
      { label: "95 % low", stroke: "transparent", width: 0, points: { show: false }, value: (/** @type {any} */ u, /** @type {number | null} */ v) => fmt(v) },
      { label: "95 % high", stroke: "transparent", width: 0, points: { show: false }, value: (/** @type {any} */ u, /** @type {number | null} */ v) => fmt(v) },
    );
  }
  c.u = new uPlot({
    width, height: HEIGHT,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
      { stroke: fg, size: 62, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, values: (/** @type {any} */ u, /** @type {number[]} */ v) => v.map(fmt) },
    ],
    series,
    bands: trend ? [{ series: [4, 3], fill: "rgba(255, 127, 14, 0.18)" }] : [],
    plugins: [changePlugin(s.change_points)],
  }, data, plot);
  c.sig = sig;
}

/**
 * A series' box: its name, verdict, trend, chart and evidence.
 * @param {string} id
 */
function seriesBox(id) {
  const box = h("div", { class: "chart soak-series", "data-soak": id, "data-points": "0" },
    h("h3", { "data-role": "title" }), h("div", { class: "plot" }), h("div", { class: "why", "data-role": "why" }));
  soakCharts.set(id, { box, u: null, sig: "", band: false });
  return box;
}

/**
 * The series worth a look first: growing, shrinking, bounded, a step; then the rest.
 * @param {SoakSeries} s
 */
function rank(s) {
  const v = verdictOf(s);
  const order = ["growing", "shrinking", "bounded", "flat", "insufficient", "pending"];
  return order.indexOf(v) * 2 - (s.change_points.length ? 1 : 0);
}

/**
 * One target's card.
 * @param {HTMLElement} root
 * @param {SoakTarget} t
 */
function renderTarget(root, t) {
  let card = /** @type {HTMLElement | null} */ (root.querySelector(`article.soak[data-target="${CSS.escape(t.target)}"]`));
  if (!card) {
    card = h("article", { class: "card soak", "data-target": t.target },
      h("header", {}, h("h2", { text: `Soak health — ${t.target}` }), h("span", { class: "facts", "data-role": "facts" })),
      h("div", { class: "notes", "data-role": "errors" }),
      h("div", { class: "charts", "data-role": "series" }));
    root.append(card);
  }
  const counts = new Map();
  for (const s of t.series.filter((x) => x.judged)) counts.set(verdictOf(s), (counts.get(verdictOf(s)) || 0) + 1);
  $('[data-role="facts"]', card).replaceChildren(
    ...[...counts].map(([v, n]) => h("span", { class: `badge verdict-${v}`, text: `${n} ${v}` })),
    h("span", { class: t.restart_loop ? "badge bad" : "muted", text: t.restart_loop ? `restart loop (${t.restarts.length})` : `${t.restarts.length} restarts` }),
    // What is kept but not judged, as facts.
    ...t.series.filter((s) => !s.judged && s.latest != null && s.resource !== "start_time_seconds")
      .map((s) => h("span", { class: "muted", text: ` ${s.resource} ${formatOf(s.resource)(s.latest)}` })));
  $('[data-role="errors"]', card).replaceChildren(
    ...Object.entries(t.errors).map(([src, why]) => h("div", { class: "note error", text: `${src}: ${why}` })));
  const list = $('[data-role="series"]', card);
  const sorted = t.series.filter((s) => s.judged).sort((a, b) => rank(a) - rank(b));
  const ids = sorted.map((s) => `${t.target}|${s.resource}`);
  for (const box of $$(".soak-series", list)) {
    const id = box.dataset.soak || "";
    if (!ids.includes(id)) {
      soakCharts.get(id)?.u?.destroy();
      soakCharts.delete(id);
      box.remove();
    }
  }
  sorted.forEach((s, i) => {
    const id = ids[i];
    const c = soakCharts.get(id);
    const box = c ? c.box : seriesBox(id);
    if (list.children[i] !== box) list.insertBefore(box, list.children[i] || null);
    box.dataset.verdict = verdictOf(s);
    const cps = s.change_points.length ? ` · ${s.change_points.length} step${s.change_points.length > 1 ? "s" : ""}` : "";
    $('[data-role="title"]', box).replaceChildren(`${s.resource} `, badge(s), ` ${trendText(s)}${cps}`);
    const last = s.change_points[s.change_points.length - 1];
    const why = [s.judgement ? s.judgement.reason : "waiting for points after warmup"];
    if (last) why.push(`last step ${last.relative == null ? "" : (last.relative * 100).toFixed(0) + " % "}at ${new Date(last.t * 1000).toLocaleTimeString()}, cause: ${last.cause || "none"}`);
    $('[data-role="why"]', box).textContent = why.join(" · ");
    const chart = soakCharts.get(id);
    if (chart) drawSeries(chart, s);
  });
}

/**
 * soakd's own series of each op, as one table.
 * @param {HTMLElement} root
 * @param {Soak["ops"]} ops
 */
function renderOps(root, ops) {
  let card = /** @type {HTMLElement | null} */ (root.querySelector("article.soak-ops"));
  if (!ops.length) {
    card?.remove();
    return;
  }
  if (!card) {
    card = h("article", { class: "card soak soak-ops" }, h("header", {}, h("h2", { text: "Soak health — soakd's own series of each op" })), h("div", { "data-role": "table" }));
    root.append(card);
  }
  const rows = ops.flatMap((o) => o.series.map((s) => h("tr", { "data-op": `${o.scenario}/${o.op}`, "data-series": s.resource },
    h("td", { text: `${o.scenario}/${o.op}` }), h("td", { text: s.resource }), h("td", {}, badge(s)),
    h("td", { text: trendText(s) || "–" }), h("td", { text: String(s.change_points.length) }),
    h("td", { class: "why", text: s.judgement ? s.judgement.reason : "" }))));
  $('[data-role="table"]', card).replaceChildren(h("table", {},
    h("tr", {}, ...["op", "series", "verdict", "trend per day (95 %)", "steps", "evidence"].map((t) => h("th", { text: t }))), ...rows));
}

/** Reads the soak's verdicts and draws the cards; hides them where the soak is off. */
export async function renderSoak() {
  const root = $("#soak");
  const soak = await fetchSoak(POINTS);
  if (!soak || (!soak.targets.length && !soak.ops.length)) {
    root.hidden = true;
    return;
  }
  root.hidden = false;
  const names = soak.targets.map((t) => t.target);
  for (const card of $$("article.soak[data-target]", root)) {
    if (!names.includes(card.dataset.target || "")) {
      for (const b of $$(".soak-series", card)) {
        soakCharts.get(b.dataset.soak || "")?.u?.destroy();
        soakCharts.delete(b.dataset.soak || "");
      }
      card.remove();
    }
  }
  for (const t of soak.targets) renderTarget(root, t);
  renderOps(root, soak.ops);
}

/** Forgets the charts' colours (the scheme flipped): they are rebuilt at the next poll. */
export function resetSoakCharts() {
  for (const c of soakCharts.values()) c.sig = "";
}
