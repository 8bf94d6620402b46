// Runs: status counts, filters, a server-paged table refreshed live.

import { request } from "./api.js";
import { mountCharts } from "./charts.js";
import { cell, fill, fromTemplate, h, role, setText, syncRows } from "./dom.js";
import { RUN_STATUSES, badge, duration, elapsed, epoch, ago, runLink } from "./format.js";
import { statusWord, t } from "./i18n.js";
import { REFRESH_MS, clearError, every, showError } from "./view.js";

const FILTERS = ["status", "flow", "tag", "q"];
const PAGE_SIZES = ["25", "50", "100", "200"];

function readFilters(params) {
  const filters = {};
  for (const name of FILTERS) {
    const value = (params.get(name) || "").trim();
    if (value) {
      filters[name] = value;
    }
  }
  const limit = Number.parseInt(params.get("limit") || "50", 10);
  filters.limit = Number.isInteger(limit) && limit >= 1 && limit <= 200 ? String(limit) : "50";
  return filters;
}

function hashFor(filters) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) {
    if (value && !(name === "limit" && value === "50")) {
      query.set(name, value);
    }
  }
  const text = query.toString();
  return text ? `#/runs?${text}` : "#/runs";
}

function showFilters(form, filters) {
  const limit = form.elements.limit;
  if (!PAGE_SIZES.includes(filters.limit)) {
    limit.append(h("option", {}, filters.limit));
  }
  for (const name of [...FILTERS, "limit"]) {
    form.elements[name].value = filters[name] || "";
  }
}

function renderCounts(list, counts, active) {
  const byStatus = (counts && counts.by_status) || {};
  const items = [
    h(
      "li",
      {},
      h(
        "button",
        { type: "button", class: "count", "data-status": "", "aria-pressed": String(!active) },
        h("span", { class: "badge status-all", "data-value": "ALL" }, statusWord("ALL")),
        h("span", { class: "count-n", "data-role": "count-ALL" }, String(counts ? counts.total : "…")),
      ),
    ),
  ];
  for (const status of RUN_STATUSES) {
    items.push(
      h(
        "li",
        {},
        h(
          "button",
          { type: "button", class: "count", "data-status": status, "aria-pressed": String(active === status) },
          badge(status),
          h("span", { class: "count-n", "data-role": `count-${status}` }, String(byStatus[status] ?? "…")),
        ),
      ),
    );
  }
  const focused = document.activeElement && document.activeElement.dataset.status;
  fill(list, items);
  if (focused !== undefined) {
    const again = list.querySelector(`[data-status="${focused}"]`);
    if (again) {
      again.focus();
    }
  }
}

function renderRow(row, run) {
  cell(row, 0, run.run_id, () => runLink(run.run_id));
  cell(row, 1, run.status, () => badge(run.status));
  cell(row, 2, run.flow_name, () => h("span", { class: "wrap" }, run.flow_name ?? "—"));
  const tags = (run.tags || []).filter((t) => t !== run.tag);
  cell(row, 3, JSON.stringify([run.tag, tags]), () => [
    run.tag ?? "—",
    tags.length ? h("span", { class: "muted" }, ` +${tags.join(", ")}`) : null,
  ]);
  cell(row, 4, run.worker_id, () => h("span", { class: "wrap" }, run.worker_id || "—"));
  const since = epoch(run.submitted_at) ?? epoch(run.updated_at);
  setText(row.cells[5], since === null ? "—" : ago(since));
  const took = elapsed(run.start_time, run.end_time);
  setText(row.cells[6], took === null ? "—" : duration(took));
  row.dataset.status = run.status || "";
}

/** Mount the runs view into main. */
export function mountRuns(main, { params, signal }) {
  const view = fromTemplate("tpl-runs");
  main.append(view);
  const filters = readFilters(params);
  const form = role(view, "filters");
  const tbody = role(view, "runs").tBodies[0];
  const status = role(view, "status");
  const counts = role(view, "counts");
  const newer = role(view, "newer");
  const older = role(view, "older");
  const pageLabel = role(view, "page");
  showFilters(form, filters);
  renderCounts(counts, null, filters.status);
  mountCharts(role(view, "charts"), { signal });

  // Cursors of the pages seen so far: cursors[0] is the first page (no cursor).
  const cursors = [null];
  let nextCursor = null;
  let refreshNow = null;

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!form.reportValidity()) {
      return;
    }
    const chosen = {};
    for (const name of [...FILTERS, "limit"]) {
      chosen[name] = form.elements[name].value.trim();
    }
    window.location.hash = hashFor(chosen);
  });
  role(view, "clear").addEventListener("click", () => {
    window.location.hash = hashFor({ limit: filters.limit });
  });
  counts.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-status]");
    if (button) {
      window.location.hash = hashFor({ ...filters, status: button.dataset.status });
    }
  });
  older.addEventListener("click", () => {
    if (nextCursor) {
      cursors.push(nextCursor);
      refreshNow();
    }
  });
  newer.addEventListener("click", () => {
    if (cursors.length > 1) {
      cursors.pop();
      refreshNow();
    }
  });

  const load = async () => {
    const cursor = cursors[cursors.length - 1];
    const [page, totals] = await Promise.all([
      request("GET", "/runs", { query: { ...filters, cursor }, signal }),
      request("GET", "/runs/counts", { signal }),
    ]);
    if (cursor !== cursors[cursors.length - 1]) {
      return; // the operator paged meanwhile; the next refresh shows the new page
    }
    const runs = Array.isArray(page.data) ? page.data : [];
    nextCursor = page.headers.get("Next-Cursor");
    renderCounts(counts, totals.data, filters.status);
    syncRows(tbody, runs, (run) => run.run_id, renderRow);
    clearError(view);
    const pageNumber = cursors.length;
    setText(pageLabel, t("pager.page", { n: pageNumber }));
    newer.disabled = pageNumber === 1;
    older.disabled = !nextCursor;
    if (!runs.length) {
      const filtered = FILTERS.some((name) => filters[name]);
      setText(status, t(pageNumber > 1 ? "runs.noneOlder" : filtered ? "runs.noneMatch" : "runs.none"));
    } else {
      setText(status, t("runs.onPage", { n: runs.length }));
    }
    view.dataset.loaded = "true";
  };
  let timerSignal = null;
  refreshNow = () => {
    if (timerSignal) {
      timerSignal.abort();
    }
    timerSignal = new AbortController();
    signal.addEventListener("abort", () => timerSignal.abort());
    every(REFRESH_MS, load, timerSignal.signal, (error) => showError(view, error));
  };
  refreshNow();
}
