// Queues and dead letters: per-tag depth from /metrics, the DLQ with redrive and delete.

import { EndpointMissing, getJson, getText, parseMetrics, request } from "./api.js";
import { cell, fill, fromTemplate, h, role, setText, syncRows } from "./dom.js";
import { asText, clip, duration, runLink, timeElement } from "./format.js";
import { statusWord, t } from "./i18n.js";
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
  setText(row.cells[4], queue.oldest === undefined ? "—" : queue.oldest > 0 ? duration(queue.oldest) : t("common.none"));
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
    const what = t("dlq.what", { seq: entry.seq, run: entry.run_id || t("common.unknown") });
    const choices = {
      redrive: ["dlq.redriveTitle", "dlq.redriveMessage", "dlq.redrive", "POST", `/dlq/${seq}/redrive`, {}],
      "redrive-new": ["dlq.redriveNewTitle", "dlq.redriveNewMessage", "dlq.redriveNew", "POST", `/dlq/${seq}/redrive`, { new_run: "true" }],
      delete: ["dlq.deleteTitle", "dlq.deleteMessage", "dlq.delete", "DELETE", `/dlq/${seq}`, {}],
    };
    const [titleKey, messageKey, labelKey, method, path, query] = choices[action];
    const [title, message, label] = [t(titleKey), t(messageKey, { what }), t(labelKey)];
    if (!(await confirmAction(title, message, label))) {
      return;
    }
    try {
      const answer = await request(method, path, { query, signal });
      if (action === "delete") {
        notify(t("dlq.deleted", { seq: entry.seq }));
      } else {
        const runId = answer.data && answer.data.run_id;
        const status = answer.data && answer.data.status ? statusWord(answer.data.status) : t("dlq.queued");
        notify(h("span", {}, t("dlq.redrivenBefore"), runLink(runId), t("dlq.redrivenAfter", { status })));
      }
      await refreshDlq();
    } catch (error) {
      notify(t("action.failed", { label, reason: describe(error) }), "problem");
    }
  };

  const renderDlqRow = (row, entry) => {
    setText(row.cells[0], String(entry.seq ?? "—"));
    cell(row, 1, entry.timestamp, () => timeElement(entry.timestamp));
    cell(row, 2, entry.reason, () => h("span", { class: "badge reason" }, entry.reason || t("common.unknown")));
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
        button("redrive", t("dlq.redrive"), "primary"),
        button("redrive-new", t("dlq.asNewRun"), ""),
        button("delete", t("dlq.delete"), "danger"),
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
      setText(dlqStatus, list.length ? t("dlq.count", { n: list.length }) : t("dlq.none"));
    } catch (error) {
      if (error instanceof EndpointMissing) {
        dlqAvailable = false;
        view.dataset.dlq = "unavailable";
        role(view, "dlq-wrap").hidden = true;
        form.hidden = true;
        fill(dlqStatus, t("dlq.unavailable"));
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
      t("queues.totals", { dead: figure(dead), alive: figure(alive) }),
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
