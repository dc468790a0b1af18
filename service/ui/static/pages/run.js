// One run: its graph with nodes coloured by live status, a timeline of its node runs, input,
// output, error, per-node details and a cancel button; for an interrupted run, what it waits
// for and a form to resume it; for a failed, cancelled or timed-out one, a retry button. It
// follows the run's event stream, which replays stored events first, so finished runs render
// the same way.

import { ApiError, api, followRun } from "../api.js";
import { drawGraph } from "../graph.js";
import { drawTimeline } from "../timeline.js";
import { formatMs, formatTime, h, jsonBlock, statusBadge } from "../dom.js";

const ACTIVE = new Set(["queued", "running"]);
// The status a node shows when it ran several times: the most telling of its node runs.
const PRECEDENCE = ["running", "interrupted", "retrying", "failed", "cancelled", "succeeded"];
const RETRYABLE = new Set(["failed", "cancelled", "timed_out"]);
const TICK_MS = 250;

/** Node runs by id, seeded from GET /runs/{id} and kept current by the events. */
function seedNodeRuns(run) {
  const byId = new Map();
  for (const n of run.nodes) {
    byId.set(n.id, { ...n, update: undefined, attempts: n.error ? [{ attempt: n.attempt, error: n.error }] : [] });
  }
  return byId;
}

function applyEvent(state, { event, data }) {
  const run = state.run;
  const nodeRun = () => {
    let nr = state.nodeRuns.get(data.node_run_id);
    if (!nr) {
      nr = { id: data.node_run_id, node: data.node, attempts: [] };
      state.nodeRuns.set(nr.id, nr);
    }
    Object.assign(nr, { attempt: data.attempt, started_at: data.started_at });
    return nr;
  };
  switch (event) {
    case "run_started":
      run.status = "running";
      run.started_at = data.started_at;
      break;
    case "node_started":
      Object.assign(nodeRun(), { status: "running", finished_at: null, duration_ms: null });
      break;
    case "node_completed":
      Object.assign(nodeRun(), {
        status: "succeeded",
        finished_at: data.finished_at,
        duration_ms: data.duration_ms,
        update: data.update,
        goto: data.goto,
        error: null,
      });
      break;
    case "node_failed": {
      const nr = nodeRun();
      Object.assign(nr, {
        status: data.retrying ? "retrying" : "failed",
        finished_at: data.finished_at,
        duration_ms: data.duration_ms,
        error: data.error,
      });
      if (!nr.attempts.some((a) => a.attempt === data.attempt)) {
        nr.attempts.push({ attempt: data.attempt, error: data.error, retrying: data.retrying });
      }
      break;
    }
    case "node_interrupted":
      Object.assign(nodeRun(), { status: "interrupted", finished_at: data.finished_at, duration_ms: data.duration_ms });
      break;
    case "run_interrupted":
      run.status = "interrupted";
      run.interrupts = data.interrupts;
      break;
    case "run_continued":
    case "run_retried":
      Object.assign(run, { status: "queued", interrupts: null, error: null });
      break;
    case "run_succeeded":
    case "run_failed":
    case "run_cancelled":
    case "run_timed_out":
      run.status = event.slice("run_".length);
      if (data.output !== undefined) run.output = data.output;
      if (data.error !== undefined) run.error = data.error;
      // Past a deadline, nodes in flight are treated as on cancel.
      if (run.status === "cancelled" || run.status === "timed_out") {
        for (const nr of state.nodeRuns.values()) if (nr.status === "running") nr.status = "cancelled";
      }
      break;
    default:
      break;
  }
}

function nodeStatus(runs, runStatus) {
  if (!runs.length) return ACTIVE.has(runStatus) ? "queued" : "idle";
  return PRECEDENCE.find((s) => runs.some((r) => r.status === s)) || runs[runs.length - 1].status;
}

function colourGraph(state) {
  if (!state.graph) return;
  const byNode = new Map(state.detail.nodes.map((n) => [n.name, []]));
  for (const nr of state.nodeRuns.values()) byNode.get(nr.node)?.push(nr);
  for (const [name, runs] of byNode) state.graph.setNode(name, nodeStatus(runs, state.run.status), runs.length);
}

