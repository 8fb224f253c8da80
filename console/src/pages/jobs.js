// Jobs: the list and one job's state, attempts with resource usage, a live log tail
// (polled with after_seq until the job has ended) and its final metrics.
import { get, seg } from "../api.js";
import { JobRunCharts } from "./experiments.js";
import { Badge, KeyValues, Loaded, Section, fmtBytes, fmtTime, href, html, useEffect, useLoad, useRef, useState } from "../ui.js";

const LOG_POLL_MS = 1000;
const MAX_LINES = 5000;

export function JobTable({ jobs }) {
  if (!jobs.length) return html`<p class="muted">No jobs yet.</p>`;
  return html`<table class="grid">
    <thead><tr><th>job</th><th>kind</th><th>state</th><th>backend</th><th>attempts</th><th>created</th><th>by</th></tr></thead>
    <tbody>${jobs.map(
      (j) => html`<tr key=${j.id}>
        <td><a href=${href(["jobs", j.id])}>${j.name || j.id}</a></td><td>${j.kind}</td>
        <td><${Badge} value=${j.state} /></td><td>${j.backend}</td><td>${j.attempts}</td>
        <td>${fmtTime(j.created_at)}</td><td>${j.created_by}</td>
      </tr>`,
    )}</tbody>
  </table>`;
}

export function JobList() {
  const state = useLoad(() => get("/jobs", { limit: 200 }), []);
  return html`<${Section} title="Jobs"><${Loaded} state=${state}>${(d) => html`<${JobTable} jobs=${d.jobs} />`}<//><//>`;
}

function LogTail({ jobId, onFinished }) {
  const [lines, setLines] = useState([]);
  const [state, setState] = useState(null);
  const box = useRef(null);
  useEffect(() => {
    let after = 0;
    let timer = null;
    let live = true;
    const poll = async () => {
      try {
        const page = await get(`/jobs/${seg(jobId)}/logs`, { after_seq: after, limit: 1000 });
        if (!live) return;
        after = page.next_after_seq;
        if (page.lines.length) setLines((old) => old.concat(page.lines).slice(-MAX_LINES));
        setState(page.state);
        if (page.finished) {
          onFinished && onFinished();
          return;
        }
        timer = setTimeout(poll, page.lines.length >= 1000 ? 0 : LOG_POLL_MS);
      } catch {
        if (live) timer = setTimeout(poll, LOG_POLL_MS * 3);
      }
    };
    poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [jobId]);
  useEffect(() => {
    if (box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [lines]);
  return html`<div>
    <p class="muted">${state ? `state ${state}` : "loading…"} · ${lines.length} lines</p>
    <pre class="log" ref=${box}>${lines.map((l) => html`<span key=${l.seq} class=${l.stream}>${l.text + "\n"}</span>`)}</pre>
  </div>`;
}

export function JobDetail({ jobId }) {
  const state = useLoad(() => get(`/jobs/${seg(jobId)}`), [jobId]);
  return html`<${Loaded} state=${state}>
    ${(j) => html`<div class="stack">
      <${Section} title=${`Job ${j.name || j.id}`}
          actions=${html`<a class="button" href=${href(["lineage", "job", j.id])}>Lineage</a>`}>
        <dl class="facts">
          <dt>id</dt><dd>${j.id}</dd><dt>kind</dt><dd>${j.kind}</dd>
          <dt>state</dt><dd><${Badge} value=${j.state} /> ${j.state_reason}</dd>
          ${j.failure_reason && html`<dt>failure</dt><dd class="reason">${j.failure_reason}</dd>`}
          <dt>backend</dt><dd>${j.backend}</dd>
          <dt>algorithm / entry point</dt><dd>${j.spec.algorithm || j.spec.entry_point || ""}</dd>
          ${j.run_id && html`<dt>run</dt><dd><a href=${href(["runs", j.run_id])}>${j.run_id}</a></dd>`}
          <dt>created</dt><dd>${fmtTime(j.created_at)} by ${j.created_by}</dd>
          <dt>ended</dt><dd>${fmtTime(j.ended_at)}</dd>
        </dl>
      <//>
      <div class="cols">
        <${Section} title="Hyperparameters"><${KeyValues} items=${j.spec.hyperparameters} /><//>
        <${Section} title="Final metrics"><${KeyValues} items=${j.final_metrics} /><//>
      </div>
      <${Section} title="Attempts">
        <table class="grid"><thead><tr><th>#</th><th>state</th><th>exit</th><th>CPU s</th><th>peak memory</th><th>wall s</th><th>started</th></tr></thead>
          <tbody>${j.attempt_list.map(
            (a) => html`<tr key=${a.number}><td>${a.number}</td><td><${Badge} value=${a.state} /></td><td>${a.exit_code ?? ""}</td>
              <td>${a.usage ? a.usage.cpu_seconds.toFixed(2) : ""}</td><td>${a.usage ? fmtBytes(a.usage.peak_rss_bytes) : ""}</td>
              <td>${a.usage ? a.usage.wall_seconds.toFixed(2) : ""}</td><td>${fmtTime(a.started_at)}</td></tr>`,
          )}</tbody>
        </table>
      <//>
      ${j.run_id && html`<${Section} title="Metrics"><${JobRunCharts} runId=${j.run_id} /><//>`}
      <${Section} title="Logs"><${LogTail} jobId=${j.id} onFinished=${j.ended_at ? null : state.reload} /><//>
    </div>`}
  <//>`;
}
