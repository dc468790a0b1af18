// A graph drawn as SVG: a layered layout computed here, no library. Layers are the longest
// path from the entry point over forward edges; edges that close a loop (back edges, found by
// a depth-first search from the entry point) are drawn as curves on the right.

import { s } from "./dom.js";

const NODE_W = 160;
const NODE_H = 40;
const GAP_X = 28;
const GAP_Y = 64;
const MARGIN = 24;
const LOOP_SPACE = 70; // room on the right for back edges
const MAX_LABEL = 20;

/** All edges: the static ones, and declared destinations (dashed) that no static edge covers. */
export function graphEdges(detail) {
  const names = new Set(detail.nodes.map((n) => n.name));
  const seen = new Set();
  const edges = [];
  const add = (source, target, kind) => {
    const key = JSON.stringify([source, target]);
    if (!names.has(source) || !names.has(target) || seen.has(key)) return;
    seen.add(key);
    edges.push({ source, target, kind });
  };
  for (const e of detail.edges) add(e.source, e.target, "edge");
  for (const n of detail.nodes) for (const d of n.destinations || []) add(n.name, d, "destination");
  return edges;
}

/** Mark the edges that close a cycle (to a node still on the depth-first search's stack). */
function markBackEdges(names, edges, entry) {
  const out = new Map(names.map((n) => [n, []]));
  for (const e of edges) out.get(e.source).push(e);
  const state = new Map(); // name -> "open" | "done"
  const visit = (start) => {
    const stack = [[start, 0]];
    state.set(start, "open");
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = out.get(top[0])[top[1]++];
      if (!next) {
        state.set(top[0], "done");
        stack.pop();
      } else if (state.get(next.target) === "open") {
        next.back = true;
      } else if (!state.has(next.target)) {
        state.set(next.target, "open");
        stack.push([next.target, 0]);
      }
    }
  };
  if (names.includes(entry)) visit(entry);
  for (const n of names) if (!state.has(n)) visit(n);
}

/** Longest-path layer of each node over the forward edges (a DAG once back edges are out). */
function assignLayers(names, edges) {
  const forward = edges.filter((e) => !e.back && e.source !== e.target);
  const indegree = new Map(names.map((n) => [n, 0]));
  for (const e of forward) indegree.set(e.target, indegree.get(e.target) + 1);
  const layer = new Map(names.map((n) => [n, 0]));
  const ready = names.filter((n) => indegree.get(n) === 0);
  while (ready.length) {
    const name = ready.shift();
    for (const e of forward.filter((f) => f.source === name)) {
      layer.set(e.target, Math.max(layer.get(e.target), layer.get(name) + 1));
      indegree.set(e.target, indegree.get(e.target) - 1);
      if (indegree.get(e.target) === 0) ready.push(e.target);
    }
  }
  return layer;
}

/** Positions of the nodes: {nodes: Map name -> {x, y}, edges, width, height}. */
export function layoutGraph(detail) {
  const names = detail.nodes.map((n) => n.name);
  const edges = graphEdges(detail);
  markBackEdges(names, edges, detail.entry_point);
  const layerOf = assignLayers(names, edges);
  const layers = [];
  for (const name of names) (layers[layerOf.get(name)] ||= []).push(name);
  const rows = layers.filter(Boolean);
  const column = new Map();
  // Order each layer by the mean column of its parents, so edges cross less.
  rows.forEach((row, index) => {
    if (index > 0) {
      const key = (name) => {
        const cols = edges
          .filter((e) => e.target === name && !e.back && column.has(e.source))
          .map((e) => column.get(e.source));
        return cols.length ? cols.reduce((a, b) => a + b, 0) / cols.length : Infinity;
      };
      const keys = new Map(row.map((n) => [n, key(n)]));
      row.sort((a, b) => keys.get(a) - keys.get(b));
    }
    row.forEach((name, i) => column.set(name, i - (row.length - 1) / 2));
  });
  const widest = Math.max(...rows.map((r) => r.length));
  const innerWidth = widest * NODE_W + (widest - 1) * GAP_X;
  const hasLoops = edges.some((e) => e.back || e.source === e.target);
  const nodes = new Map();
  rows.forEach((row, index) => {
    for (const name of row) {
      const x = MARGIN + innerWidth / 2 + column.get(name) * (NODE_W + GAP_X) - NODE_W / 2;
      nodes.set(name, { x, y: MARGIN + 24 + index * (NODE_H + GAP_Y) });
    }
  });
  return {
    nodes,
    edges,
    width: innerWidth + 2 * MARGIN + (hasLoops ? LOOP_SPACE : 0),
    height: MARGIN * 2 + 24 + rows.length * NODE_H + (rows.length - 1) * GAP_Y,
  };
}

