// A Gantt chart of node runs from their recorded start and finish times: one bar per node run,
// so what ran in parallel shows as overlapping bars.

import { h, formatMs } from "./dom.js";

const time = (iso) => (iso ? Date.parse(iso) : null);

/** Render ``nodeRuns`` (objects with id, node, status, started_at, finished_at) into a div. */
export function drawTimeline(nodeRuns, now = Date.now()) {
  const runs = nodeRuns
    .filter((r) => r.started_at)
    .sort((a, b) => time(a.started_at) - time(b.started_at) || a.id.localeCompare(b.id));
  if (!runs.length) return h("p", { class: "muted timeline-empty" }, "No node has started yet.");
  const start = Math.min(...runs.map((r) => time(r.started_at)));
  const end = Math.max(...runs.map((r) => time(r.finished_at) ?? now), start + 1);
  const span = end - start;
  const rows = runs.map((r) => {
    const left = ((time(r.started_at) - start) / span) * 100;
    const finish = time(r.finished_at) ?? now;
    const width = Math.max(((finish - time(r.started_at)) / span) * 100, 0.4);
    const duration = formatMs(finish - time(r.started_at));
    return h(
      "div",
      { class: "timeline-row" },
      h("span", { class: "timeline-label", title: `${r.node} (${r.id})` }, r.node),
      h(
        "div",
        { class: "timeline-track" },
        h("div", {
          class: `timeline-bar status-${r.status}`,
          "data-node-run": r.id,
          "data-node": r.node,
          style: `left:${left}%;width:${width}%`,
          title: `${r.node} · ${r.id} · ${r.status} · ${duration}`,
        }),
      ),
    );
  });
  const axis = h(
    "div",
    { class: "timeline-axis" },
    h("span", {}, "0"),
    h("span", {}, formatMs(span)),
  );
  return h("div", { class: "timeline" }, rows, axis);
}
