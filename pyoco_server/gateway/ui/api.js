// The HTTP API as the dashboard uses it: JSON requests carrying the API key, the auth prompt
// on 401/403, and errors that tell a missing endpoint from a failing one.

import { askForKey, currentKey } from "./auth.js";

// Error IDs of the contract the page reacts to.
const NO_SUCH_ENDPOINT = "ERR-PYOCO-0020";

let config = { auth_mode: "none", api_key_header: "X-API-Key", version: "" };

/** An error answer of the API ({detail, err_id, msg_id}), or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body.detail === "string" ? body.detail : "";
    super(detail || (status ? `HTTP ${status}` : "the gateway did not answer"));
    this.status = status;
    this.errId = body && typeof body.err_id === "string" ? body.err_id : null;
    this.body = body;
  }
}

/** The gateway has no such endpoint (yet): the view shows "not available" instead. */
export class EndpointMissing extends ApiError {}

/** The operator closed the API key prompt. */
export class SignInCancelled extends Error {}

/** Read /ui/config.json once: auth mode and the API key header name. */
export async function loadConfig() {
  const response = await fetch("/ui/config.json", { headers: { Accept: "application/json" } });
  if (response.ok) {
    config = { ...config, ...(await response.json()) };
  }
  return config;
}

export function apiConfig() {
  return config;
}

function buildUrl(path, query) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") {
      url.searchParams.set(name, String(value));
    }
  }
  return url;
}

async function readBody(response) {
  const text = await response.text();
  if (!text) {
    return null;
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function headersWithKey(extra) {
  const headers = { Accept: "application/json", ...(extra || {}) };
  const key = currentKey();
  if (key) {
    headers[config.api_key_header] = key;
  }
  return headers;
}

/**
 * Send a request; answers the raw Response once it is not a 401/403 (asking the operator for
 * a key and retrying meanwhile). Network failures become ApiError with status 0.
 */
async function send(method, path, { query, body, headers, signal } = {}) {
  for (;;) {
    const init = { method, headers: headersWithKey(headers), signal, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(buildUrl(path, query), init);
    } catch (error) {
      if (error.name === "AbortError") {
        throw error;
      }
      throw new ApiError(0, null);
    }
    if (response.status !== 401 && response.status !== 403) {
      return response;
    }
    const answer = await readBody(response);
    if (!(await askForKey(response.status, answer && answer.detail))) {
      throw new SignInCancelled("sign-in cancelled");
    }
  }
}

async function failure(response) {
  const body = await readBody(response);
  const missing =
    (response.status === 404 && body && body.err_id === NO_SUCH_ENDPOINT) ||
    response.status === 405;
  return missing ? new EndpointMissing(response.status, body) : new ApiError(response.status, body);
}

/** A JSON request; resolves to {data, headers}, throws ApiError / EndpointMissing. */
export async function request(method, path, options = {}) {
  const response = await send(method, path, options);
  if (!response.ok) {
    throw await failure(response);
  }
  return { data: await readBody(response), headers: response.headers };
}

export async function getJson(path, query, signal) {
  return (await request("GET", path, { query, signal })).data;
}

export async function getText(path, signal) {
  const response = await send("GET", path, { signal, headers: { Accept: "text/plain" } });
  if (!response.ok) {
    throw await failure(response);
  }
  return response.text();
}

/**
 * Open a text/event-stream and call onEvent({event, data, id}) per event until the stream
 * ends. Throws EndpointMissing when the gateway has no such stream.
 */
export async function streamEvents(path, { query, lastEventId, signal, onEvent }) {
  const headers = { Accept: "text/event-stream" };
  if (lastEventId) {
    headers["Last-Event-ID"] = lastEventId;
  }
  const response = await send("GET", path, { query, headers, signal });
  if (!response.ok) {
    throw await failure(response);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = { event: "message", data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.search(/\r\n|\n|\r/)) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (event.data.length) {
          onEvent({ event: event.event, data: event.data.join("\n"), id: event.id });
        }
        event = { event: "message", data: [], id: event.id };
        continue;
      }
      if (line.startsWith(":")) {
        continue;
      }
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") {
        event.event = text;
      } else if (field === "data") {
        event.data.push(text);
      } else if (field === "id") {
        event.id = text;
      }
    }
  }
}

/** Parse Prometheus text exposition into [{name, labels, value}]. */
export function parseMetrics(text) {
  const samples = [];
  const line = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const raw of text.split("\n")) {
    if (!raw || raw.startsWith("#")) {
      continue;
    }
    const match = line.exec(raw);
    if (!match) {
      continue;
    }
    const labels = {};
    for (const pair of (match[2] || "").matchAll(label)) {
      labels[pair[1]] = pair[2].replace(/\\(["\\n])/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}
