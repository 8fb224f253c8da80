// Endpoints: the list, and one endpoint's variants and live weights, replicas, the latest
// rollout (progress, or the reason it was rolled back), live traffic charts, events and a
// sample of captured requests. Traffic is polled: the router's counters per variant
// (requests, errors, p50/p99 latency since the server started) are differenced between
// polls into rates, kept for the last few minutes in this tab.
import { api, get, getToken, seg } from "../api.js";
import { LineChart } from "../chart.js";
import { Badge, Loaded, Section, fmtNum, fmtTime, href, html, useEffect, useLoad, useState } from "../ui.js";

const POLL_MS = 2000;
const WINDOW_S = 300;

export function EndpointTable({ endpoints }) {
  if (!endpoints.length) return html`<p class="muted">No endpoints.</p>`;
  return html`<table class="grid">
    <thead><tr><th>endpoint</th><th>status</th><th>variants</th><th>rollout</th><th>updated</th></tr></thead>
    <tbody>${endpoints.map(
      (e) => html`<tr key=${e.id}>
        <td><a href=${href(["endpoints", e.name])}>${e.name}</a></td>
        <td><${Badge} value=${e.status} /></td>
        <td>${e.variants.map((v) => html`<span class="chip" key=${v.id}>${v.name}: ${v.model} v${v.version}</span>`)}</td>
        <td>${e.rollout ? html`<${Badge} value=${e.rollout.state} />` : ""}</td>
        <td>${fmtTime(e.updated_at)}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

export function EndpointList() {
  const state = useLoad(() => get("/endpoints", { limit: 1000 }), []);
  return html`<${Section} title="Endpoints"><${Loaded} state=${state}>${(d) => html`<${EndpointTable} endpoints=${d.endpoints} />`}<//><//>`;
}

/** Differences of cumulative counters between two polls -> one sample per variant. */
function sample(prev, ep, now) {
  const out = { t: now / 1000, variants: {} };
  for (const v of ep.variants) {
    const cur = ep.stats[v.id] || { requests: 0, errors: 0 };
    const old = prev && prev.counters[v.id];
    const dt = prev ? (now - prev.at) / 1000 : 0;
    const rate = (a, b) => (old && dt > 0 ? Math.max(0, a - b) / dt : 0);
    out.variants[v.id] = {
      rps: rate(cur.requests, old ? old.requests : 0),
      eps: rate(cur.errors, old ? old.errors : 0),
      p50: cur.p50_latency_ms,
      p99: cur.p99_latency_ms,
    };
  }
  return out;
}

function Traffic({ ep, history }) {
  const series = (pick) =>
    ep.variants.map((v) => ({
      label: v.name,
      xs: history.map((h) => h.t),
      ys: history.map((h) => (h.variants[v.id] ? pick(h.variants[v.id]) : null)),
    }));
  const latency = ep.variants.flatMap((v) => [
    { label: `${v.name} p50`, xs: history.map((h) => h.t), ys: history.map((h) => (h.variants[v.id] ? h.variants[v.id].p50 : null)) },
    { label: `${v.name} p99`, xs: history.map((h) => h.t), ys: history.map((h) => (h.variants[v.id] ? h.variants[v.id].p99 : null)) },
  ]);
  return html`<div class="charts traffic">
    <${LineChart} title="Requests / s" time=${true} xLabel="time" series=${series((x) => x.rps)} height=${180} />
    <${LineChart} title="Errors / s" time=${true} xLabel="time" series=${series((x) => x.eps)} height=${180} />
    <${LineChart} title="Latency (ms)" time=${true} xLabel="time" series=${latency} height=${180} />
  </div>`;
}

function Rollout({ rollout }) {
  if (!rollout) return html`<p class="muted">No rollout yet.</p>`;
  const total = rollout.steps.length;
  const done = Math.min(rollout.step, total);
  return html`<div class="rollout">
    <dl class="facts">
      <dt>state</dt><dd><${Badge} value=${rollout.state} /> ${rollout.phase}</dd>
      <dt>strategy</dt><dd>${rollout.strategy.type}</dd>
      <dt>progress</dt><dd><progress max=${total || 1} value=${done}></progress> step ${done} of ${total}
        ${total ? ` (${rollout.steps.map((f) => `${Math.round(f * 100)}%`).join(" → ")})` : ""}</dd>
      ${rollout.reason && html`<dt>reason</dt><dd class="reason">${rollout.reason}</dd>`}
      <dt>from</dt><dd>${rollout.from_variants.map((v) => `${v.name}: ${v.model} v${v.version}`).join(", ")}</dd>
      <dt>to</dt><dd>${rollout.to_variants.map((v) => `${v.name}: ${v.model} v${v.version}`).join(", ")}</dd>
      <dt>started</dt><dd>${fmtTime(rollout.created_at)}</dd>
      <dt>finished</dt><dd>${fmtTime(rollout.finished_at)}</dd>
    </dl>
  </div>`;
}

async function captureSample(name) {
  const files = await get(`/endpoints/${seg(name)}/capture`, { limit: 1000 });
  if (!files.files.length) return { files, lines: [] };
  const newest = files.files[files.files.length - 1];
  const headers = {};
  const token = getToken();
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch(`/api/v1/artifacts/${seg(newest.digest)}`, { headers, credentials: "omit" });
  const text = resp.ok ? await resp.text() : "";
  return { files, lines: text.split("\n").filter(Boolean).slice(0, 5) };
}

const CAPTURE_REFRESH_MS = 10_000;

function CaptureSample({ name }) {
  const state = useLoad(() => captureSample(name), [name]);
  useEffect(() => {
    const timer = setInterval(state.reload, CAPTURE_REFRESH_MS);
    return () => clearInterval(timer);
  }, [name]);
  return html`<${Loaded} state=${state}>
    ${(d) => html`<div>
      <p class="muted">${d.files.total} capture files${d.files.dropped ? `, ${d.files.dropped} events dropped` : ""}</p>
      ${d.lines.length ? html`<pre class="capture">${d.lines.map((l) => l.slice(0, 2000) + "\n")}</pre>` : html`<p class="muted">nothing captured</p>`}
    </div>`}
  <//>`;
}

function Events({ name }) {
  const state = useLoad(() => get(`/endpoints/${seg(name)}/events`, { limit: 1000 }), [name]);
  return html`<${Loaded} state=${state}>
    ${(d) => html`<table class="grid"><thead><tr><th>#</th><th>time</th><th>kind</th><th>message</th></tr></thead>
      <tbody>${d.events.slice(-50).reverse().map(
        (e) => html`<tr key=${e.seq}><td>${e.seq}</td><td>${fmtTime(e.time)}</td><td>${e.kind}</td><td>${e.message}</td></tr>`,
      )}</tbody></table>`}
  <//>`;
}

export function EndpointDetail({ name }) {
  const [ep, setEp] = useState(null);
  const [error, setError] = useState(null);
  const [history, setHistory] = useState([]);
  useEffect(() => {
    let live = true;
    let timer = null;
    let prev = null;
    const poll = async () => {
      try {
        const now = Date.now();
        const got = await api("GET", `/endpoints/${seg(name)}`);
        if (!live) return;
        const point = sample(prev, got, now);
        prev = { at: now, counters: got.stats };
        setEp(got);
        setError(null);
        setHistory((h) => h.concat([point]).filter((x) => x.t >= point.t - WINDOW_S));
      } catch (e) {
        if (live) setError(e);
      }
      if (live) timer = setTimeout(poll, POLL_MS);
    };
    poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [name]);
  const state = { loading: !ep && !error, data: ep, error: ep ? null : error };
  return html`<${Loaded} state=${state}>
    ${(e) => html`<div class="stack">
      <${Section} title=${`Endpoint ${e.name}`}
          actions=${html`<a class="button" href=${href(["lineage", "endpoint", e.id])}>Lineage</a>`}>
        <dl class="facts">
          <dt>status</dt><dd><${Badge} value=${e.status} /> ${e.message}</dd>
          <dt>invoke</dt><dd><code>POST /endpoints/${e.name}/invocations</code></dd>
          <dt>capture</dt><dd>${e.capture && e.capture.enabled ? `${fmtNum(e.capture.percent)}% of requests` : "off"}</dd>
          <dt>created</dt><dd>${fmtTime(e.created_at)} by ${e.created_by}</dd>
        </dl>
        <h3>Variants</h3>
        <table class="grid variants"><thead><tr><th>variant</th><th>model</th><th>weight</th><th>live traffic</th><th>replicas</th><th>requests</th><th>errors</th><th>p50 / p99 ms</th></tr></thead>
          <tbody>${e.variants.map((v) => {
            const s = e.stats[v.id] || {};
            return html`<tr key=${v.id}>
              <td>${v.name}${v.shadow ? " (shadow)" : ""}</td>
              <td><a href=${href(["models", v.model], { version: v.version })}>${v.model} v${v.version}</a></td>
              <td>${fmtNum(v.weight)}</td>
              <td>${e.traffic[v.id] != null ? `${Math.round(e.traffic[v.id] * 100)}%` : ""}</td>
              <td>${e.replicas.filter((r) => r.variant_id === v.id && r.state === "Ready").length} / ${v.replicas}</td>
              <td class="num requests">${s.requests ?? 0}</td><td class="num">${s.errors ?? 0}</td>
              <td class="num">${fmtNum(s.p50_latency_ms)} / ${fmtNum(s.p99_latency_ms)}</td>
            </tr>`;
          })}</tbody>
        </table>
      <//>
      <${Section} title="Live traffic"><${Traffic} ep=${e} history=${history} /><//>
      <${Section} title="Rollout"><${Rollout} rollout=${e.rollout} /><//>
      <div class="cols">
        <${Section} title="Replicas">
          <table class="grid"><thead><tr><th>replica</th><th>state</th><th>address</th><th>restarts</th><th>message</th></tr></thead>
            <tbody>${e.replicas.map((r) => html`<tr key=${r.id}><td>${r.id}</td><td><${Badge} value=${r.state} /></td>
              <td>${r.host}${r.port ? `:${r.port}` : ""}</td><td>${r.restarts}</td><td>${r.message}</td></tr>`)}</tbody>
          </table>
        <//>
        <${Section} title="Captured data"><${CaptureSample} name=${e.name} /><//>
      </div>
      <${Section} title="Events"><${Events} name=${e.name} /><//>
    </div>`}
  <//>`;
}

