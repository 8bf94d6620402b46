// Workers: state, tags, current run and last heartbeat of every worker, refreshed live; hide
// a worker from the default list (PATCH /workers/{id}) and show hidden ones on demand.

import { getJson, request } from "./api.js";
import { cell, fromTemplate, h, role, setText, syncRows } from "./dom.js";
import { ago, badge, runLink } from "./format.js";
import { t } from "./i18n.js";
import { syncedPlugins } from "./registry.js";
import { REFRESH_MS, clearError, describe, every, notify, showError } from "./view.js";

function renderRow(row, worker, toggleHidden) {
  row.dataset.state = worker.state || "";
  row.dataset.hidden = worker.hidden ? "true" : "false";
  cell(row, 0, `${worker.worker_id}:${worker.hidden}`, () => [
    h("span", { class: "mono wrap" }, worker.worker_id),
    worker.hidden ? h("span", { class: "badge hidden-mark" }, t("workers.hiddenMark")) : null,
  ]);
  cell(row, 1, worker.state, () => badge(worker.state, "worker"));
  const tags = Array.isArray(worker.tags) ? worker.tags : [];
  cell(row, 2, JSON.stringify(tags), () => (tags.length ? tags.join(", ") : "—"));
  const runs = Array.isArray(worker.current_run_ids) && worker.current_run_ids.length
    ? worker.current_run_ids
    : worker.current_run_id ? [worker.current_run_id] : [];
  cell(row, 3, JSON.stringify(runs), () =>
    runs.length ? runs.flatMap((id, i) => (i ? [h("br"), runLink(id)] : [runLink(id)])) : "—",
  );
  setText(row.cells[4], ago(worker.heartbeat_at));
  const host = [worker.hostname, worker.pid].filter((v) => v !== undefined && v !== null).join(":");
  const slots = worker.concurrency ? t("workers.slots", { n: worker.concurrency }) : "";
  setText(row.cells[5], (host || "—") + slots);
  cell(row, 6, JSON.stringify(worker.plugins || null), () => syncedPlugins(worker));
  cell(row, 7, String(Boolean(worker.hidden)), () => {
    const button = h(
      "button",
      { type: "button", "data-action": worker.hidden ? "unhide" : "hide" },
      t(worker.hidden ? "workers.unhide" : "workers.hide"),
    );
    button.addEventListener("click", () => toggleHidden(worker, button));
    return button;
  });
}

/** Mount the workers view into main. */
export function mountWorkers(main, { signal }) {
  const view = fromTemplate("tpl-workers");
  main.append(view);
  const tbody = role(view, "workers").tBodies[0];
  const status = role(view, "status");
  const includeHidden = role(view, "include-hidden");

  const load = async () => {
    const query = { scope: "all", include_hidden: includeHidden.checked ? "true" : "false", limit: 500 };
    const workers = await getJson("/workers", query, signal);
    const list = Array.isArray(workers) ? workers : [];
    syncRows(tbody, list, (worker) => worker.worker_id, (row, worker) => renderRow(row, worker, toggleHidden));
    clearError(view);
    const alive = list.filter((worker) => worker.alive).length;
    setText(status, list.length ? t("workers.count", { n: list.length, alive }) : t("workers.none"));
    view.dataset.loaded = "true";
  };

  const toggleHidden = async (worker, button) => {
    const hidden = !worker.hidden;
    button.disabled = true;
    try {
      await request("PATCH", `/workers/${encodeURIComponent(worker.worker_id)}`, { body: { hidden }, signal });
      notify(t(hidden ? "workers.hidden" : "workers.shown", { id: worker.worker_id }));
      await load();
    } catch (error) {
      if (error.name !== "AbortError") {
        const label = t(hidden ? "workers.hide" : "workers.unhide");
        notify(t("action.failed", { label, reason: describe(error) }), "problem");
      }
    } finally {
      button.disabled = false;
    }
  };

  includeHidden.addEventListener("change", () => load().catch((error) => showError(view, error)));
  every(REFRESH_MS, load, signal, (error) => showError(view, error));
}