function summary(state, { onCancel, onRetry }) {
  const run = state.run;
  const cancellable = ACTIVE.has(run.status) || run.status === "interrupted";
  const cancel = h("button", { type: "button", class: "danger", onclick: onCancel, disabled: !cancellable }, "Cancel run");
  const retry = RETRYABLE.has(run.status) ? h("button", { type: "button", class: "retry", onclick: onRetry }, "Retry run") : null;
  return h(
    "div",
    { class: "run-summary" },
    h("h2", {}, h("a", { href: `#/graphs/${encodeURIComponent(run.graph)}` }, run.graph), " ", statusBadge(run.status)),
    h(
      "dl",
      {},
      h("dt", {}, "Run"), h("dd", { class: "mono" }, run.id),
      h("dt", {}, "Created"), h("dd", {}, formatTime(run.created_at)),
      h("dt", {}, "Duration"), h("dd", {}, formatMs(run.duration_ms)),
      h("dt", {}, "Stream"), h("dd", { class: "stream-state" }, state.connection),
    ),
    cancel,
    retry,
  );
}

/** What an interrupted run waits for: each payload, and a JSON value to resume it with. */
function waitingBlock(state, onResume) {
  const interrupts = state.run.status === "interrupted" ? state.run.interrupts || [] : [];
  if (!interrupts.length) return null;
  const fields = interrupts.map((i) => ({ interrupt: i, input: h("textarea", { class: "resume-value", rows: 3, "data-interrupt": i.id }, "true") }));
  const problem = h("div", { class: "form-error resume-error" });
  const submit = () => {
    const values = {};
    for (const { interrupt, input } of fields) {
      try {
        values[interrupt.id] = JSON.parse(input.value);
      } catch (err) {
        problem.textContent = `the value for ${interrupt.node} (${interrupt.id}) is not JSON: ${err.message}`;
        return;
      }
    }
    onResume(values, problem);
  };
  return h(
    "section",
    { class: "panel waiting" },
    h("h3", {}, "Waiting for a person"),
    fields.map(({ interrupt, input }) =>
      h(
        "div",
        { class: "interrupt", "data-interrupt": interrupt.id },
        h("div", {}, h("strong", { class: "node-name" }, interrupt.node), " ", h("span", { class: "mono muted" }, interrupt.id), " asks:"),
        jsonBlock(interrupt.payload, "json small"),
        h("label", {}, "Value (JSON) ", input),
      ),
    ),
    problem,
    h("button", { type: "button", class: "resume", onclick: submit }, "Resume run"),
  );
}

function errorBlock(error) {
  if (!error) return h("p", { class: "muted" }, "None.");
  return h(
    "div",
    { class: "error-box" },
    h("strong", {}, error.type), ": ", h("span", { class: "error-message" }, error.message),
    error.node ? h("div", { class: "muted" }, "in node ", h("code", {}, error.node)) : null,
  );
}

