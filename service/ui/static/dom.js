// Small DOM builders. Everything the dashboard shows is set with textContent or attributes,
// never innerHTML: graph names, node names, errors and outputs are user data.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

function applyProps(node, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  return node;
}

/** An HTML element: h("a", {href: "#", class: "x"}, "text", child). */
export function h(tag, props, ...children) {
  return append(applyProps(document.createElement(tag), props), children);
}

/** An SVG element, as h(). */
export function s(tag, props, ...children) {
  return append(applyProps(document.createElementNS(SVG_NS, tag), props), children);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** A <pre> with value as indented JSON (or a dash when there is none). */
export function jsonBlock(value, className = "json") {
  const text = value === null || value === undefined ? "—" : JSON.stringify(value, null, 2);
  return h("pre", { class: className }, text);
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status);
}

export function formatTime(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

export function formatMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
