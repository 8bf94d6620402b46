// Workers: state, tags, current run and last heartbeat of every worker, refreshed live.

import { getJson } from "./api.js";
import { cell, fromTemplate, h, role, setText, syncRows } from "./dom.js";
import { ago, badge, runLink } from "./format.js";
import { syncedPlugins } from "./registry.js";
import { REFRESH_MS, clearError, every, showError } from "./view.js";

function renderRow(row, worker) {
  row.dataset.state = worker.state || "";
  cell(row, 0, worker.worker_id, () => h("span", { class: "mono wrap" }, worker.worker_id));
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
  const concurrency = worker.concurrency ? ` · ${worker.concurrency} slot${worker.concurrency === 1 ? "" : "s"}` : "";
  setText(row.cells[5], (host || "—") + concurrency);
  cell(row, 6, JSON.stringify(worker.plugins || null), () => syncedPlugins(worker));
}

/** Mount the workers view into main. */
export function mountWorkers(main, { signal }) {
  const view = fromTemplate("tpl-workers");
  main.append(view);
  const tbody = role(view, "workers").tBodies[0];
  const status = role(view, "status");
  every(
    REFRESH_MS,
    async () => {
      const workers = await getJson("/workers", {}, signal);
      const list = Array.isArray(workers) ? workers : [];
      syncRows(tbody, list, (worker) => worker.worker_id, renderRow);
      clearError(view);
      const alive = list.filter((worker) => worker.alive).length;
      setText(
        status,
        list.length ? `${list.length} worker${list.length === 1 ? "" : "s"}, ${alive} alive · updated live` : "No worker has reported yet.",
      );
      view.dataset.loaded = "true";
    },
    signal,
    (error) => showError(view, error),
  );
}
