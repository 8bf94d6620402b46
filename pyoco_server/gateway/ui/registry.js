// The plugin registry in the dashboard: the registry view (wheels and history), each
// worker's synced plugins in the workers view, and a per-worker table in the plugins view.
// Texts are the registry.* keys of the message catalogs (i18n.js).

import { getJson } from "./api.js";
import { cell, fill, h, syncRows } from "./dom.js";
import { ago, badge } from "./format.js";
import { t } from "./i18n.js";
import { REFRESH_MS, clearError, every, showError } from "./view.js";

function table(caption, columns) {
  return h(
    "table",
    { class: "data responsive" },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}),
  );
}

function renderWheel(row, wheel) {
  cell(row, 0, wheel.distribution, () => h("span", { class: "wrap" }, wheel.distribution));
  const marks = [wheel.latest && t("registry.latest"), wheel.pinned && t("registry.pinned")].filter(Boolean);
  cell(row, 1, `${wheel.version}${marks}`, () => [wheel.version, marks.length ? ` (${marks.join(", ")})` : ""]);
  const tags = Array.isArray(wheel.tags) && wheel.tags.length ? wheel.tags.join(", ") : "—";
  cell(row, 2, tags, () => tags);
  cell(row, 3, String(wheel.key_id), () => h("span", { class: "mono" }, wheel.signed ? wheel.key_id : t("registry.unsigned")));
  cell(row, 4, String(wheel.published_at), () => ago(wheel.published_at));
}

function renderEvent(row, event) {
  cell(row, 0, String(event.occurred_at), () => ago(event.occurred_at));
  cell(row, 1, event.action, () => event.action);
  const what = [event.distribution, event.version].filter(Boolean).join(" ") || event.wheel_name;
  cell(row, 2, what, () => h("span", { class: "wrap" }, what || "—"));
  const actor = event.actor || {};
  const who = [actor.tenant_id, actor.api_key_id].filter(Boolean).join(" / ") || "—";
  cell(row, 3, who, () => h("span", { class: "mono" }, who));
}

/** Mount the registry view into main. */
export function mountRegistry(main, { signal }) {
  const status = h("p", { class: "view-status", "data-role": "status", "aria-live": "polite" });
  const wheels = table(t("registry.wheels"), [
    t("registry.col.distribution"), t("registry.col.version"), t("registry.col.tags"), t("registry.col.signature"), t("registry.col.published"),
  ]);
  const history = table(t("registry.history"), [t("registry.col.when"), t("registry.col.action"), t("registry.col.wheel"), t("registry.col.actor")]);
  wheels.dataset.role = "wheels";
  history.dataset.role = "wheel-history";
  const historyStatus = h("p", { class: "view-status" });
  const view = h(
    "section",
    { class: "view", "aria-labelledby": "view-title" },
    h("h1", { id: "view-title", tabindex: "-1" }, t("registry.title")),
    h("p", { class: "intro" }, t("registry.intro")),
    status,
    h("div", { class: "table-wrap" }, wheels),
    h("h2", {}, t("registry.history")),
    historyStatus,
    h("div", { class: "table-wrap" }, history),
  );
  main.append(view);
  every(
    REFRESH_MS,
    async () => {
      const list = await getJson("/wheels", {}, signal);
      syncRows(wheels.tBodies[0], list, (w) => w.name, renderWheel);
      fill(status, list.length ? "" : t("registry.empty"));
      try {
        const events = await getJson("/wheels/history", { limit: 50 }, signal);
        syncRows(history.tBodies[0], events, (e) => e.event_id, renderEvent);
        fill(historyStatus, events.length ? "" : t("registry.noHistory"));
      } catch (error) {
        fill(historyStatus, error.message || String(error)); // e.g. 403 for a submitter key
      }
      clearError(view);
      view.dataset.loaded = "true";
    },
    signal,
    (error) => showError(view, error),
  );
}

function stateOf(plugin) {
  const state = badge(String(plugin.state || "").toUpperCase(), "plugin");
  return plugin.state === "failed" && plugin.reason ? [state, ` ${plugin.reason}`] : state;
}

/** One line per synced plugin of a worker: "name version [state]" (for the workers view). */
export function syncedPlugins(worker) {
  const plugins = Array.isArray(worker.plugins) ? worker.plugins : [];
  if (!plugins.length) {
    return "—";
  }
  return h(
    "ul",
    { class: "plain" },
    plugins.map((p) =>
      h(
        "li",
        { title: p.detail || "" },
        `${p.distribution} ${p.version || ""} `,
        stateOf(p),
        p.active_version && p.active_version !== p.version ? ` (${t("registry.running", { version: p.active_version })})` : "",
      ),
    ),
  );
}

/** Append the "synced plugins per worker" table to the plugins view. */
export function appendSyncedPlugins(view, signal) {
  const status = h("p", { class: "view-status" });
  const synced = table(t("registry.synced"), [t("registry.col.worker"), t("registry.col.plugins")]);
  synced.dataset.role = "synced-plugins";
  view.append(h("h2", {}, t("registry.synced")), h("p", { class: "intro" }, t("registry.syncedIntro")), status, h("div", { class: "table-wrap" }, synced));
  every(
    REFRESH_MS,
    async () => {
      const workers = (await getJson("/workers", {}, signal)).filter((w) => w.plugin_sync);
      syncRows(synced.tBodies[0], workers, (w) => w.worker_id, (row, w) => {
        cell(row, 0, w.worker_id, () => h("span", { class: "mono wrap" }, w.worker_id));
        cell(row, 1, JSON.stringify(w.plugins), () => syncedPlugins(w));
      });
      fill(status, workers.length ? "" : t("registry.noSync"));
    },
    signal,
    (error) => fill(status, error.message || String(error)),
  );
}
