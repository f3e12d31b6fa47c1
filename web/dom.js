// @ts-check
// The few DOM helpers the page uses instead of a framework.

/**
 * The first element matching `sel` under `root`.
 * @param {string} sel
 * @param {ParentNode} [root]
 * @returns {HTMLElement}
 */
export const $ = (sel, root = document) => /** @type {HTMLElement} */ (root.querySelector(sel));

/**
 * Every element matching `sel` under `root`.
 * @param {string} sel
 * @param {ParentNode} [root]
 * @returns {HTMLElement[]}
 */
export const $$ = (sel, root = document) => /** @type {HTMLElement[]} */ (Array.from(root.querySelectorAll(sel)));

/**
 * An element with attributes (`class`, `text`, `on…` handlers, the rest as attributes)
 * and children (nulls skipped).
 * @param {string} tag
 * @param {Record<string, any> | null} attrs
 * @param {...(Node | string | null | undefined | (Node | string | null | undefined)[])} kids
 * @returns {HTMLElement}
 */
export function h(tag, attrs, ...kids) {
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

/**
 * A CSS custom property of the document (the colours follow the colour scheme).
 * @param {string} name
 * @returns {string}
 */
export const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
