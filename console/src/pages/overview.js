// Overview: recent jobs, versions waiting for approval, endpoints (where that domain exists).
import { get, seg } from "../api.js";
import { Loaded, Section, fmtTime, href, html, useLoad } from "../ui.js";
import { EndpointTable } from "./endpoints.js";
import { JobTable } from "./jobs.js";

async function pendingApprovals() {
  const models = await get("/models", { limit: 200 });
  const lists = await Promise.all(
    models.models.map((m) => get(`/models/${seg(m.name)}/versions`, { status: "PendingManualApproval", limit: 20 })),
  );
  return lists.flatMap((l) => l.versions);
}

async function endpoints() {
  try {
    return await get("/endpoints", {});
  } catch (e) {
    if (e.status === 404) return null; // the endpoints domain is not part of this server
    throw e;
  }
}

export function Overview() {
  const jobs = useLoad(() => get("/jobs", { limit: 10 }), []);
  const pending = useLoad(pendingApprovals, []);
  const eps = useLoad(endpoints, []);
  return html`<div class="stack">
    <${Section} title="Recent jobs"><${Loaded} state=${jobs}>${(d) => html`<${JobTable} jobs=${d.jobs} />`}<//><//>
    <${Section} title="Pending approvals">
      <${Loaded} state=${pending}>
        ${(versions) =>
          versions.length
            ? html`<table class="grid"><thead><tr><th>model</th><th>version</th><th>registered</th><th>by</th></tr></thead>
                <tbody>${versions.map(
                  (v) => html`<tr key=${v.id}><td><a href=${href(["models", v.name], { version: v.version })}>${v.name}</a></td>
                    <td>v${v.version}</td><td>${fmtTime(v.created_at)}</td><td>${v.created_by}</td></tr>`,
                )}</tbody></table>`
            : html`<p class="muted">Nothing waits for approval.</p>`}
      <//>
    <//>
    <${Loaded} state=${eps}>
      ${(d) => d && html`<${Section} title="Endpoints"><${EndpointTable} endpoints=${d.endpoints} /><//>`}
    <//>
  </div>`;
}
