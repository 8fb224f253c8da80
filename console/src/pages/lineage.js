// Lineage: the graph around one node (dataset version, job, run, artifact, model version,
// endpoint), upstream and downstream, drawn as layered SVG with data flowing left to right.
import { get, seg } from "../api.js";
import { Loaded, Section, href, html, useLoad } from "../ui.js";

const W = 190;
const H = 46;
const GAP_X = 70;
const GAP_Y = 18;

function linkFor(node) {
  switch (node.type) {
    case "run": return href(["runs", node.id]);
    case "job": return href(["jobs", node.id]);
    default: return href(["lineage", node.type, node.id]);
  }
}

/** Columns by longest path from the graph's sources, so every edge points rightwards
 * (a job's run sits after the job, a model after the run that produced it). */
export function layout(graph) {
  const keys = graph.nodes.map((n) => `${n.type}:${n.id}`);
  const level = new Map(keys.map((k) => [k, 0]));
  // Bellman-Ford style relaxation: at most |nodes| rounds, so a cycle cannot loop forever.
  for (let round = 0; round < keys.length; round++) {
    let changed = false;
    for (const e of graph.edges) {
      if (!level.has(e.source) || !level.has(e.target)) continue;
      if (level.get(e.target) < level.get(e.source) + 1) {
        level.set(e.target, level.get(e.source) + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = new Map();
  for (const n of graph.nodes) {
    const key = `${n.type}:${n.id}`;
    const l = level.has(key) ? level.get(key) : 0;
    if (!columns.has(l)) columns.set(l, []);
    columns.get(l).push({ ...n, key });
  }
  const levels = [...columns.keys()].sort((a, b) => a - b);
  const pos = new Map();
  let height = 0;
  levels.forEach((l, ci) => {
    columns.get(l).forEach((n, ri) => {
      pos.set(n.key, { ...n, x: 10 + ci * (W + GAP_X), y: 10 + ri * (H + GAP_Y) });
      height = Math.max(height, 10 + (ri + 1) * (H + GAP_Y));
    });
  });
  return { pos, width: 20 + levels.length * (W + GAP_X) - GAP_X, height: height + 10 };
}

export function LineageGraph({ graph }) {
  const { pos, width, height } = layout(graph);
  return html`<svg class="lineage" width=${width} height=${height} viewBox=${`0 0 ${width} ${height}`}>
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
      <path d="M 0 0 L 10 5 L 0 10 z" /></marker></defs>
    ${graph.edges.map((e, i) => {
      const a = pos.get(e.source);
      const b = pos.get(e.target);
      if (!a || !b) return null;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      return html`<g key=${"e" + i} class="edge">
        <path d=${`M ${x1} ${y1} C ${x1 + GAP_X / 2} ${y1}, ${x2 - GAP_X / 2} ${y2}, ${x2} ${y2}`} marker-end="url(#arrow)" />
        <text x=${(x1 + x2) / 2} y=${(y1 + y2) / 2 - 4}>${e.relation}</text>
      </g>`;
    })}
    ${[...pos.values()].map(
      (n) => html`<a key=${n.key} href=${linkFor(n)}>
        <g class=${"node " + n.type + (n.key === graph.root ? " root" : "")}>
          <rect x=${n.x} y=${n.y} width=${W} height=${H} rx="6" />
          <text x=${n.x + 8} y=${n.y + 17} class="type">${n.type.replace("_", " ")}</text>
          <text x=${n.x + 8} y=${n.y + 35}>${(n.label || n.id).slice(0, 26)}</text>
          <title>${`${n.type} ${n.id}\n${n.label}`}</title>
        </g>
      </a>`,
    )}
  </svg>`;
}

export function Lineage({ type, id }) {
  const state = useLoad(() => get(`/lineage/${seg(type)}/${seg(id)}`, { direction: "both" }), [type, id]);
  return html`<${Section} title=${`Lineage of ${type.replace("_", " ")} ${id}`}>
    <${Loaded} state=${state}>
      ${(g) => (g.edges.length ? html`<div class="scroll"><${LineageGraph} graph=${g} /></div>` : html`<p class="muted">No recorded lineage.</p>`)}
    <//>
  <//>`;
}
