// Shared pieces: the html tag (Preact + htm, which escape every interpolated string),
// data loading, routing by location.hash, formatting, tables and error boxes.
import { html, useState, useEffect, useCallback, useRef } from "./vendor/preact-htm.js";
import { seg } from "./api.js";

export { html, useState, useEffect, useCallback, useRef };

/** The current route: "#/runs/run-1?x=1" -> {parts: ["runs", "run-1"], query}. */
export function parseHash(hash) {
  const raw = (hash || "").replace(/^#\/?/, "");
  const [path, search] = raw.split("?", 2);
  const parts = path ? path.split("/").map((p) => decodeURIComponent(p)) : [];
  return { parts, query: new URLSearchParams(search || "") };
}

/** A hash link built from raw segments (each encoded) and optional query values. */
export function href(parts, query) {
  let out = "#/" + parts.map(seg).join("/");
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) out += "?" + s;
  }
  return out;
}

export function go(parts, query) {
  location.hash = href(parts, query);
}

/** Go to a route in place of the current one (a redirect: Back skips the old address). */
export function redirect(parts, query) {
  location.replace(href(parts, query));
}

/** A page that only redirects (once rendered) to the route `parts` + `query`. */
export function Redirect({ parts, query }) {
  const target = href(parts, query);
  useEffect(() => location.replace(target), [target]);
  return html`<p class="muted">Loading…</p>`;
}

/** Load with `fn` (an async function) whenever `deps` change; `reload()` loads again. */
export function useLoad(fn, deps) {
  const [state, setState] = useState({ loading: true, data: null, error: null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    fn().then(
      (data) => live && setState({ loading: false, data, error: null }),
      (error) => live && setState({ loading: false, data: null, error }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { ...state, reload: useCallback(() => setTick((t) => t + 1), []) };
}

export function Loading() {
  return html`<p class="muted">Loading…</p>`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  const status = error.status ? `${error.status} ` : "";
  return html`<div class="error" role="alert">${status}${error.message || String(error)}</div>`;
}

/** Render `body(data)` once loaded; loading and errors are shown the same way everywhere. */
export function Loaded({ state, children }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} />`;
  if (state.loading && !state.data) return html`<${Loading} />`;
  return children(state.data);
}

export function fmtTime(value) {
  if (!value) return "";
  const d = new Date(value);
  return isNaN(d) ? String(value) : d.toISOString().replace("T", " ").slice(0, 19);
}

export function fmtNum(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e6) ? value.toExponential(3) : value.toPrecision(4);
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function Badge({ value }) {
  const cls = String(value || "").toLowerCase().replace(/[^a-z]/g, "");
  return html`<span class=${"badge " + cls}>${value}</span>`;
}

/** A two-column table of a mapping (params, tags, metrics…). */
export function KeyValues({ items, empty = "none" }) {
  const entries = Object.entries(items || {});
  if (!entries.length) return html`<p class="muted">${empty}</p>`;
  return html`<table class="kv">
    <tbody>
      ${entries.map(
        ([k, v]) => html`<tr key=${k}><th>${k}</th><td>${typeof v === "object" ? JSON.stringify(v) : fmtNum(v)}</td></tr>`,
      )}
    </tbody>
  </table>`;
}

export function Pager({ offset, limit, total, onPage }) {
  const last = Math.min(offset + limit, total);
  return html`<div class="pager">
    <button disabled=${offset <= 0} onClick=${() => onPage(Math.max(0, offset - limit))}>‹ Previous</button>
    <span>${total ? `${offset + 1}–${last} of ${total}` : "0 of 0"}</span>
    <button disabled=${last >= total} onClick=${() => onPage(offset + limit)}>Next ›</button>
  </div>`;
}

export function Section({ title, children, actions }) {
  return html`<section class="card">
    <header><h2>${title}</h2>${actions}</header>
    ${children}
  </section>`;
}
