// The audit log (admins): every mutation, refused and failed ones included.
import { get } from "../api.js";
import { Badge, Loaded, Section, fmtTime, go, html, useLoad, useState } from "../ui.js";

export function Audit({ query }) {
  const actor = query.get("actor") || "";
  const operation = query.get("operation") || "";
  const [draft, setDraft] = useState({ actor, operation });
  const state = useLoad(() => get("/audit", { actor, operation, limit: 500 }), [actor, operation]);
  return html`<${Section} title="Audit log">
    <form class="filter" onSubmit=${(e) => { e.preventDefault(); go(["audit"], draft); }}>
      <input name="actor" placeholder="actor" value=${draft.actor} onInput=${(e) => setDraft({ ...draft, actor: e.target.value })} />
      <input name="operation" placeholder="operation, e.g. registry.approve_version" value=${draft.operation}
        onInput=${(e) => setDraft({ ...draft, operation: e.target.value })} />
      <button type="submit">Filter</button>
    </form>
    <${Loaded} state=${state}>
      ${(d) => html`<table class="grid">
        <thead><tr><th>time</th><th>actor</th><th>operation</th><th>target</th><th>result</th><th>origin</th></tr></thead>
        <tbody>${d.events.map(
          (e) => html`<tr key=${e.id}><td>${fmtTime(e.time)}</td><td>${e.actor}</td><td>${e.operation}</td>
            <td>${e.target || ""}</td><td><${Badge} value=${e.result} /></td><td>${e.origin}</td></tr>`,
        )}</tbody>
      </table>`}
    <//>
  <//>`;
}
