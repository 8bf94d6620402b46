// Run detail: facts, parameters, a task timeline and table, live until the run is terminal
// (through GET /runs/{id}/watch, or by polling GET /runs/{id} where the gateway has no
// watch), and a Cancel button with confirmation.

import { EndpointMissing, SignInCancelled, getJson, request, streamEvents } from "./api.js";
import { cell, fill, fromTemplate, h, role, setText, syncRows } from "./dom.js";
import {
  asText,
  badge,
  clip,
  duration,
  elapsed,
  epoch,
  isTerminal,
  now,
  timeElement,
} from "./format.js";
import { RunTree } from "./run-tree.js";
import { statusWord, t } from "./i18n.js";
import { scheduleFacts } from "./schedules.js";
import { REFRESH_MS, clearError, confirmAction, describe, notify, showError } from "./view.js";

const OUTPUT_CHARS = 2000;

function fact(key, ...value) {
  return [h("dt", {}, t(key)), h("dd", {}, ...value)];
}

function renderFacts(list, run) {
  const tags = Array.isArray(run.tags) ? run.tags.join(", ") : "";
  let worker = run.worker_id || "—";
  if (run.worker_id && run.worker_alive !== undefined) {
    worker = [run.worker_id, h("span", { class: "muted" }, t(run.worker_alive ? "run.alive" : "run.notHeartbeating"))];
  }
  fill(
    list,
    ...fact("fact.flow", h("span", { class: "wrap" }, run.flow_name ?? "—")),
    ...fact("fact.tag", run.tag ?? "—", tags && tags !== run.tag ? h("span", { class: "muted" }, t("run.tagsNote", { tags })) : null),
    ...fact("fact.worker", worker),
    ...fact("fact.submitted", timeElement(run.submitted_at, false)),
    ...fact("fact.started", timeElement(run.start_time, false)),
    ...fact("fact.ended", timeElement(run.end_time, false)),
    ...fact("fact.duration", duration(elapsed(run.start_time, run.end_time))),
    ...fact("fact.heartbeat", timeElement(run.heartbeat_at)),
    ...(run.attempt && run.attempt > 1 ? fact("fact.attempt", String(run.attempt)) : []),
    ...scheduleFacts(run),
  );
}

/** Tasks in the order they started (not started ones last, by name). */
function orderedTasks(run) {
  const records = run.task_records || {};
  const names = new Set([...Object.keys(run.tasks || {}), ...Object.keys(records)]);
  return [...names]
    .map((name) => {
      const record = records[name] && typeof records[name] === "object" ? records[name] : {};
      return { name, state: (run.tasks || {})[name] || record.state, record };
    })
    .sort((a, b) => {
      const sa = epoch(a.record.started_at);
      const sb = epoch(b.record.started_at);
      if (sa !== sb) {
        return sa === null ? 1 : sb === null ? -1 : sa - sb;
      }
      return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    });
}

function renderTimeline(list, run, tasks) {
  const started = tasks.map((t) => epoch(t.record.started_at)).filter((v) => v !== null);
  const origin = Math.min(...started, epoch(run.start_time) ?? Infinity);
  const endOf = (t) => epoch(t.record.ended_at) ?? (t.state === "RUNNING" ? now() : epoch(t.record.started_at));
  const ends = tasks.filter((t) => epoch(t.record.started_at) !== null).map(endOf);
  const finish = Math.max(...ends, epoch(run.end_time) ?? -Infinity);
  if (!started.length || !Number.isFinite(origin)) {
    fill(list, h("li", { class: "muted" }, t("timeline.none")));
    return;
  }
  const span = Math.max(finish - origin, 0.001);
  const items = tasks.map((task) => {
    const start = epoch(task.record.started_at);
    const label = h("span", { class: "tl-name wrap" }, task.name);
    if (start === null) {
      return h("li", { class: "tl-row", "data-task": task.name }, label, h("span", { class: "tl-track" }), h("span", { class: "tl-time muted" }, t("timeline.notStarted")));
    }
    const end = endOf(task);
    const bar = h("span", { class: `tl-bar state-${String(task.state || "unknown").toLowerCase()}`, "aria-hidden": "true" });
    bar.style.left = `${((start - origin) / span) * 100}%`;
    bar.style.width = `${Math.max(((end - start) / span) * 100, 0.5)}%`;
    const text = `${duration(start - origin)} → ${duration(end - origin)} (${duration(end - start)}, ${statusWord(task.state || "UNKNOWN")})`;
    return h(
      "li",
      { class: "tl-row", "data-task": task.name },
      label,
      h("span", { class: "tl-track", title: text }, bar),
      h("span", { class: "tl-time" }, text),
    );
  });
  fill(list, ...items);
}

function outputOf(record) {
  if (record.error) {
    const trace = record.traceback ? `\n\n${asText(record.traceback)}` : "";
    return { text: clip(asText(record.error) + trace, OUTPUT_CHARS), error: true };
  }
  if (record.output === undefined || record.output === null) {
    return { text: "", error: false };
  }
  return { text: clip(asText(record.output), OUTPUT_CHARS), error: false };
}

