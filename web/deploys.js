// @ts-check
// The Deploys card: each target's release as read, the last deploys with their verdicts
// and the numbers behind them (each finding's before, after, change and interval), and
// the last releases side by side (each op's p95 and error ratio after each deploy). The
// charts mark each deploy (its `deploy` event). Read from /api/v1/deploys every
// DEPLOYS_POLL_MS.

import { $, h } from "./dom.js";
import { fetchDeploys } from "./api.js";
import { fmtSecs, fmtDuration } from "./format.js";

/** @typedef {import("./types.js").Deploy} Deploy */
/** @typedef {import("./types.js").Deploys} Deploys */
/** @typedef {import("./types.js").DeployFinding} DeployFinding */

export const DEPLOYS_POLL_MS = 10000;
/** Deploys listed, and releases side by side. */
const LISTED = 8;
const SIDE_BY_SIDE = 6;

/** @param {number} t unix seconds */
const when = (t) => new Date(t * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });

/** @param {number} x */
const pct = (x) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(Math.abs(x) >= 0.1 ? 0 : 1)} %`;

/** @param {number} x a ratio */
const ratio = (x) => (x === 0 ? "0 %" : `${(x * 100).toFixed(x < 0.001 ? 3 : 2)} %`);

/** @param {DeployFinding} f */
function values(f) {
  if (f.measure.startsWith("p")) return [fmtSecs(f.before), fmtSecs(f.after), pct(f.effect), `${pct(f.ci[0])} to ${pct(f.ci[1])}`];
  const pts = (/** @type {number} */ x) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(2)}`;
  return [ratio(f.before), ratio(f.after), `${pts(f.effect)} pt`, `${pts(f.ci[0])} to ${pts(f.ci[1])} pt`];
}

/** @param {Deploy} d */
function versions(d) {
  if (d.source === "restart") return "restart (a possible deploy)";
  return `${d.from ?? "unknown"} → ${d.to ?? "unknown"}`;
}

/**
 * One deploy: its row, and its findings under it.
 * @param {Deploy} d
 */
function deployRow(d) {
  const v = d.verdict;
  const changes = v.findings.filter((f) => f.change !== "none");
  const detail = h(
    "details",
    null,
    h("summary", { text: v.reasons[0] || "" }),
    v.reasons.length > 1 ? h("ul", null, v.reasons.slice(1).map((r) => h("li", { text: r }))) : null,
    v.findings.length
      ? h(
          "table",
          { class: "findings" },
          h("thead", null, h("tr", null, ["measure", "of", "before", "after", "change", "95 % interval", "p (Holm)", "wander without a deploy", ""].map((t) => h("th", { text: t })))),
          h(
            "tbody",
            null,
            v.findings.map((f) => {
              const [b, a, e, ci] = values(f);
              return h(
                "tr",
                { class: f.change === "worse" ? "bad" : f.change === "better" ? "ok" : "" },
                h("td", { text: f.measure }),
                h("td", { text: f.subject }),
                h("td", { class: "num", text: b }),
                h("td", { class: "num", text: a }),
                h("td", { class: "num", text: e }),
                h("td", { class: "num", text: ci }),
                h("td", { class: "num", text: f.p_adjusted < 1e-4 ? f.p_adjusted.toExponential(0) : f.p_adjusted.toFixed(4) }),
                h("td", {
                  class: "num",
                  title: f.drift ? `95 % of the changes between two windows without a deploy, from ${f.drift.pairs} pairs over ${f.drift.hours.toFixed(0)} h; this deploy's ${pct(f.drift.change)}, p = ${f.drift.p_adjusted.toPrecision(2)} after Holm` : "",
                  text: f.drift ? `${pct(f.drift.interval[0])} to ${pct(f.drift.interval[1])}` : "",
                }),
                h("td", { text: f.change === "none" ? "" : f.change }),
              );
            }),
          ),
        )
      : null,
    h("p", { class: "muted", text: `resources: ${v.resources.state} — ${v.resources.reasons.join("; ")}` }),
  );
  return h(
    "tr",
    { "data-deploy": d.id, "data-state": v.state },
    h("td", null, h("a", { href: `/deploys/${encodeURIComponent(d.id)}`, title: "the deploy's report", text: when(d.at) })),
    h("td", { text: d.target }),
    h("td", null, h("span", { text: versions(d) }), d.note ? h("div", { class: "muted", text: d.note }) : null),
    h("td", { text: d.source }),
    h(
      "td",
      null,
      h("span", { class: `badge deploy-${v.state}`, text: v.first && v.first !== v.state ? `${v.state} (was ${v.first})` : v.state }),
      changes.length ? h("span", { class: "muted", text: ` ${changes.length} change${changes.length === 1 ? "" : "s"}` }) : null,
    ),
    h("td", { class: "why" }, detail),
  );
}