function nodeTable(state) {
  const runs = [...state.nodeRuns.values()].sort(
    (a, b) => (a.started_at || "").localeCompare(b.started_at || "") || a.id.localeCompare(b.id),
  );
  if (!runs.length) return h("p", { class: "muted" }, "No node has run yet.");
  return h(
    "table",
    { class: "node-runs" },
    h("thead", {}, h("tr", {}, ["Node", "Node run", "Status", "Attempts", "Duration", "Update", "Error"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      runs.map((nr) =>
        h(
          "tr",
          { "data-node-run": nr.id },
          h("td", { class: "node-name" }, nr.node),
          h("td", { class: "mono" }, nr.id),
          h("td", {}, statusBadge(nr.status)),
          h("td", {}, String(nr.attempt ?? 1), nr.attempts.map((a) => h("div", { class: "attempt muted" }, `#${a.attempt}: ${a.error.type}: ${a.error.message}`))),
          h("td", {}, formatMs(nr.duration_ms)),
          h("td", {}, nr.update === undefined ? "—" : jsonBlock(nr.update, "json small")),
          h("td", { class: "node-error" }, nr.error ? `${nr.error.type}: ${nr.error.message}` : ""),
        ),
      ),
    ),
  );
}

/** The page's sections; fill(state) updates them in place (the graph's <svg> is kept). */
function layout(state, actions) {
  const slot = (cls) => h("div", { class: cls });
  const slots = {
    summary: slot("summary-slot"),
    waiting: slot("waiting-slot"),
    timeline: slot("timeline-slot"),
    input: slot("input-slot"),
    output: slot("output-slot"),
    error: slot("error-slot"),
    nodes: slot("nodes-slot"),
  };
  const element = h(
    "div",
    { class: "run-page" },
    slots.summary,
    slots.waiting,
    state.graph ? h("div", { class: "graph-box" }, state.graph.svg) : h("p", { class: "muted" }, "The graph is not registered here."),
    h("section", { class: "panel" }, h("h3", {}, "Timeline"), slots.timeline),
    h(
      "div",
      { class: "columns" },
      h("section", { class: "panel" }, h("h3", {}, "Input"), slots.input),
      h("section", { class: "panel" }, h("h3", {}, "Output"), slots.output),
    ),
    h("section", { class: "panel run-error" }, h("h3", {}, "Error"), slots.error),
    h("section", { class: "panel" }, h("h3", {}, "Node runs"), slots.nodes),
  );
  const timeline = () => slots.timeline.replaceChildren(drawTimeline([...state.nodeRuns.values()]));
  const fill = () => {
    colourGraph(state);
    slots.summary.replaceChildren(summary(state, actions));
    slots.waiting.replaceChildren(waitingBlock(state, actions.onResume) || "");
    timeline();
    slots.input.replaceChildren(jsonBlock(state.run.input));
    slots.output.replaceChildren(jsonBlock(state.run.output));
    slots.error.replaceChildren(errorBlock(state.run.error));
    slots.nodes.replaceChildren(nodeTable(state));
  };
  return { element, fill, timeline };
}

/** Render run ``id`` into ``main`` and follow its events until ``signal`` aborts. */
export async function render(main, { id }, signal) {
  const run = await api(`runs/${encodeURIComponent(id)}`, { signal });
  const detail = await api(`graphs/${encodeURIComponent(run.graph)}`, { signal }).catch((err) => {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  });
  const state = { run, detail, graph: detail ? drawGraph(detail) : null, nodeRuns: seedNodeRuns(run), connection: "connecting" };
  let frame = 0;
  const onCancel = async () => {
    try {
      Object.assign(state.run, await api(`runs/${encodeURIComponent(id)}/cancel`, { method: "POST" }));
    } catch (err) {
      state.connection = `cancel failed: ${err.message}`;
    }
    schedule();
  };
  // Resume and retry queue the run again: follow it afresh, as a new visit would.
  const goOn = async (path, body, problem) => {
    try {
      await api(`runs/${encodeURIComponent(id)}/${path}`, { method: "POST", body });
    } catch (err) {
      if (problem) problem.textContent = err.message;
      else state.connection = `${path} failed: ${err.message}`;
      schedule();
      return;
    }
    await render(main, { id }, signal);
  };
  const actions = {
    onCancel,
    onRetry: () => goOn("retry"),
    onResume: (values, problem) => goOn("resume", { values }, problem),
  };
  const page = layout(state, actions);
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; page.fill(); });
  };
  page.fill();
  main.replaceChildren(page.element);
  // Running bars grow with the clock between events.
  const ticker = setInterval(() => ACTIVE.has(state.run.status) && page.timeline(), TICK_MS);
  signal.addEventListener("abort", () => clearInterval(ticker));
  const onEvent = (event) => {
    applyEvent(state, event);
    schedule();
  };
  const onConnection = (status) => {
    state.connection = status;
    schedule();
  };
  await followRun(id, onEvent, { signal, onConnection });
  if (signal.aborted) return;
  // The terminal event carries the outcome; the stored run adds its final timings.
  const final = await api(`runs/${encodeURIComponent(id)}`, { signal });
  Object.assign(state.run, { ...final, nodes: undefined });
  state.connection = "finished";
  clearInterval(ticker);
  schedule();
}
