// Plugins: what this gateway loaded (name, version, source, hooks).

import { getJson } from "./api.js";
import { cell, fromTemplate, h, role, syncRows } from "./dom.js";
import { t } from "./i18n.js";
import { appendSyncedPlugins } from "./registry.js";
import { showError } from "./view.js";

function renderRow(row, plugin) {
  cell(row, 0, plugin.name, () => h("span", { class: "wrap" }, plugin.name));
  const version = [plugin.distribution, plugin.version].filter(Boolean).join(" ");
  cell(row, 1, version, () => version || "—");
  cell(row, 2, plugin.source, () => plugin.source || "—");
  cell(row, 3, plugin.module, () => h("span", { class: "mono wrap" }, plugin.module || "—"));
  const hooks = Array.isArray(plugin.hooks) ? plugin.hooks : [];
  cell(row, 4, JSON.stringify(hooks), () =>
    hooks.length ? h("ul", { class: "plain" }, hooks.map((hook) => h("li", { class: "mono" }, hook))) : "—",
  );
}

/** Mount the plugins view into main. */
export async function mountPlugins(main, { signal }) {
  const view = fromTemplate("tpl-plugins");
  main.append(view);
  appendSyncedPlugins(view, signal);
  try {
    const plugins = await getJson("/plugins", {}, signal);
    const list = Array.isArray(plugins) ? plugins : [];
    syncRows(role(view, "plugins").tBodies[0], list, (plugin) => plugin.name, renderRow);
    role(view, "status").textContent = list.length ? "" : t("plugins.none");
    view.dataset.loaded = "true";
  } catch (error) {
    if (!signal.aborted && error.name !== "AbortError") {
      showError(view, error);
    }
  }
}