/**
 * The last judged releases of each target side by side: every op's p95 and error ratio
 * in the window after each deploy, with the change against the release before it.
 * @param {Deploy[]} deploys newest first
 */
function sideBySide(deploys) {
  /** @type {Map<string, Deploy[]>} */
  const byTarget = new Map();
  for (const d of deploys) {
    if (!d.verdict.findings.length) continue;
    const list = byTarget.get(d.target) || [];
    if (list.length < SIDE_BY_SIDE) list.push(d);
    byTarget.set(d.target, list);
  }
  const out = [];
  for (const [target, list] of byTarget) {
    const cols = list.slice().reverse();
    const subjects = [...new Set(cols.flatMap((d) => d.verdict.findings.filter((f) => f.measure === "p95").map((f) => f.subject)))];
    const rows = [];
    for (const s of subjects) {
      /** @param {Deploy} d */
      const p95 = (d) => d.verdict.findings.find((f) => f.subject === s && f.measure === "p95");
      /** @param {Deploy} d */
      const errs = (d) => d.verdict.findings.filter((f) => f.subject === s && f.measure.startsWith("errors:")).reduce((a, f) => a + f.after, 0);
      rows.push(
        h("tr", null, h("td", { text: `${s} p95` }), cols.map((d, i) => {
          const f = p95(d);
          const prev = i > 0 ? p95(cols[i - 1]) : undefined;
          return h("td", { class: "num" }, f ? fmtSecs(f.after) : "–", f && prev ? h("span", { class: "muted", text: ` ${pct(f.after / prev.after - 1)}` }) : null);
        })),
        h("tr", null, h("td", { text: `${s} errors` }), cols.map((d) => h("td", { class: "num", text: ratio(errs(d)) }))),
      );
    }
    out.push(
      h(
        "table",
        { class: "releases", "data-target": target },
        h("thead", null, h("tr", null, h("th", { text: target }), cols.map((d) => h("th", { title: when(d.at), text: d.to || d.id })))),
        h("tbody", null, rows),
      ),
    );
  }
  return out.length ? h("div", { class: "side-by-side" }, h("h3", { text: "Releases side by side (after each deploy)" }), out) : null;
}

/** @param {Deploys} x */
function render(x) {
  const s = x.settings;
  const root = $("#deploys");
  const releases = x.releases.map((r) =>
    h(
      "li",
      null,
      h("strong", { text: r.target }),
      ` ${r.version ?? "unknown"}`,
      r.source ? h("span", { class: "muted", text: ` (${r.source})` }) : null,
      r.error ? h("span", { class: "badge warn", title: r.error, text: `cannot read: ${r.error}` }) : null,
    ),
  );
  /** @type {(HTMLElement | null)[]} */
  const parts = [
    h("h2", { text: "Deploys" }),
    h("p", {
      class: "muted",
      text: `${fmtDuration(s.before_seconds)} ${s.baseline === "yesterday" ? "of yesterday" : "before"} against ${fmtDuration(s.after_seconds)} after (${fmtDuration(s.settle_seconds)} skipped), in blocks of ${fmtDuration(s.block_seconds)}; a change counts when significant at ${(s.false_alarm * 100).toFixed(1)} % per deploy and at least ${(s.min_effect_latency * 100).toFixed(0)} % of a quantile or ${(s.min_effect_errors * 100).toFixed(0)} % of an error ratio.`,
    }),
    releases.length ? h("ul", { class: "releases-now" }, releases) : null,
    x.deploys.length
      ? h(
          "table",
          { class: "deploys" },
          h("thead", null, h("tr", null, ["when", "target", "release", "seen by", "verdict", "why"].map((t) => h("th", { text: t })))),
          h("tbody", null, x.deploys.slice(0, LISTED).map(deployRow)),
        )
      : h("p", { class: "muted", text: "No deploy seen yet." }),
    sideBySide(x.deploys),
  ];
  root.replaceChildren(...parts.filter((p) => p !== null));
}

/** Polls /api/v1/deploys and renders the card (hidden when deploys are not judged here). */
export async function renderDeploys() {
  const root = $("#deploys");
  const x = await fetchDeploys();
  if (!x || (!x.releases.length && !x.deploys.length)) {
    root.hidden = true;
    return;
  }
  root.hidden = false;
  render(x);
}
