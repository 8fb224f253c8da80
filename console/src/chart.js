// Line charts with uPlot (canvas; fast for long series). Series may have different x
// values (runs compared side by side): uPlot.join aligns them, filling gaps with null.
import uPlot from "./vendor/uPlot.esm.js";
import { html, useEffect, useRef } from "./ui.js";

export const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d"];

/** Axis tick labels that fit: 1.2e8 -> "120M", 0.00012 -> "1.2e-4". */
function compact(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e9) return +(v / 1e9).toPrecision(3) + "G";
  if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
  if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
  if (a < 1e-3) return v.toExponential(1);
  return String(+v.toPrecision(4));
}

/**
 * series: [{label, xs, ys, color?}] ; xs ascending numbers (steps).
 * The wrapper carries data-points (the number of points drawn) for tests and benchmarks.
 */
export function LineChart({ title, series, height = 220, xLabel = "step", time = false }) {
  const box = useRef(null);
  const points = series.reduce((n, s) => n + s.xs.length, 0);
  const ymax = series.reduce((m, s) => s.ys.reduce((a, y) => (y != null && y > a ? y : a), m), 0);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const tables = series.map((s) => [Float64Array.from(s.xs), Float64Array.from(s.ys)]);
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const width = Math.max(280, el.clientWidth || 600);
    const opts = {
      width,
      height,
      scales: { x: { time } },
      axes: [{ label: xLabel }, { values: (_, splits) => splits.map(compact), size: 56 }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [
        { label: xLabel },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: true,
          points: { show: s.xs.length < 60 },
        })),
      ],
    };
    const plot = new uPlot(opts, data, el);
    const resize = () => plot.setSize({ width: Math.max(280, el.clientWidth || width), height });
    window.addEventListener("resize", resize);
    return () => {
      window.removeEventListener("resize", resize);
      plot.destroy();
    };
  }, [series, height]);
  return html`<figure class="chart" data-points=${points} data-series=${series.length} data-ymax=${ymax}>
    <figcaption>${title}</figcaption>
    <div ref=${box} class="chart-box"></div>
  </figure>`;
}

/** Equal-width histogram bins drawn as SVG bars (edges: n+1 numbers, counts: n). */
export function Histogram({ edges, counts, width = 240, height = 70 }) {
  if (!counts || !counts.length) return null;
  const max = Math.max(...counts, 1);
  const w = width / counts.length;
  return html`<svg class="hist" width=${width} height=${height} viewBox=${`0 0 ${width} ${height}`} role="img">
    ${counts.map((c, i) => {
      const h = (c / max) * (height - 2);
      return html`<rect key=${i} x=${i * w + 0.5} y=${height - h} width=${Math.max(1, w - 1)} height=${h}>
        <title>${`[${edges[i]}, ${edges[i + 1]}): ${c}`}</title>
      </rect>`;
    })}
  </svg>`;
}
