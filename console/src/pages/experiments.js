// Experiments: the list, one experiment's runs (filter, sort, page, select to compare),
// a run's detail with its metrics table and charts, and the compare view.
import { ApiError, get, seg } from "../api.js";
import { COLORS, LineChart } from "../chart.js";
import {
  Badge, ErrorBox, KeyValues, Loaded, Pager, Redirect, Section, fmtNum, fmtTime, go, href,
  html, useLoad, useState,
} from "../ui.js";

const PAGE = 50;
const CHART_POINTS = 1000;

export function ExperimentList() {
  const state = useLoad(() => get("/experiments", { limit: 1000 }), []);
  return html`<${Section} title="Experiments">
    <${Loaded} state=${state}>
      ${(data) =>
        data.experiments.length
          ? html`<table class="grid">
              <thead><tr><th>name</th><th>created</th><th>by</th></tr></thead>
              <tbody>
                ${data.experiments.map(
                  (e) => html`<tr key=${e.id}>
                    <td><a href=${href(["experiments", e.name])}>${e.name}</a></td>
                    <td>${fmtTime(e.created_at)}</td><td>${e.created_by}</td>
                  </tr>`,
                )}
              </tbody>
            </table>`
          : html`<p class="muted">No experiments yet.</p>`}
    <//>
  <//>`;
}

function sortKey(orderBy) {
  const m = /^([a-z]+\.[^ ]+)( desc)?$/.exec(orderBy || "");
  return m ? { field: m[1], desc: !!m[2] } : { field: "", desc: false };
}

