// Run detail, "Run tree": the parent and root of a spawned run and the runs it spawned
// (GET /runs?parent_run_id=), each linked. Reloaded only when the run's children change.

import { getJson } from "./api.js";
import { fill, h } from "./dom.js";
import { badge, runLink } from "./format.js";
import { t } from "./i18n.js";

function fact(term, value) {
  return [h("dt", {}, term), h("dd", {}, value)];
}

/** Keeps the "Run tree" section of one run's detail view current. */
export class RunTree {
  constructor(section, signal) {
    this.section = section;
    this.signal = signal;
    this.key = null;
  }

  /** Render ``run`` (a snapshot); children are fetched again only when they changed. */
  async update(run) {
    const spawned = Array.isArray(run.child_run_ids) ? run.child_run_ids : [];
    const done = run.children_done && typeof run.children_done === "object" ? Object.keys(run.children_done).length : 0;
    const isChild = Boolean(run.parent_run_id);
    this.section.hidden = !isChild && spawned.length === 0;
    if (this.section.hidden) {
      return;
    }
    const key = `${run.status}|${spawned.length}|${done}`;
    if (key === this.key) {
      return;
    }
    this.key = key;
    const facts = h(
      "dl",
      { class: "facts" },
      ...(isChild ? fact(t("tree.parent"), runLink(run.parent_run_id)) : []),
      ...(isChild ? fact(t("tree.root"), runLink(run.root_run_id)) : []),
      ...fact(t("tree.depth"), String(run.spawn_depth ?? 0)),
      ...fact(t("tree.children"), spawned.length ? t("tree.ended", { done, total: spawned.length }) : "—"),
    );
    const parts = [h("h2", {}, t("tree.heading")), facts];
    if (run.status === "WAITING") {
      parts.push(h("p", { class: "hint" }, t("tree.waiting")));
    }
    if (spawned.length) {
      const children = await getJson("/runs", { parent_run_id: run.run_id, limit: 200 }, this.signal);
      parts.push(
        h(
          "ul",
          { class: "run-tree", "data-role": "children" },
          ...children.map((child) =>
            h("li", { "data-run": child.run_id }, runLink(child.run_id), " ", badge(child.status), " ", h("span", { class: "muted" }, child.flow_name || "")),
          ),
        ),
      );
    } else {
      parts.push(h("p", { class: "muted" }, t("tree.none")));
    }
    fill(this.section, ...parts);
  }
}
