// Schedules: every schedule with its trigger, next fire, last run and counters, refreshed
// live, with pause/resume; and the "Schedule" fact of a run created by one.

import { getJson, request } from "./api.js";
import { cell, h, role, setText, syncRows } from "./dom.js";
import { badge, runLink, timeElement } from "./format.js";
import { REFRESH_MS, clearError, describe, every, notify, showError } from "./view.js";

// Every text this module shows, in one place (to move into the message catalog).
export const SCHEDULE_TEXT = {
  title: "Schedules",
  caption: "Schedules, newest first",
  columns: ["Schedule", "Status", "Trigger", "Next fire", "Last run", "Fired / skipped / missed", "Actions"],
  none: "No schedule yet. Create one with POST /schedules or `pyoco-client schedule create`.",
  count: (n, active) => `${n} schedule${n === 1 ? "" : "s"}, ${active} active · updated live`,
  pause: "Pause",
  resume: "Resume",
  paused: (id) => `Schedule ${id} paused.`,
  resumed: (id) => `Schedule ${id} resumed.`,
  failed: (error) => `The change was not applied: ${error}`,
  every: (seconds) => `every ${seconds} s`,
  once: "once",
  scheduleFact: "Schedule",
  nominal: (when) => ` (slot ${when})`,
};

function triggerText(schedule) {
  if (schedule.schedule_type === "cron") {
    return `${schedule.cron} (${schedule.timezone || "UTC"})`;
  }
  if (schedule.schedule_type === "interval") {
    return SCHEDULE_TEXT.every(schedule.interval_seconds);
  }
  if (schedule.schedule_type === "once") {
    return SCHEDULE_TEXT.once;
  }
  return schedule.schedule_type || "—";
}

async function setPaused(schedule, paused) {
  try {
    await request("PATCH", `/schedules/${encodeURIComponent(schedule.schedule_id)}`, {
      body: { paused },
    });
    notify((paused ? SCHEDULE_TEXT.paused : SCHEDULE_TEXT.resumed)(schedule.schedule_id));
  } catch (error) {
    notify(SCHEDULE_TEXT.failed(describe(error)), "error");
  }
  window.dispatchEvent(new Event("pyoco:reload"));
}

function renderRow(row, schedule) {
  row.dataset.status = schedule.status || "";
  cell(row, 0, schedule.schedule_id, () => [
    h("span", { class: "mono wrap" }, schedule.schedule_id),
    h("br"),
    h("span", { class: "muted" }, schedule.flow_name),
  ]);
  cell(row, 1, schedule.status, () => badge(schedule.status, "schedule"));
  cell(row, 2, triggerText(schedule), () => triggerText(schedule));
  cell(row, 3, String(schedule.next_run_at), () => timeElement(schedule.next_run_at, false));
  const last = `${schedule.last_run_id}|${schedule.last_run_status}`;
  cell(row, 4, last, () =>
    schedule.last_run_id
      ? [runLink(schedule.last_run_id), " ", badge(schedule.last_run_status)]
      : "—",
  );
  const counters = schedule.counters || {};
  setText(row.cells[5], `${counters.fired ?? 0} / ${counters.skipped ?? 0} / ${counters.missed ?? 0}`);
  cell(row, 6, schedule.status, () => {
    if (schedule.status === "COMPLETED") {
      return "—";
    }
    const pausing = schedule.status !== "PAUSED";
    const button = h(
      "button",
      { type: "button", "data-action": pausing ? "pause" : "resume" },
      pausing ? SCHEDULE_TEXT.pause : SCHEDULE_TEXT.resume,
    );
    button.addEventListener("click", () => setPaused(schedule, pausing));
    return button;
  });
}

function buildView() {
  const head = h("tr", {}, ...SCHEDULE_TEXT.columns.map((name) => h("th", { scope: "col" }, name)));
  return h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    h("h1", { id: "view-title", tabindex: "-1" }, SCHEDULE_TEXT.title),
    h("p", { class: "view-status", "data-role": "status", "aria-live": "polite" }),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "data responsive", "data-role": "schedules" },
        h("caption", { class: "visually-hidden" }, SCHEDULE_TEXT.caption),
        h("thead", {}, head),
        h("tbody"),
      ),
    ),
  );
}

/** Mount the schedules view into main. */
export function mountSchedules(main, { signal }) {
  const view = buildView();
  main.append(view);
  const tbody = role(view, "schedules").tBodies[0];
  const status = role(view, "status");
  every(
    REFRESH_MS,
    async () => {
      const schedules = await getJson("/schedules", { limit: 200, include: "last_run" }, signal);
      const list = Array.isArray(schedules) ? schedules : [];
      syncRows(tbody, list, (schedule) => schedule.schedule_id, renderRow);
      clearError(view);
      const active = list.filter((schedule) => schedule.status === "ACTIVE").length;
      setText(status, list.length ? SCHEDULE_TEXT.count(list.length, active) : SCHEDULE_TEXT.none);
      view.dataset.loaded = "true";
    },
    signal,
    (error) => showError(view, error),
  );
}

/** The run-detail facts of a run a schedule created (none for other runs). */
export function scheduleFacts(run) {
  if (!run.schedule_id) {
    return [];
  }
  const nominal = run.schedule_nominal_at
    ? h("span", { class: "muted" }, SCHEDULE_TEXT.nominal(new Date(run.schedule_nominal_at * 1000).toISOString()))
    : null;
  return [
    h("dt", {}, SCHEDULE_TEXT.scheduleFact),
    h("dd", {}, h("a", { href: "#/schedules", class: "mono" }, run.schedule_id), nominal),
  ];
}
