// Runs: newest first, filtered by graph and status, paged with the API's cursor, refreshed
// every two seconds.

import { api } from "../api.js";
import { formatMs, formatTime, h, statusBadge } from "../dom.js";

const POLL_MS = 2000;
const PAGE_SIZE = 20;
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "timed_out"];

function select(name, label, options, value, onChange) {
  return h(
    "label",
    { class: "filter" },
    `${label} `,
    h(
      "select",
      { name, onchange: (e) => onChange(e.target.value) },
      h("option", { value: "" }, "any"),
      options.map((o) => h("option", { value: o, selected: o === value }, o)),
    ),
  );
}

function runRow(run) {
  return h(
    "tr",
    { "data-run": run.id },
    h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(run.id)}` }, run.id.slice(0, 8))),
    h("td", {}, run.graph),
    h("td", {}, statusBadge(run.status)),
    h("td", {}, formatTime(run.created_at)),
    h("td", {}, formatMs(run.duration_ms)),
    h("td", { class: "error-cell" }, run.error ? `${run.error.type}: ${run.error.message}` : ""),
  );
}

/** Render the runs list into ``main`` and keep it fresh until ``signal`` aborts. */
export async function render(main, _params, signal) {
  const graphs = await api("graphs", { signal });
  const state = { graph: "", status: "", cursors: [null] }; // cursors[i]: start of page i
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const filters = h("div", { class: "filters" });

  const load = async () => {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state.graph) query.set("graph", state.graph);
    if (state.status) query.set("status", state.status);
    const cursor = state.cursors[state.cursors.length - 1];
    if (cursor) query.set("cursor", cursor);
    const page = await api(`runs?${query}`, { signal });
    body.replaceChildren(...page.items.map(runRow));
    if (!page.items.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs.")));
    drawPager(page.next_cursor);
  };
  const go = (cursors) => {
    state.cursors = cursors;
    load().catch(() => {});
  };
  const drawPager = (next) => {
    pager.replaceChildren(
      h("button", { type: "button", disabled: state.cursors.length === 1, onclick: () => go([null]) }, "Newest"),
      h("button", { type: "button", disabled: state.cursors.length === 1, onclick: () => go(state.cursors.slice(0, -1)) }, "‹ Newer"),
      h("span", { class: "muted" }, ` page ${state.cursors.length} `),
      h("button", { type: "button", disabled: !next, onclick: () => go([...state.cursors, next]) }, "Older ›"),
    );
  };
  const setFilter = (key) => (value) => {
    state[key] = value;
    go([null]);
  };
  filters.append(
    select("graph", "Graph", graphs.map((g) => g.name), state.graph, setFilter("graph")),
    select("status", "Status", STATUSES, state.status, setFilter("status")),
  );
  main.replaceChildren(
    h(
      "section",
      { class: "runs" },
      h("h2", {}, "Runs"),
      filters,
      h(
        "table",
        { class: "runs-table" },
        h("thead", {}, h("tr", {}, ["Run", "Graph", "Status", "Created", "Duration", "Error"].map((t) => h("th", {}, t)))),
        body,
      ),
      pager,
    ),
  );
  await load();
  const timer = setInterval(() => load().catch(() => {}), POLL_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
