// Models: groups, a group's versions, a version's card/signature/metrics, approve or
// reject with a reason, moving an alias, and the group's history. Buttons appear only
// for callers whose role grants the permission; the API checks it again regardless.
import { can, get, post, put, seg } from "../api.js";
import {
  Badge, ErrorBox, KeyValues, Loaded, Section, fmtBytes, fmtTime, href, html, useLoad, useState,
} from "../ui.js";

export function ModelList() {
  const state = useLoad(() => get("/models", { limit: 1000 }), []);
  return html`<${Section} title="Models">
    <${Loaded} state=${state}>
      ${(data) =>
        data.models.length
          ? html`<table class="grid">
              <thead><tr><th>name</th><th>latest</th><th>aliases</th><th>updated</th><th>description</th></tr></thead>
              <tbody>${data.models.map(
                (m) => html`<tr key=${m.id}>
                  <td><a href=${href(["models", m.name])}>${m.name}</a></td>
                  <td>${m.latest_version || ""}</td>
                  <td>${Object.entries(m.aliases).map(([a, v]) => html`<span class="chip" key=${a}>${a} → v${v}</span>`)}</td>
                  <td>${fmtTime(m.updated_at)}</td>
                  <td>${m.description}</td>
                </tr>`,
              )}</tbody>
            </table>`
          : html`<p class="muted">No models registered yet.</p>`}
    <//>
  <//>`;
}

