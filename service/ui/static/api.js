// The JSON API and the run event stream. The API key (when the server asks for one) lives in
// sessionStorage and travels only in the Authorization header, never in a URL.

const KEY_STORAGE = "graphflow.apiKey";
// The events after which a run rests (it ended, or waits for a person). The server ends the
// stream after one unless the run went on past it (a retry, a resume): so the stream's end,
// not the event alone, says the run settled.
const SETTLING_EVENTS = new Set(["run_succeeded", "run_failed", "run_cancelled", "run_timed_out", "run_interrupted"]);
const RECONNECT_MS = 1000;

// The page is served at <root>/ui/, the API at <root>/ (works behind a path prefix too).
export const apiBase = new URL("../", document.baseURI);

/** The server wants a (valid) API key. */
export class AuthRequired extends Error {}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const result = { ...extra };
  const key = getKey();
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

function detailText(body, fallback) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return fallback;
}

/** Call the API; resolves to the decoded JSON body. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(new URL(path, apiBase), init);
  if (resp.status === 401) throw new AuthRequired("an API key is required");
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, detailText(data, `HTTP ${resp.status}`));
  return data;
}

/** Parse one server-sent event block ("id: 3\nevent: x\ndata: {...}"); null for comments. */
function parseBlock(block) {
  const event = { id: null, event: "message", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") event.id = value;
    else if (field === "event") event.event = value;
    else if (field === "data") event.data.push(value);
  }
  if (!event.data.length) return null;
  return { id: event.id, event: event.event, data: JSON.parse(event.data.join("\n")) };
}

/** Read one response body of events; returns true when it ended after a settling event. */
async function readEvents(resp, onEvent, progress) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return SETTLING_EVENTS.has(last);
    // sse-starlette ends lines with \r\n: hold a trailing \r back until its \n arrives.
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseBlock(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (!event) continue;
      if (event.id !== null) progress.lastId = event.id;
      onEvent(event);
      last = event.event;
    }
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Follow a run's events: past ones first (the stream replays them), then live ones, until the
 * run settles: it ends, or is interrupted. Uses fetch rather than EventSource, which cannot send Authorization; on a
 * dropped connection it reconnects with Last-Event-ID so no event is seen twice.
 */
export async function followRun(runId, onEvent, { signal, onConnection } = {}) {
  const url = new URL(`runs/${encodeURIComponent(runId)}/events`, apiBase);
  const progress = { lastId: null };
  while (!signal?.aborted) {
    const extra = { Accept: "text/event-stream" };
    if (progress.lastId !== null) extra["Last-Event-ID"] = progress.lastId;
    try {
      const resp = await fetch(url, { headers: headers(extra), signal });
      if (resp.status === 401) throw new AuthRequired("an API key is required");
      if (resp.status === 404) throw new ApiError(404, "run not found");
      if (resp.ok) {
        onConnection?.("live");
        if (await readEvents(resp, onEvent, progress)) return;
      }
    } catch (err) {
      if (signal?.aborted) return;
      if (err instanceof AuthRequired || err instanceof ApiError) throw err;
    }
    onConnection?.("reconnecting");
    await sleep(RECONNECT_MS, signal);
  }
}
