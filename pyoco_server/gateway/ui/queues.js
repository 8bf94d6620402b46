// Queues and dead letters: per-tag depth from /metrics, the DLQ with redrive and delete.

import { EndpointMissing, getJson, getText, parseMetrics, request } from "./api.js";
import { cell, fill, fromTemplate, h, role, setText, syncRows } from "./dom.js";
import { asText, clip, duration, runLink, timeElement } from "./format.js";
import { REFRESH_MS, clearError, confirmAction, describe, every, notify, showError } from "./view.js";

const DLQ_FILTERS = ["tag", "reason", "run_id"];
const ERROR_CHARS = 300;

/** Per-tag queue figures from the metrics text. */
function queueTable(samples) {
  const byTag = new Map();
  const take = (name, field) => {
    for (const sample of samples) {
      if (sample.name === name && sample.labels.tag !== undefined) {
        const row = byTag.get(sample.labels.tag) || { tag: sample.labels.tag };
        row[field] = sample.value;
        byTag.set(sample.labels.tag, row);
      }
    }
  };
  take("pyoco_queue_depth", "depth");
  take("pyoco_queue_pending", "pending");
  take("pyoco_queue_in_flight", "inFlight");
  take("pyoco_queue_oldest_age_seconds", "oldest");
  return [...byTag.values()].sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
}

function figure(value) {
  return value === undefined || Number.isNaN(value) ? "—" : String(value);
}

function renderQueueRow(row, queue) {
  setText(row.cells[0], queue.tag);
  setText(row.cells[1], figure(queue.depth));
  setText(row.cells[2], figure(queue.pending));
  setText(row.cells[3], figure(queue.inFlight));
  setText(row.cells[4], queue.oldest === undefined ? "—" : queue.oldest > 0 ? duration(queue.oldest) : "none");
}

function single(samples, name) {
  const sample = samples.find((s) => s.name === name);
  return sample ? sample.value : undefined;
}

function readFilters(form) {
  const filters = {};
  for (const name of DLQ_FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) {
      filters[name] = value;
    }
  }
  return filters;
}

/** Mount the queues and DLQ view into main. */
export function mountQueues(main, { signal }) {
  const view = fromTemplate("tpl-queues");
  main.append(view);
  const queueBody = role(view, "queues").tBodies[0];
  const dlqBody = role(view, "dlq").tBodies[0];
  const dlqStatus = role(view, "dlq-status");
  const form = role(view, "dlq-filters");
  let filters = {};
  let dlqAvailable = true;

  const act = async (entry, action) => {
    const seq = encodeURIComponent(entry.seq);
    const what = `dead letter #${entry.seq} (run ${entry.run_id || "unknown"})`;
    const choices = {
      redrive: ["Redrive this job?", `Queue ${what} again as a new attempt of its run.`, "Redrive", "POST", `/dlq/${seq}/redrive`, {}],
      "redrive-new": ["Redrive as a new run?", `Queue ${what} again as a fresh run.`, "Redrive as new run", "POST", `/dlq/${seq}/redrive`, { new_run: "true" }],
      delete: ["Delete this dead letter?", `Remove ${what} from the dead-letter queue for good.`, "Delete", "DELETE", `/dlq/${seq}`, {}],
    };
    const [title, message, label, method, path, query] = choices[action];
    if (!(await confirmAction(title, message, label))) {
      return;
    }
    try {
      const answer = await request(method, path, { query, signal });
      if (action === "delete") {
        notify(`Dead letter #${entry.seq} deleted.`);
      } else {
        const runId = answer.data && answer.data.run_id;
        notify(h("span", {}, `Redriven: run `, runLink(runId), ` is ${(answer.data && answer.data.status) || "queued"}.`));
      }
      await refreshDlq();
    } catch (error) {
      notify(`${label} failed: ${describe(error)}`, "problem");
    }
  };

  const renderDlqRow = (row, entry) => {
    setText(row.cells[0], String(entry.seq ?? "—"));
    cell(row, 1, entry.timestamp, () => timeElement(entry.timestamp));
    cell(row, 2, entry.reason, () => h("span", { class: "badge reason" }, entry.reason || "unknown"));
    cell(row, 3, entry.run_id, () => runLink(entry.run_id));
    cell(row, 4, `${entry.flow_name}/${entry.tag}`, () => [
      h("span", { class: "wrap" }, entry.flow_name ?? "—"),
      h("br"),
      h("span", { class: "muted" }, entry.tag ?? ""),
    ]);
    const error = asText(entry.error);
    cell(row, 5, error, () => (error ? h("pre", { class: "error-text", title: clip(error, 2000) }, clip(error, ERROR_CHARS)) : "—"));
    setText(row.cells[6], entry.num_delivered ?? "—");
    cell(row, 7, entry.seq, () => {
      const button = (action, text, cls) => {
        const b = h("button", { type: "button", class: cls, "data-action": action }, text);
        b.addEventListener("click", () => act(entry, action));
        return b;
      };
      return h(
        "div",
        { class: "row-actions" },
        button("redrive", "Redrive", "primary"),
        button("redrive-new", "As new run", ""),
        button("delete", "Delete", "danger"),
      );
    });
  };

  const refreshDlq = async () => {
    if (!dlqAvailable) {
      return;
    }
    try {
      const entries = await getJson("/dlq", { ...filters, limit: 50 }, signal);
      const list = Array.isArray(entries) ? entries : [];
      syncRows(dlqBody, list, (entry) => String(entry.seq), renderDlqRow);
      dlqStatus.classList.remove("problem");
      setText(dlqStatus, list.length ? `${list.length} newest dead letters · updated live` : "No dead letters.");
    } catch (error) {
      if (error instanceof EndpointMissing) {
        dlqAvailable = false;
        view.dataset.dlq = "unavailable";
        role(view, "dlq-wrap").hidden = true;
        form.hidden = true;
        fill(dlqStatus, "The dead-letter API is not available on this gateway.");
        return;
      }
      throw error;
    }
  };

  const refreshQueues = async () => {
    const samples = parseMetrics(await getText("/metrics", signal));
    syncRows(queueBody, queueTable(samples), (queue) => queue.tag, renderQueueRow);
    const dead = single(samples, "pyoco_dlq_messages_total");
    const alive = single(samples, "pyoco_workers_alive_total");
    setText(
      role(view, "totals"),
      `Dead letters stored: ${figure(dead)} · workers alive: ${figure(alive)}`,
    );
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (form.reportValidity()) {
      filters = readFilters(form);
      refreshDlq().catch((error) => showError(view, error, "dlq-status"));
    }
  });
  role(view, "clear").addEventListener("click", () => {
    form.reset();
    filters = {};
    refreshDlq().catch((error) => showError(view, error, "dlq-status"));
  });

  every(
    REFRESH_MS,
    async () => {
      await Promise.all([refreshQueues(), refreshDlq()]);
      clearError(view);
      view.dataset.loaded = "true";
    },
    signal,
    (error) => showError(view, error),
  );
}
