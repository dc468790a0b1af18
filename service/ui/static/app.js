// The dashboard's entry: a hash router (#/graphs, #/graphs/<name>, #/runs, #/runs/<id>) and
// the API-key prompt shown when the server answers 401.

import { AuthRequired, forgetKey, getKey, setKey } from "./api.js";
import { h } from "./dom.js";
import * as graphsPage from "./pages/graphs.js";
import * as runPage from "./pages/run.js";
import * as runsPage from "./pages/runs.js";

const ROUTES = [
  { pattern: /^#\/runs\/([^/]+)$/, page: runPage, nav: "runs", params: (m) => ({ id: decodeURIComponent(m[1]) }) },
  { pattern: /^#\/runs\/?$/, page: runsPage, nav: "runs", params: () => ({}) },
  { pattern: /^#\/graphs\/([^/]+)$/, page: graphsPage, nav: "graphs", params: (m) => ({ name: decodeURIComponent(m[1]) }) },
  { pattern: /^(#\/graphs\/?)?$/, page: graphsPage, nav: "graphs", params: () => ({}) },
];

let current = null; // AbortController of the page on screen

function match(hash) {
  for (const route of ROUTES) {
    const m = hash.match(route.pattern);
    if (m) return { route, params: route.params(m) };
  }
  return null;
}

function keyPrompt(main, hadKey) {
  const input = h("input", { type: "password", name: "api-key", autocomplete: "off", required: true });
  const submit = (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    show();
  };
  main.replaceChildren(
    h(
      "form",
      { class: "key-form", onsubmit: submit },
      h("h2", {}, "API key"),
      h("p", {}, hadKey ? "The server refused that key. Enter another one." : "This server needs an API key."),
      h("label", {}, "Key ", input),
      h("button", { type: "submit", class: "primary" }, "Continue"),
      h("p", { class: "muted" }, "Kept in this tab only (sessionStorage) and sent as Authorization: Bearer."),
    ),
  );
  input.focus();
}

function updateChrome(nav) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === nav);
  }
  document.getElementById("forget-key").hidden = !getKey();
}

/** Render the page the location's hash names. */
async function show() {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const main = document.getElementById("main");
  const found = match(location.hash);
  updateChrome(found?.route.nav);
  if (!found) {
    main.replaceChildren(h("p", {}, "No such page. ", h("a", { href: "#/graphs" }, "Graphs")));
    return;
  }
  try {
    await found.route.page.render(main, found.params, controller.signal);
  } catch (err) {
    if (controller.signal.aborted) return;
    if (err instanceof AuthRequired) {
      const hadKey = Boolean(getKey());
      forgetKey();
      updateChrome(found.route.nav);
      keyPrompt(main, hadKey);
      return;
    }
    main.replaceChildren(h("p", { class: "form-error", role: "alert" }, `Error: ${err.message}`));
  }
}

document.getElementById("forget-key").addEventListener("click", () => {
  forgetKey();
  show();
});
window.addEventListener("hashchange", show);
show();
