// A form built from a graph's JSON schema. Simple fields get inputs (string, number, integer,
// boolean, arrays of strings as comma-separated text); anything else a JSON textarea.

import { h } from "./dom.js";

/** The schema of a field without its "or null" alternative (pydantic's Optional[...]). */
function unwrap(schema) {
  const options = (schema.anyOf || []).filter((o) => o.type !== "null");
  return options.length === 1 ? { ...schema, ...options[0], anyOf: undefined } : schema;
}

function kindOf(schema) {
  const s = unwrap(schema);
  if (["string", "number", "integer", "boolean"].includes(s.type) && !s.enum) return s.type;
  if (s.type === "array" && s.items && unwrap(s.items).type === "string") return "strings";
  return "json";
}

function inputFor(name, kind, schema) {
  const id = `field-${name}`;
  const def = schema.default;
  switch (kind) {
    case "boolean":
      return h("input", { id, name, type: "checkbox", checked: def === true });
    case "number":
    case "integer":
      return h("input", {
        id, name, type: "number", step: kind === "integer" ? "1" : "any",
        min: schema.minimum, max: schema.maximum, value: def ?? "",
      });
    case "strings":
      return h("input", {
        id, name, type: "text", placeholder: "comma-separated", value: (def || []).join(", "),
      });
    case "string":
      return h("input", { id, name, type: "text", value: def ?? "" });
    default:
      return h("textarea", { id, name, rows: 3, placeholder: "JSON" }, def === undefined ? "" : JSON.stringify(def));
  }
}

function readField(field) {
  const { input, kind, name } = field;
  if (kind === "boolean") return input.checked;
  const raw = input.value.trim();
  if (raw === "") return undefined;
  switch (kind) {
    case "number":
    case "integer": {
      const value = Number(raw);
      if (!Number.isFinite(value) || (kind === "integer" && !Number.isInteger(value))) {
        throw new Error(`${name}: expected ${kind === "integer" ? "an integer" : "a number"}`);
      }
      return value;
    }
    case "strings":
      return raw.split(",").map((item) => item.trim()).filter((item) => item !== "");
    case "string":
      return input.value;
    default:
      try {
        return JSON.parse(raw);
      } catch {
        throw new Error(`${name}: not valid JSON`);
      }
  }
}

/**
 * Build the input form of ``schema`` (may be null: then one JSON textarea for the whole input).
 * Returns {element, read()}; read() gives the input object or throws an Error to show.
 */
export function buildInputForm(schema) {
  const properties = schema && schema.type === "object" ? schema.properties || {} : null;
  if (!properties || schema.$defs) {
    const area = h("textarea", { name: "input", rows: 6, class: "whole-input" }, "{}");
    const element = h("div", { class: "field" }, h("label", {}, "Input (JSON object)"), area);
    const read = () => {
      let value;
      try {
        value = JSON.parse(area.value || "{}");
      } catch {
        throw new Error("input: not valid JSON");
      }
      if (!value || typeof value !== "object" || Array.isArray(value)) {
        throw new Error("input: must be a JSON object");
      }
      return value;
    };
    return { element, read };
  }
  const required = new Set(schema.required || []);
  const fields = Object.entries(properties).map(([name, prop]) => {
    const kind = kindOf(prop);
    const input = inputFor(name, kind, unwrap(prop));
    const title = `${prop.title || name}${required.has(name) ? " *" : ""}`;
    const element = h(
      "div",
      { class: `field kind-${kind}` },
      h("label", { for: input.id }, title),
      input,
      prop.description ? h("small", { class: "muted" }, prop.description) : null,
    );
    return { name, kind, input, element };
  });
  const read = () => {
    const value = {};
    for (const field of fields) {
      const fieldValue = readField(field);
      if (fieldValue !== undefined) value[field.name] = fieldValue;
      else if (required.has(field.name)) throw new Error(`${field.name} is required`);
    }
    return value;
  };
  return { element: h("div", { class: "fields" }, fields.map((f) => f.element)), read };
}