/** Up to `n` keys used by the runs on this page, most common first. */
function commonKeys(runs, pick, n) {
  const counts = new Map();
  for (const r of runs) for (const k of Object.keys(pick(r))) counts.set(k, (counts.get(k) || 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, n).map((e) => e[0]);
}

function quoteKey(key) {
  return /^[A-Za-z0-9_]+$/.test(key) ? key : "`" + key + "`";
}

// How MLflow names an experiment in its links: "0" (its Default experiment) or the id.
const MLFLOW_EXPERIMENT_ID = /^(0|exp-[0-9a-z]+)$/;

/** The name of the experiment MLflow's id `ref` means, or null if none does. */
async function experimentNamed(ref) {
  const missing = (e) => e instanceof ApiError && e.status === 404;
  try {
    await get(`/experiments/${seg(ref)}`);
    return null; // an experiment of that very name: it is what the link means
  } catch (e) {
    if (!missing(e)) throw e;
  }
  if (ref === "0") return "Default";
  try {
    return (await get(`/experiments/by-id/${seg(ref)}`)).name;
  } catch (e) {
    if (missing(e)) return null;
    throw e;
  }
}

/**
 * "#/experiments/<name>", or MLflow's "#/experiments/<id>" (the link the mlflow client
 * prints), which is redirected to the experiment's name.
 */
export function ExperimentRef({ nameOrId, query }) {
  const mlflowShaped = MLFLOW_EXPERIMENT_ID.test(nameOrId);
  const state = useLoad(
    () => (mlflowShaped ? experimentNamed(nameOrId) : Promise.resolve(null)),
    [nameOrId],
  );
  if (state.error) return html`<${ErrorBox} error=${state.error} />`;
  if (state.loading) return html`<p class="muted">Loading…</p>`;
  if (state.data) return html`<${Redirect} parts=${["experiments", state.data]} query=${Object.fromEntries(query)} />`;
  return html`<${Runs} name=${nameOrId} query=${query} />`;
}

export function Runs({ name, query }) {
  const filter = query.get("filter") || "";
  const orderBy = query.get("order_by") || "";
  const offset = Number(query.get("offset") || 0);
  const [draft, setDraft] = useState(filter);
  const [selected, setSelected] = useState(new Set());
  const state = useLoad(
    () => get("/runs", { experiment: name, filter, order_by: orderBy, limit: PAGE, offset }),
    [name, filter, orderBy, offset],
  );
  const nav = (changes) =>
    go(["experiments", name], { filter, order_by: orderBy, offset: offset || "", ...changes });
  const sort = sortKey(orderBy);
  const header = (label, field) => {
    const active = sort.field === field;
    const next = active && !sort.desc ? `${field} desc` : field;
    return html`<th class="sortable" aria-sort=${active ? (sort.desc ? "descending" : "ascending") : "none"}>
      <button class="link" onClick=${() => nav({ order_by: next, offset: "" })}>
        ${label}${active ? (sort.desc ? " ▼" : " ▲") : ""}
      </button>
    </th>`;
  };
  const toggle = (id) => {
    const next = new Set(selected);
    next.has(id) ? next.delete(id) : next.add(id);
    setSelected(next);
  };
  return html`<${Section} title=${`Experiment ${name}`}
      actions=${html`<button class="primary" disabled=${selected.size < 2}
        onClick=${() => go(["compare"], { runs: [...selected].join(",") })}>Compare ${selected.size || ""} runs</button>`}>
    <form class="filter" onSubmit=${(e) => { e.preventDefault(); nav({ filter: draft.trim(), offset: "" }); }}>
      <input name="filter" aria-label="filter" placeholder='metrics.auc > 0.8 and params.max_depth = "6"'
        value=${draft} onInput=${(e) => setDraft(e.target.value)} />
      <button type="submit">Filter</button>
    </form>
    <${Loaded} state=${state}>
      ${(data) => {
        const metricKeys = commonKeys(data.runs, (r) => r.metrics, 6);
        const paramKeys = commonKeys(data.runs, (r) => r.params, 6);
        return html`<div class="scroll"><table class="grid runs">
            <thead><tr>
              <th></th>
              ${header("name", "attributes.name")}
              ${header("status", "attributes.status")}
              ${header("started", "attributes.start_time")}
              ${paramKeys.map((k) => header(k, `params.${quoteKey(k)}`))}
              ${metricKeys.map((k) => header(k, `metrics.${quoteKey(k)}`))}
            </tr></thead>
            <tbody>
              ${data.runs.map(
                (r) => html`<tr key=${r.id}>
                  <td><input type="checkbox" aria-label=${`select ${r.id}`} checked=${selected.has(r.id)} onChange=${() => toggle(r.id)} /></td>
                  <td><a href=${href(["runs", r.id])}>${r.name || r.id}</a></td>
                  <td><${Badge} value=${r.status} /></td>
                  <td>${fmtTime(r.start_time)}</td>
                  ${paramKeys.map((k) => html`<td class="param">${r.params[k] ?? ""}</td>`)}
                  ${metricKeys.map((k) => html`<td class="num">${r.metrics[k] ? fmtNum(r.metrics[k].latest) : ""}</td>`)}
                </tr>`,
              )}
            </tbody>
          </table></div>
          <${Pager} offset=${offset} limit=${PAGE} total=${data.total} onPage=${(o) => nav({ offset: o || "" })} />`;
      }}
    <//>
  <//>`;
}

function MetricChart({ runId, metricKey }) {
  const state = useLoad(
    () => get(`/runs/${seg(runId)}/metric-history`, { key: metricKey, max_points: CHART_POINTS }),
    [runId, metricKey],
  );
  return html`<${Loaded} state=${state}>
    ${(h) => html`<${LineChart}
      title=${h.total > h.points.length ? `${metricKey} (${h.points.length} of ${h.total} points)` : metricKey}
      series=${[{ label: metricKey, xs: h.points.map((p) => p.step), ys: h.points.map((p) => p.value) }]} />`}
  <//>`;
}

/**
 * A run's metrics (used by the run and job pages): a table of every metric — its latest
 * value, min, max and number of steps logged — and a chart for each metric with more
 * than one point. A single value (a final accuracy, a usage figure) is a number to read,
 * not a line to draw.
 */
export function RunMetrics({ runId, metrics }) {
  const keys = Object.keys(metrics).sort();
  if (!keys.length) return html`<p class="muted">No metrics logged.</p>`;
  const charted = keys.filter((k) => metrics[k].count > 1);
  return html`<table class="grid metrics">
      <thead><tr><th>metric</th><th>latest</th><th>min</th><th>max</th><th>steps</th></tr></thead>
      <tbody>
        ${keys.map((k) => {
          const m = metrics[k];
          return html`<tr key=${k}>
            <th>${k}</th>
            <td class="num" title=${`at step ${m.step}`}>${fmtNum(m.latest)}</td>
            <td class="num">${fmtNum(m.min)}</td>
            <td class="num">${fmtNum(m.max)}</td>
            <td class="num">${m.count}</td>
          </tr>`;
        })}
      </tbody>
    </table>
    ${charted.length > 0 && html`<div class="charts">
      ${charted.map((k) => html`<${MetricChart} key=${k} runId=${runId} metricKey=${k} />`)}
    </div>`}`;
}

function JobRunCharts({ runId }) {
  const state = useLoad(() => get(`/runs/${seg(runId)}`), [runId]);
  return html`<${Loaded} state=${state}>${(run) => html`<${RunMetrics} runId=${run.id} metrics=${run.metrics} />`}<//>`;
}
export { JobRunCharts };

function Artifacts({ runId }) {
  const state = useLoad(() => get(`/runs/${seg(runId)}/artifacts`), [runId]);
  return html`<${Loaded} state=${state}>
    ${(data) =>
      data.artifacts.length
        ? html`<ul class="files">${data.artifacts.map(
            (a) => html`<li key=${a.path}>${a.path}${a.is_dir ? "/" : ""} <span class="muted">${a.size == null ? "" : `${a.size} B`}</span></li>`,
          )}</ul>`
        : html`<p class="muted">none</p>`}
  <//>`;
}

export function RunDetail({ runId }) {
  const state = useLoad(() => get(`/runs/${seg(runId)}`), [runId]);
  return html`<${Loaded} state=${state}>
    ${(run) => html`<div class="stack">
      <${Section} title=${`Run ${run.name || run.id}`}
          actions=${html`<a class="button" href=${href(["lineage", "run", run.id])}>Lineage</a>`}>
        <dl class="facts">
          <dt>id</dt><dd>${run.id}</dd>
          <dt>experiment</dt><dd><a href=${href(["experiments", run.experiment])}>${run.experiment}</a></dd>
          <dt>status</dt><dd><${Badge} value=${run.status} /></dd>
          <dt>started</dt><dd>${fmtTime(run.start_time)}</dd>
          <dt>ended</dt><dd>${fmtTime(run.end_time)}</dd>
          <dt>by</dt><dd>${run.created_by}</dd>
          ${run.job_id && html`<dt>job</dt><dd><a href=${href(["jobs", run.job_id])}>${run.job_id}</a></dd>`}
          ${run.git_commit && html`<dt>commit</dt><dd>${run.git_commit}</dd>`}
        </dl>
        ${run.notes && html`<pre class="notes">${run.notes}</pre>`}
      <//>
      <div class="cols">
        <${Section} title="Params"><${KeyValues} items=${run.params} /><//>
        <${Section} title="Tags"><div class="tags"><${KeyValues} items=${run.tags} /></div><//>
      </div>
      <${Section} title="Metrics"><${RunMetrics} runId=${run.id} metrics=${run.metrics} /><//>
      ${run.inputs.length > 0 && html`<${Section} title="Inputs">
        <ul>${run.inputs.map((i) => html`<li key=${i.version_id}>
          <a href=${href(["datasets", i.dataset], { version: i.version })}>${i.dataset} v${i.version}</a> ${i.context}</li>`)}</ul>
      <//>`}
      <${Section} title="Artifacts"><${Artifacts} runId=${run.id} /><//>
    </div>`}
  <//>`;
}

export function Compare({ query }) {
  const ids = (query.get("runs") || "").split(",").filter(Boolean);
  const state = useLoad(
    () => (ids.length < 2 ? Promise.reject(new Error("choose at least two runs to compare")) : get("/compare/runs", { run_ids: ids.join(","), max_points: CHART_POINTS })),
    [ids.join(",")],
  );
  return html`<${Loaded} state=${state}>
    ${(cmp) => {
      const label = (r) => r.name || r.id;
      const differing = new Set(cmp.differing_params);
      return html`<div class="stack">
        <${Section} title=${`Compare ${cmp.runs.length} runs`}>
          <table class="grid compare">
            <thead><tr><th>param</th>${cmp.runs.map((r) => html`<th key=${r.id}><a href=${href(["runs", r.id])}>${label(r)}</a></th>`)}</tr></thead>
            <tbody>
              ${cmp.param_keys.map(
                (k) => html`<tr key=${k} class=${differing.has(k) ? "differs" : ""}>
                  <th>${k}${differing.has(k) ? " ≠" : ""}</th>
                  ${cmp.runs.map((r) => html`<td key=${r.id}>${r.params[k] ?? "—"}</td>`)}
                </tr>`,
              )}
            </tbody>
          </table>
          ${!cmp.param_keys.length && html`<p class="muted">No params.</p>`}
        <//>
        <${Section} title="Metrics">
          <div class="charts">
            ${Object.entries(cmp.histories).map(
              ([key, byRun]) => html`<${LineChart} key=${key} title=${key}
                series=${cmp.runs.map((r, i) => [r, COLORS[i % COLORS.length]]).filter(([r]) => byRun[r.id] && byRun[r.id].length).map(([r, color]) => ({
                  label: label(r),
                  color,
                  xs: byRun[r.id].map((p) => p.step),
                  ys: byRun[r.id].map((p) => p.value),
                }))} />`,
            )}
          </div>
        <//>
      </div>`;
    }}
  <//>`;
}

export { ErrorBox };
