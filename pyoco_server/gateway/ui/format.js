// Formatting of times, durations, statuses and JSON values for display (always as text).

import { h } from "./dom.js";

export const RUN_STATUSES = ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLING", "CANCELLED", "WAITING", "PENDING_APPROVAL"];
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

/** Epoch seconds from a number or an ISO-8601 text; null when unknown. */
export function epoch(value) {
  if (typeof value === "number" && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === "string" && value) {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : parsed / 1000;
  }
  return null;
}

export function now() {
  return Date.now() / 1000;
}

/** "850 ms", "12.3 s", "4 min 5 s", "2 h 10 min", "3 d 4 h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return "—";
  }
  const s = Math.max(0, seconds);
  if (s < 1) {
    return `${Math.round(s * 1000)} ms`;
  }
  if (s < 60) {
    return `${s < 10 && !Number.isInteger(s) ? s.toFixed(1) : Math.round(s)} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  }
  if (s < 86400) {
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** "5 s ago" for an epoch time; "—" when unknown. */
export function ago(value) {
  const at = epoch(value);
  if (at === null) {
    return "—";
  }
  const seconds = Math.max(0, now() - at);
  if (seconds < 1) {
    return "just now";
  }
  return `${duration(Math.floor(seconds))} ago`;
}

/** A <time> element: relative text, absolute local time as tooltip. */
export function timeElement(value, relative = true) {
  const at = epoch(value);
  if (at === null) {
    return "—";
  }
  const date = new Date(at * 1000);
  const text = relative ? ago(at) : date.toLocaleString();
  return h("time", { datetime: date.toISOString(), title: date.toLocaleString() }, text);
}

/** Seconds between two epoch values; running ones are measured up to now. */
export function elapsed(start, end) {
  const from = epoch(start);
  if (from === null) {
    return null;
  }
  const to = epoch(end);
  return (to === null ? now() : to) - from;
}

/** A status badge: the status as text, coloured by class (never by colour alone). */
export function badge(status, kind = "status") {
  const text = status ? String(status) : "UNKNOWN";
  const known = /^[A-Z]+$/.test(text) ? text.toLowerCase() : "unknown";
  return h("span", { class: `badge ${kind}-${known}` }, text);
}

/** Any JSON value as readable text (strings as they are). */
export function asText(value) {
  if (value === undefined || value === null) {
    return "";
  }
  if (typeof value === "string") {
    return value;
  }
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** Text cut to at most limit characters (with an ellipsis). */
export function clip(text, limit) {
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

/** A run id as a link to its detail view. */
export function runLink(runId, label) {
  if (!runId) {
    return "—";
  }
  return h("a", { href: `#/runs/${encodeURIComponent(runId)}`, class: "mono" }, label || runId);
}