function Decide({ me, model, version, onDone }) {
  const [reason, setReason] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  if (!can(me, "models.approve") || version.status !== "PendingManualApproval") return null;
  const act = async (verb) => {
    setBusy(true);
    setError(null);
    try {
      await post(`/models/${seg(model)}/versions/${version.version}/${verb}`, { reason });
      setReason("");
      onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="decide" onSubmit=${(e) => e.preventDefault()}>
    <label>Reason <textarea name="reason" rows="2" value=${reason} onInput=${(e) => setReason(e.target.value)}
      placeholder="why (required to reject)"></textarea></label>
    <div class="row">
      <button type="button" class="primary" name="approve" disabled=${busy} onClick=${() => act("approve")}>Approve</button>
      <button type="button" class="danger" name="reject" disabled=${busy || !reason.trim()} onClick=${() => act("reject")}>Reject</button>
    </div>
    <${ErrorBox} error=${error} />
  </form>`;
}

function MoveAlias({ me, model, version, onDone }) {
  const [alias, setAlias] = useState("production");
  const [error, setError] = useState(null);
  if (!can(me, "models.write")) return null;
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await put(`/models/${seg(model)}/aliases/${seg(alias.trim())}`, { version: version.version });
      onDone();
    } catch (err) {
      setError(err);
    }
  };
  return html`<form class="row alias" onSubmit=${submit}>
    <label>Alias <input name="alias" value=${alias} onInput=${(e) => setAlias(e.target.value)} /></label>
    <button type="submit" name="move-alias">Point at v${version.version}</button>
    <${ErrorBox} error=${error} />
  </form>`;
}

function Signature({ signature }) {
  const rows = (list, side) => list.map((t) => html`<tr key=${side + t.name}><td>${side}</td><td>${t.name}</td><td>${t.type}</td><td>${t.shape ? JSON.stringify(t.shape) : ""}</td></tr>`);
  if (!signature.inputs.length && !signature.outputs.length) return html`<p class="muted">no signature</p>`;
  return html`<table class="grid"><thead><tr><th></th><th>name</th><th>type</th><th>shape</th></tr></thead>
    <tbody>${rows(signature.inputs, "input")}${rows(signature.outputs, "output")}</tbody></table>`;
}

function Card({ card }) {
  const fields = ["intended_use", "training_data", "evaluation", "limitations", "ethical_considerations"];
  const present = fields.filter((f) => card[f]);
  if (!present.length && !Object.keys(card.other || {}).length) return html`<p class="muted">no model card</p>`;
  return html`<dl class="card-fields">
    ${present.map((f) => html`<dt key=${f + "t"}>${f.replace(/_/g, " ")}</dt><dd key=${f}>${card[f]}</dd>`)}
    ${Object.entries(card.other || {}).map(([k, v]) => html`<dt key=${k + "t"}>${k}</dt><dd key=${k}>${v}</dd>`)}
  </dl>`;
}

function VersionDetail({ me, model, number, onChange }) {
  const state = useLoad(() => get(`/models/${seg(model)}/versions/${number}`), [model, number]);
  const done = () => {
    state.reload();
    onChange();
  };
  return html`<${Loaded} state=${state}>
    ${(v) => html`<${Section} title=${`${v.name} v${v.version}`}
        actions=${html`<a class="button" href=${href(["lineage", "model_version", v.id])}>Lineage</a>`}>
      ${v.runs_user_code && html`<div class="warning" role="note" data-warning="runs-user-code">
        <strong>This version runs Python code that came with it</strong> (flavor ${v.flavor}):
        loading it, to serve or to score, executes that code with the server's rights. Check
        the code before approving or deploying it.
      </div>`}
      <dl class="facts">
        <dt>status</dt><dd><${Badge} value=${v.status} /> ${v.status_reason && html`<span class="reason">${v.status_reason}</span>`}
          ${v.status_by && html`<span class="muted"> by ${v.status_by} at ${fmtTime(v.status_at)}</span>`}</dd>
        <dt>aliases</dt><dd>${v.aliases.map((a) => html`<span class="chip" key=${a}>${a}</span>`)}</dd>
        <dt>flavor</dt><dd>${v.flavor}</dd>
        <dt>artifact</dt><dd>${v.artifact_filename} (${fmtBytes(v.artifact_size)}) <code>${v.artifact_digest.slice(0, 12)}…</code></dd>
        ${v.source_run_id && html`<dt>run</dt><dd><a href=${href(["runs", v.source_run_id])}>${v.source_run_id}</a></dd>`}
        ${v.source_job_id && html`<dt>job</dt><dd><a href=${href(["jobs", v.source_job_id])}>${v.source_job_id}</a></dd>`}
        <dt>registered</dt><dd>${fmtTime(v.created_at)} by ${v.created_by}</dd>
      </dl>
      <${Decide} me=${me} model=${model} version=${v} onDone=${done} />
      <${MoveAlias} me=${me} model=${model} version=${v} onDone=${done} />
      <div class="cols">
        <div><h3>Metrics</h3><${KeyValues} items=${v.metrics} /></div>
        <div><h3>Signature</h3><${Signature} signature=${v.signature} /></div>
      </div>
      <h3>Model card</h3><${Card} card=${v.card} />
    <//>`}
  <//>`;
}

function History({ model, tick }) {
  const state = useLoad(() => get(`/models/${seg(model)}/history`, { limit: 200 }), [model, tick]);
  return html`<${Section} title="History">
    <${Loaded} state=${state}>
      ${(data) => html`<table class="grid history">
        <thead><tr><th>#</th><th>when</th><th>who</th><th>version</th><th>change</th><th>reason</th></tr></thead>
        <tbody>${data.entries.map(
          (h) => html`<tr key=${h.seq}>
            <td>${h.seq}</td><td>${fmtTime(h.time)}</td><td>${h.actor}</td>
            <td>${h.version ?? ""}</td>
            <td>${h.kind}${h.alias ? ` ${h.alias}` : ""}: ${h.old ?? "∅"} → ${h.new ?? "∅"}</td>
            <td>${h.reason || ""}</td>
          </tr>`,
        )}</tbody>
      </table>`}
    <//>
  <//>`;
}

export function ModelDetail({ me, name, query }) {
  const [tick, setTick] = useState(0);
  const state = useLoad(() => get(`/models/${seg(name)}/versions`, { limit: 1000 }), [name, tick]);
  const chosen = Number(query.get("version") || 0);
  return html`<div class="stack">
    <${Section} title=${`Model ${name}`}>
      <${Loaded} state=${state}>
        ${(data) => html`<table class="grid">
          <thead><tr><th>version</th><th>status</th><th>aliases</th><th>flavor</th><th>registered</th></tr></thead>
          <tbody>${data.versions.map(
            (v) => html`<tr key=${v.id} class=${v.version === chosen ? "chosen" : ""}>
              <td><a href=${href(["models", name], { version: v.version })}>v${v.version}</a></td>
              <td><${Badge} value=${v.status} /></td>
              <td>${v.aliases.map((a) => html`<span class="chip" key=${a}>${a}</span>`)}</td>
              <td>${v.flavor}</td><td>${fmtTime(v.created_at)} by ${v.created_by}</td>
            </tr>`,
          )}</tbody>
        </table>`}
      <//>
    <//>
    ${chosen > 0 && html`<${VersionDetail} me=${me} model=${name} number=${chosen} onChange=${() => setTick((t) => t + 1)} />`}
    <${History} model=${name} tick=${tick} />
  </div>`;
}
