// Graphs: the registered graphs, each drawn with its description, input schema and a form
// that starts a run (then opens the run's page).

import { api } from "../api.js";
import { buildInputForm } from "../form.js";
import { drawGraph } from "../graph.js";
import { h, jsonBlock } from "../dom.js";

function graphList(graphs, selected) {
  return h(
    "ul",
    { class: "graph-list" },
    graphs.map((g) =>
      h(
        "li",
        { class: g.name === selected ? "selected" : null },
        h("a", { href: `#/graphs/${encodeURIComponent(g.name)}` }, g.name),
        h("small", { class: "muted" }, ` ${g.node_count} nodes`),
      ),
    ),
  );
}

function legend() {
  return h(
    "p",
    { class: "legend muted" },
    "Solid arrows: edges. Dashed: declared destinations (Command goto / Send). ",
    "The dot marks the entry point; curves on the right close loops.",
  );
}

function runForm(detail) {
  const form = buildInputForm(detail.input_schema);
  const message = h("p", { class: "form-error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary" }, "Start run");
  const submit = async (event) => {
    event.preventDefault();
    message.textContent = "";
    let input;
    try {
      input = form.read();
    } catch (err) {
      message.textContent = err.message;
      return;
    }
    button.disabled = true;
    try {
      const run = await api(`graphs/${encodeURIComponent(detail.name)}/runs`, {
        method: "POST",
        body: { input },
      });
      location.hash = `#/runs/${encodeURIComponent(run.id)}`;
    } catch (err) {
      message.textContent = err.message;
      button.disabled = false;
    }
  };
  return h("form", { class: "run-form", onsubmit: submit }, form.element, button, message);
}

function graphDetail(detail) {
  return h(
    "section",
    { class: "graph-detail" },
    h("h2", {}, detail.name),
    h("p", { class: "description" }, detail.description || "No description."),
    h("div", { class: "graph-box" }, drawGraph(detail).svg),
    legend(),
    h(
      "div",
      { class: "columns" },
      h("div", {}, h("h3", {}, "Start a run"), runForm(detail)),
      h("div", {}, h("h3", {}, "Input schema"), jsonBlock(detail.input_schema)),
    ),
  );
}

/** Render the graphs page into ``main``; ``name`` selects a graph (default: the first). */
export async function render(main, { name }, signal) {
  const graphs = await api("graphs", { signal });
  const selected = name ?? graphs[0]?.name;
  const detail = selected ? await api(`graphs/${encodeURIComponent(selected)}`, { signal }) : null;
  main.replaceChildren(
    h(
      "div",
      { class: "layout" },
      h("aside", {}, h("h2", {}, "Graphs"), graphList(graphs, selected)),
      detail ? graphDetail(detail) : h("p", { class: "muted" }, "No graph is registered."),
    ),
  );
}