function renderTaskRow(row, task) {
  row.dataset.state = task.state || "";
  cell(row, 0, task.name, () => h("span", { class: "wrap" }, task.name));
  cell(row, 1, task.state, () => badge(task.state || "UNKNOWN", "state"));
  cell(row, 2, task.record.started_at, () => timeElement(task.record.started_at, false));
  const took = task.record.duration_ms !== undefined && task.record.duration_ms !== null
    ? Number(task.record.duration_ms) / 1000
    : elapsed(task.record.started_at, task.record.ended_at);
  setText(row.cells[3], took === null || Number.isNaN(took) ? "—" : duration(took));
  const output = outputOf(task.record);
  cell(row, 4, `${output.error}:${output.text}`, () =>
    output.text ? h("pre", { class: output.error ? "error-text" : "output" }, output.text) : "—",
  );
}

/** Mount the detail view of run arg into main. */
export function mountRun(main, { arg: runId, signal }) {
  const view = fromTemplate("tpl-run");
  main.append(view);
  setText(role(view, "run-id"), runId);
  const live = role(view, "live");
  const cancel = role(view, "cancel");
  let latest = null;
  const tree = new RunTree(role(view, "tree"), signal);

  const render = (run) => {
    latest = run;
    view.dataset.status = run.status || "";
    fill(role(view, "status-badge"), badge(run.status));
    renderFacts(role(view, "facts"), run);
    const errorBox = role(view, "error-box");
    errorBox.hidden = !run.error;
    setText(role(view, "error"), asText(run.error));
    setText(role(view, "params"), asText(run.params ?? {}));
    const tasks = orderedTasks(run);
    renderTimeline(role(view, "timeline"), run, tasks);
    role(view, "truncated").hidden = !run.task_records_truncated;
    syncRows(role(view, "tasks").tBodies[0], tasks, (t) => t.name, renderTaskRow);
    cancel.hidden = isTerminal(run.status) || run.status === "CANCELLING";
    tree.update(run).catch((error) => error.name === "AbortError" || showError(view, error));
    clearError(view);
  };

  const setLive = (mode, text) => {
    view.dataset.live = mode;
    setText(live, text);
  };

  const fetchRun = async () => render(await getJson(`/runs/${encodeURIComponent(runId)}`, { include: "records" }, signal));

  const poll = async () => {
    setLive("poll", t("live.poll", { s: REFRESH_MS / 1000 }));
    while (!signal.aborted && !isTerminal(latest && latest.status)) {
      await new Promise((resolve) => setTimeout(resolve, REFRESH_MS));
      if (signal.aborted) {
        return;
      }
      try {
        await fetchRun();
      } catch (error) {
        if (error instanceof SignInCancelled) {
          throw error;
        }
        showError(view, error);
      }
    }
  };

  const watch = async () => {
    let lastEventId = null;
    for (let attempt = 0; !signal.aborted && !isTerminal(latest && latest.status); attempt += 1) {
      setLive("watch", t("live.watch"));
      try {
        await streamEvents(`/runs/${encodeURIComponent(runId)}/watch`, {
          query: { include: "records" },
          lastEventId,
          signal,
          onEvent: (event) => {
            lastEventId = event.id || lastEventId;
            if (event.event === "snapshot") {
              render(JSON.parse(event.data));
            }
          },
        });
        attempt = 0;
      } catch (error) {
        if (error instanceof EndpointMissing || error instanceof SignInCancelled || error.name === "AbortError") {
          throw error;
        }
        showError(view, error);
      }
      if (!isTerminal(latest && latest.status)) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * 2 ** attempt, 10000)));
        await fetchRun().catch(() => {});
      }
    }
  };

  const follow = async () => {
    await fetchRun();
    if (!isTerminal(latest.status)) {
      try {
        await watch();
      } catch (error) {
        if (!(error instanceof EndpointMissing)) {
          throw error;
        }
        await poll();
      }
    }
    if (!signal.aborted) {
      setLive("done", t("live.final", { status: statusWord(latest.status) }));
    }
  };

  follow().catch((error) => {
    if (!signal.aborted && error.name !== "AbortError") {
      showError(view, error);
      setLive("stopped", "");
    }
  });

  cancel.addEventListener("click", async () => {
    const sure = await confirmAction(
      t("cancel.title"),
      t("cancel.message", { id: runId, flow: latest ? latest.flow_name : "" }),
      t("run.cancel"),
    );
    if (!sure) {
      cancel.focus();
      return;
    }
    cancel.disabled = true;
    try {
      const answer = await request("POST", `/runs/${encodeURIComponent(runId)}/cancel`, { signal });
      if (answer.data && answer.data.status) {
        render({ ...latest, ...answer.data, task_records: answer.data.task_records ?? latest.task_records });
      }
      notify(t("cancel.requested", { status: statusWord(answer.data && answer.data.status) }));
    } catch (error) {
      notify(
        error instanceof EndpointMissing
          ? t("cancel.missing")
          : t("cancel.failed", { reason: describe(error) }),
        "problem",
      );
    } finally {
      cancel.disabled = false;
    }
  });
}
