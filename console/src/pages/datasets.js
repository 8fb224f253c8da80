// Datasets: the list, a dataset's versions, and one version's schema, profile (with
// histograms) and data-quality reports.
import { get, seg } from "../api.js";
import { Histogram } from "../chart.js";
import { Badge, Loaded, Section, fmtBytes, fmtNum, fmtTime, href, html, useLoad, useState } from "../ui.js";

export function DatasetList() {
  const state = useLoad(() => get("/datasets", { limit: 1000 }), []);
  return html`<${Section} title="Datasets">
    <${Loaded} state=${state}>
      ${(data) =>
        data.datasets.length
          ? html`<table class="grid">
              <thead><tr><th>name</th><th>latest</th><th>updated</th><th>description</th></tr></thead>
              <tbody>${data.datasets.map(
                (d) => html`<tr key=${d.name}>
                  <td><a href=${href(["datasets", d.name])}>${d.name}</a></td>
                  <td>v${d.latest_version}</td><td>${fmtTime(d.updated_at)}</td><td>${d.description}</td>
                </tr>`,
              )}</tbody>
            </table>`
          : html`<p class="muted">No datasets yet.</p>`}
    <//>
  <//>`;
}

function Profile({ profile }) {
  if (!profile) return html`<p class="muted">not profiled</p>`;
  return html`<div class="profile">
    ${profile.columns.map(
      (c) => html`<div class="column" key=${c.name}>
        <h4>${c.name} <span class="muted">${c.type}</span></h4>
        <dl class="facts small">
          <dt>missing</dt><dd>${c.missing} (${(c.missing_ratio * 100).toFixed(1)}%)</dd>
          ${c.distinct_estimate != null && html`<dt>distinct≈</dt><dd>${c.distinct_estimate}</dd>`}
          ${c.mean != null && html`<dt>mean</dt><dd>${fmtNum(c.mean)}</dd>`}
          ${c.min != null && html`<dt>min … max</dt><dd>${fmtNum(c.min)} … ${fmtNum(c.max)}</dd>`}
        </dl>
        ${c.histogram && html`<${Histogram} edges=${c.histogram.edges} counts=${c.histogram.counts} />`}
        ${c.top_values.length > 0 && html`<ol class="top">${c.top_values.slice(0, 5).map(
          (t, i) => html`<li key=${i}>${String(t.value)} <span class="muted">${t.count}</span></li>`,
        )}</ol>`}
      </div>`,
    )}
  </div>`;
}

function Reports({ name, version }) {
  const state = useLoad(() => get(`/datasets/${seg(name)}/versions/${version}/checks`), [name, version]);
  return html`<${Loaded} state=${state}>
    ${(data) =>
      data.reports.length
        ? data.reports.map(
            (r) => html`<div class="report" key=${r.id}>
              <p><${Badge} value=${r.passed ? "passed" : "failed"} /> ${fmtTime(r.created_at)} by ${r.created_by}</p>
              <table class="grid"><thead><tr><th>rule</th><th>result</th><th>failing rows</th><th>message</th></tr></thead>
                <tbody>${r.report.results.map(
                  (x, i) => html`<tr key=${i}><td>${x.name}</td><td><${Badge} value=${x.passed ? "passed" : "failed"} /></td>
                    <td>${x.failing_rows}</td><td>${x.message}</td></tr>`,
                )}</tbody></table>
            </div>`,
          )
        : html`<p class="muted">no quality reports</p>`}
  <//>`;
}

/** Each bucket's share in the base (grey) and the other version (blue), side by side. */
function ShareBars({ buckets, width = 220, height = 50 }) {
  if (!buckets.length) return null;
  const max = Math.max(...buckets.flatMap((b) => [b.share_a, b.share_b]), 1e-9);
  const w = width / buckets.length;
  return html`<svg class="shares" width=${width} height=${height} viewBox=${`0 0 ${width} ${height}`} role="img">
    ${buckets.map((b, i) => {
      const ha = (b.share_a / max) * (height - 2);
      const hb = (b.share_b / max) * (height - 2);
      const half = Math.max(1, w / 2 - 1);
      return html`<g key=${i}>
        <rect class="a" x=${i * w} y=${height - ha} width=${half} height=${ha} />
        <rect class="b" x=${i * w + half} y=${height - hb} width=${half} height=${hb} />
        <title>${`${b.label}: ${(b.share_a * 100).toFixed(1)}% → ${(b.share_b * 100).toFixed(1)}%`}</title>
      </g>`;
    })}
  </svg>`;
}

