/* A small line chart in SVG: one line per series, rounds on x. No library. */
"use strict";

const CHART_COLOURS = ["#0b5394", "#b45f06", "#38761d", "#741b47", "#5b0f00", "#134f5c"];
const CHART_DASHES = ["", "6 3", "2 3", "8 3 2 3", "4 4", "1 2"];
const SVG_NS = "http://www.w3.org/2000/svg";

function svgElement(name, attributes, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceRange(values) {
  const finite = values.filter((v) => Number.isFinite(v));
  if (!finite.length) return [0, 1];
  let low = Math.min(...finite);
  let high = Math.max(...finite);
  if (low >= 0 && high <= 1) return [Math.min(low, 0.5) > 0.4 ? 0.4 : 0, 1];
  if (low === high) { low -= 0.5; high += 0.5; }
  const pad = (high - low) * 0.08;
  return [low - pad, high + pad];
}

/* series: [{name, points: [[round, value], ...], bold}] */
function drawChart(container, series, options) {
  const width = 640, height = 300;
  const margin = { left: 52, right: 150, top: 14, bottom: 40 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const allRounds = series.flatMap((s) => s.points.map((p) => p[0]));
  const maxRound = Math.max(options.totalRounds || 1, ...allRounds, 1);
  const [low, high] = niceRange(series.flatMap((s) => s.points.map((p) => p[1])));
  const x = (r) => margin.left + (maxRound <= 1 ? plotW / 2 : ((r - 1) / (maxRound - 1)) * plotW);
  const y = (v) => margin.top + plotH - ((v - low) / (high - low)) * plotH;

  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title chart-desc",
    class: "chart",
  });
  svg.appendChild(svgElement("title", { id: "chart-title" }, `${options.metric} per round`));
  const last = series.map((s) => {
    const p = s.points[s.points.length - 1];
    return p && Number.isFinite(p[1]) ? `${s.name} ${p[1].toFixed(3)}` : `${s.name} no value`;
  });
  svg.appendChild(svgElement("desc", { id: "chart-desc" },
    `Validation ${options.metric}, rounds 1 to ${maxRound}. Latest: ${last.join("; ")}.`));

  const axis = svgElement("g", { class: "axis" });
  axis.appendChild(svgElement("line", { x1: margin.left, y1: margin.top + plotH, x2: margin.left + plotW, y2: margin.top + plotH }));
  axis.appendChild(svgElement("line", { x1: margin.left, y1: margin.top, x2: margin.left, y2: margin.top + plotH }));
  for (let i = 0; i <= 4; i++) {
    const v = low + ((high - low) * i) / 4;
    axis.appendChild(svgElement("line", { x1: margin.left - 4, y1: y(v), x2: margin.left + plotW, y2: y(v), class: "grid" }));
    axis.appendChild(svgElement("text", { x: margin.left - 8, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(2)));
  }
  const step = Math.max(1, Math.ceil(maxRound / 10));
  for (let r = 1; r <= maxRound; r += step) {
    axis.appendChild(svgElement("text", { x: x(r), y: margin.top + plotH + 16, "text-anchor": "middle" }, String(r)));
  }
  axis.appendChild(svgElement("text", { x: margin.left + plotW / 2, y: height - 6, "text-anchor": "middle" }, "round"));
  svg.appendChild(axis);

  series.forEach((s, i) => {
    const colour = s.bold ? "#000000" : CHART_COLOURS[i % CHART_COLOURS.length];
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    const group = svgElement("g", { class: "series", "data-series": s.name });
    if (pts.length) {
      group.appendChild(svgElement("polyline", {
        points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": s.bold ? 3 : 1.6,
        "stroke-dasharray": s.bold ? "" : CHART_DASHES[i % CHART_DASHES.length],
      }));
      for (const p of pts) {
        group.appendChild(svgElement("circle", { cx: x(p[0]), cy: y(p[1]), r: s.bold ? 3 : 2.2, fill: colour }));
      }
    }
    const ly = margin.top + 14 + i * 18;
    group.appendChild(svgElement("line", {
      x1: margin.left + plotW + 10, y1: ly - 4, x2: margin.left + plotW + 34, y2: ly - 4,
      stroke: colour, "stroke-width": s.bold ? 3 : 1.6,
      "stroke-dasharray": s.bold ? "" : CHART_DASHES[i % CHART_DASHES.length],
    }));
    group.appendChild(svgElement("text", { x: margin.left + plotW + 40, y: ly }, s.name));
    svg.appendChild(group);
  });
  container.replaceChildren(svg);
}

window.drawChart = drawChart;
