// Formatting of times, durations, statuses and JSON values for display (always as text).

import { h } from "./dom.js";
import { language, statusWord, t } from "./i18n.js";

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
    return t("duration.ms", { n: Math.round(s * 1000) });
  }
  if (s < 60) {
    return t("duration.s", { n: s < 10 && !Number.isInteger(s) ? s.toFixed(1) : Math.round(s) });
  }
  if (s < 3600) {
    return t("duration.min", { min: Math.floor(s / 60), s: Math.floor(s % 60) });
  }
  if (s < 86400) {
    return t("duration.h", { h: Math.floor(s / 3600), min: Math.floor((s % 3600) / 60) });
  }
  return t("duration.d", { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
}

/** "5 s ago" for an epoch time; "—" when unknown. */
export function ago(value) {
  const at = epoch(value);
  if (at === null) {
    return "—";
  }
  const seconds = Math.max(0, now() - at);
  if (seconds < 1) {
    return t("time.justNow");
  }
  return t("time.ago", { time: duration(Math.floor(seconds)) });
}

/** A <time> element: relative text, absolute local time as tooltip. */
export function timeElement(value, relative = true) {
  const at = epoch(value);
  if (at === null) {
    return "—";
  }
  const date = new Date(at * 1000);
  const local = date.toLocaleString(language());
  return h("time", { datetime: date.toISOString(), title: local }, relative ? ago(at) : local);
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

/**
 * A status badge: the status as a word of the page's language, coloured by class (never by
 * colour alone); data-value keeps the status itself.
 */
export function badge(status, kind = "status") {
  const value = status ? String(status) : "UNKNOWN";
  const known = /^[A-Z_]+$/.test(value) ? value.toLowerCase() : "unknown";
  return h("span", { class: `badge ${kind}-${known}`, "data-value": value }, statusWord(value));
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