function Diff({ name, base, other }) {
  const state = useLoad(() => get(`/datasets/${seg(name)}/diff`, { base, other }), [name, base, other]);
  return html`<${Loaded} state=${state}>
    ${(d) => {
      const sc = d.schema_changes;
      return html`<div class="diff">
        <p>rows ${d.row_count_a} → ${d.row_count_b} (${d.row_count_delta >= 0 ? "+" : ""}${d.row_count_delta})
          ${sc.added.length ? html` · added: ${sc.added.map((c) => c.name).join(", ")}` : ""}
          ${sc.removed.length ? html` · removed: ${sc.removed.map((c) => c.name).join(", ")}` : ""}
          ${sc.type_changed.length ? html` · retyped: ${sc.type_changed.map((c) => `${c.name} ${c.old}→${c.new}`).join(", ")}` : ""}</p>
        <table class="grid"><thead><tr><th>column</th><th>shift</th><th>PSI</th><th>TVD</th><th>mean shift (σ)</th><th>missing</th><th>v${base} (grey) vs v${other} (blue)</th></tr></thead>
          <tbody>${d.columns.map(
            (c) => html`<tr key=${c.name}><td>${c.name}</td><td><${Badge} value=${c.shifted ? "shifted" : "stable"} /></td>
              <td class="num">${fmtNum(c.psi)}</td><td class="num">${fmtNum(c.tvd)}</td><td class="num">${fmtNum(c.mean_shift_std)}</td>
              <td>${(c.missing_ratio_a * 100).toFixed(1)}% → ${(c.missing_ratio_b * 100).toFixed(1)}%</td>
              <td><${ShareBars} buckets=${c.buckets} /></td></tr>`,
          )}</tbody>
        </table>
      </div>`;
    }}
  <//>`;
}

function DiffSection({ name, version }) {
  const [open, setOpen] = useState(false);
  if (version < 2) return null;
  return html`<${Section} title=${`Changes since v${version - 1}`}
      actions=${!open && html`<button name="diff" onClick=${() => setOpen(true)}>Compare with v${version - 1}</button>`}>
    ${open ? html`<${Diff} name=${name} base=${version - 1} other=${version} />` : html`<p class="muted">Schema, row count and per-column distribution shift (reads both versions).</p>`}
  <//>`;
}

function Version({ name, version }) {
  const state = useLoad(() => get(`/datasets/${seg(name)}/versions/${version}`), [name, version]);
  return html`<${Loaded} state=${state}>
    ${(v) => html`<div class="stack">
      <${Section} title=${`${name} v${v.version}`}
          actions=${html`<a class="button" href=${href(["lineage", "dataset_version", v.id])}>Lineage</a>`}>
        <dl class="facts">
          <dt>rows</dt><dd>${v.row_count}</dd><dt>size</dt><dd>${fmtBytes(v.size_bytes)}</dd>
          <dt>format</dt><dd>${v.format}</dd><dt>files</dt><dd>${v.files.length}</dd>
          <dt>created</dt><dd>${fmtTime(v.created_at)} by ${v.created_by}</dd>
        </dl>
        <h3>Schema</h3>
        <table class="grid"><thead><tr><th>column</th><th>type</th><th>nullable</th></tr></thead>
          <tbody>${v.columns.map((c) => html`<tr key=${c.name}><td>${c.name}</td><td>${c.arrow_type}</td><td>${c.nullable ? "yes" : "no"}</td></tr>`)}</tbody>
        </table>
      <//>
      <${DiffSection} name=${name} version=${v.version} />
      <${Section} title="Profile"><${Profile} profile=${v.profile} /><//>
      <${Section} title="Quality reports"><${Reports} name=${name} version=${v.version} /><//>
    </div>`}
  <//>`;
}

export function DatasetDetail({ name, query }) {
  const state = useLoad(() => get(`/datasets/${seg(name)}`), [name]);
  return html`<${Loaded} state=${state}>
    ${(d) => {
      const chosen = Number(query.get("version") || d.latest_version);
      return html`<div class="stack">
        <${Section} title=${`Dataset ${d.name}`}>
          <p>${d.description}</p>
          <table class="grid"><thead><tr><th>version</th><th>rows</th><th>columns</th><th>size</th><th>created</th></tr></thead>
            <tbody>${d.versions.map(
              (v) => html`<tr key=${v.version} class=${v.version === chosen ? "chosen" : ""}>
                <td><a href=${href(["datasets", d.name], { version: v.version })}>v${v.version}</a></td>
                <td>${v.row_count}</td><td>${v.column_count}</td><td>${fmtBytes(v.size_bytes)}</td>
                <td>${fmtTime(v.created_at)} by ${v.created_by}</td></tr>`,
            )}</tbody>
          </table>
        <//>
        ${chosen > 0 && html`<${Version} name=${d.name} version=${chosen} />`}
      </div>`;
    }}
  <//>`;
}