function edgePath(edge, from, to, loopIndex) {
  if (edge.source === edge.target) {
    const x = from.x + NODE_W;
    const y = from.y + NODE_H / 2;
    return `M ${x} ${y - 8} C ${x + 40} ${y - 30}, ${x + 40} ${y + 30}, ${x} ${y + 8}`;
  }
  if (edge.back || to.y <= from.y) {
    // Out of the source's right side, round to the right, into the target's right side.
    const bend = Math.max(from.x, to.x) + NODE_W + 30 + 14 * loopIndex;
    const y1 = from.y + NODE_H / 2;
    const y2 = to.y + NODE_H / 2;
    return `M ${from.x + NODE_W} ${y1} C ${bend} ${y1}, ${bend} ${y2}, ${to.x + NODE_W} ${y2}`;
  }
  const x1 = from.x + NODE_W / 2;
  const y1 = from.y + NODE_H;
  const x2 = to.x + NODE_W / 2;
  const y2 = to.y;
  const mid = (y1 + y2) / 2;
  return `M ${x1} ${y1} C ${x1} ${mid}, ${x2} ${mid}, ${x2} ${y2}`;
}

function label(name) {
  return name.length > MAX_LABEL ? `${name.slice(0, MAX_LABEL - 1)}…` : name;
}

function drawNode(name, pos, isEntry) {
  const badgeText = s("text", { x: pos.x + NODE_W - 2, y: pos.y + 4, class: "count-text" });
  const badge = s(
    "g",
    { class: "count", visibility: "hidden" },
    s("rect", { x: pos.x + NODE_W - 22, y: pos.y - 9, width: 40, height: 18, rx: 9 }),
    badgeText,
  );
  const group = s(
    "g",
    { class: `node${isEntry ? " entry" : ""}`, "data-node": name, "data-status": "idle" },
    s("title", {}, name),
    s("rect", { x: pos.x, y: pos.y, width: NODE_W, height: NODE_H, rx: 8 }),
    s("text", { x: pos.x + NODE_W / 2, y: pos.y + NODE_H / 2 + 5, class: "label" }, label(name)),
    badge,
  );
  return { group, badge, badgeText };
}

/**
 * Draw ``detail`` (GET /graphs/{name}) as an <svg>. Returns {svg, setNode(name, status, count)}
 * to colour nodes by status and show how many times each ran.
 */
export function drawGraph(detail) {
  const layout = layoutGraph(detail);
  const svg = s("svg", {
    class: "graph",
    viewBox: `0 0 ${layout.width} ${layout.height}`,
    width: layout.width,
    height: layout.height,
    role: "img",
    "aria-label": `graph ${detail.name}`,
  });
  svg.append(
    s(
      "defs",
      {},
      s(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }),
      ),
    ),
  );
  let loops = 0;
  for (const edge of layout.edges) {
    const from = layout.nodes.get(edge.source);
    const to = layout.nodes.get(edge.target);
    const curved = edge.back || edge.source === edge.target || to.y <= from.y;
    const classes = ["edge", edge.kind, curved ? "back" : ""].join(" ").trim();
    svg.append(
      s("path", {
        d: edgePath(edge, from, to, curved ? loops++ : 0),
        class: classes,
        "data-source": edge.source,
        "data-target": edge.target,
        "marker-end": "url(#arrow)",
      }),
    );
  }
  const entry = layout.nodes.get(detail.entry_point);
  if (entry) {
    const cx = entry.x + NODE_W / 2;
    svg.append(
      s("circle", { cx, cy: entry.y - 22, r: 6, class: "entry-dot" }, s("title", {}, "entry point")),
      s("path", { d: `M ${cx} ${entry.y - 16} L ${cx} ${entry.y}`, class: "edge", "marker-end": "url(#arrow)" }),
    );
  }
  const drawn = new Map();
  for (const [name, pos] of layout.nodes) {
    const node = drawNode(name, pos, name === detail.entry_point);
    drawn.set(name, node);
    svg.append(node.group);
  }
  const setNode = (name, status, count = 0) => {
    const node = drawn.get(name);
    if (!node) return;
    node.group.setAttribute("data-status", status);
    node.group.setAttribute("data-count", String(count));
    node.badge.setAttribute("visibility", count > 1 ? "visible" : "hidden");
    node.badgeText.textContent = `×${count}`;
  };
  return { svg, setNode };
}
