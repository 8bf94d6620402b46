// Charts above the runs list: runs finished per minute by status and queue depth per tag, for
// the last hour or the last day (GET /runs/activity). The plots are SVG built node by node
// with DOM APIs — no markup strings (the page's Trusted Types policy refuses them) — and every
// value from the server becomes text (textContent) or a number in a coordinate. Texts are the
// charts.* keys of the message catalogs (i18n.js).

import { getJson } from "./api.js";
import { fill, h, setText } from "./dom.js";
import { t } from "./i18n.js";
import { describe, every } from "./view.js";

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 600;
const HEIGHT = 150;
const PAD = { left: 34, right: 8, top: 8, bottom: 18 };
const REFRESH_MS = 15000;
const STATUS_ORDER = ["COMPLETED", "FAILED", "CANCELLED"];

// The window chosen last (kept while the operator moves between views).
let chosenWindow = "hour";

function svg(tag, attributes, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    element.setAttribute(name, String(value));
  }
  for (const child of children) {
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function numbers(series) {
  return Array.isArray(series) ? series.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null)) : [];
}

/** One plot: a line per series over the window's minutes, with axes and its own legend. */
function plot(title, window, series, emptyText) {
  const entries = series.filter((s) => s.values.some((v) => v !== null && v > 0));
  const figure = h("figure", { class: "chart", "data-chart": title });
  figure.append(h("figcaption", { class: "chart-title" }, title));
  if (!entries.length) {
    figure.append(h("p", { class: "muted chart-empty" }, emptyText));
    return figure;
  }
  const count = Math.max(...entries.map((s) => s.values.length), 1);
  const peak = Math.max(1, ...entries.flatMap((s) => s.values.filter((v) => v !== null)));
  const x = (i) => PAD.left + (i / Math.max(count - 1, 1)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / peak) * (HEIGHT - PAD.top - PAD.bottom);
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": title,
    class: "chart-plot",
  });
  chart.append(svg("title", {}, title));
  chart.append(svg("line", { x1: PAD.left, y1: y(0), x2: WIDTH - PAD.right, y2: y(0), class: "axis" }));
  chart.append(svg("line", { x1: PAD.left, y1: y(peak), x2: WIDTH - PAD.right, y2: y(peak), class: "grid" }));
  chart.append(svg("text", { x: PAD.left - 4, y: y(peak) + 4, class: "tick", "text-anchor": "end" }, String(peak)));
  chart.append(svg("text", { x: PAD.left - 4, y: y(0) + 4, class: "tick", "text-anchor": "end" }, "0"));
  chart.append(svg("text", { x: PAD.left, y: HEIGHT - 4, class: "tick" }, t(window === "day" ? "charts.agoDay" : "charts.agoHour")));
  chart.append(svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 4, class: "tick", "text-anchor": "end" }, t("charts.now")));
  const legend = h("ul", { class: "chart-legend" });
  for (const entry of entries) {
    // Break the line where a minute has no value (no sample), so gaps are not invented.
    let points = [];
    const flush = () => {
      if (points.length > 1) {
        chart.append(svg("polyline", { points: points.join(" "), class: `series ${entry.className}`, "data-series": entry.name }));
      } else if (points.length === 1) {
        // A lone value (one sample between gaps) is a dot: a one-point line would not show.
        const [cx, cy] = points[0].split(",");
        chart.append(svg("circle", { cx, cy, r: 3, class: `series dot ${entry.className}`, "data-series": entry.name }));
      }
      points = [];
    };
    entry.values.forEach((value, i) => {
      if (value === null) {
        flush();
      } else {
        points.push(`${x(i).toFixed(1)},${y(value).toFixed(1)}`);
      }
    });
    flush();
    const known = entry.values.filter((v) => v !== null);
    const summary = entry.summary === "total" ? t("charts.total", { n: known.reduce((a, b) => a + b, 0) }) : t("charts.latest", { n: known[known.length - 1] ?? 0 });
    legend.append(
      h("li", { "data-series": entry.name }, h("span", { class: `swatch ${entry.className}`, "aria-hidden": "true" }), h("span", {}, entry.name), h("span", { class: "muted" }, ` · ${summary}`)),
    );
  }
  figure.append(chart, legend);
  return figure;
}

function render(container, data) {
  const window = data && data.window === "day" ? "day" : "hour";
  const finished = (data && data.finished) || {};
  const statuses = [...STATUS_ORDER.filter((s) => s in finished), ...Object.keys(finished).filter((s) => !STATUS_ORDER.includes(s))];
  const finishedSeries = statuses.map((status) => ({
    name: status,
    values: numbers(finished[status]),
    className: `series-${status.toLowerCase()}`,
    summary: "total",
  }));
  const depth = (data && data.queue_depth) || {};
  const depthSeries = Object.keys(depth).map((tag, i) => ({
    name: tag,
    values: numbers(depth[tag]),
    className: `series-${i % 8}`,
    summary: "latest",
  }));
  fill(
    container,
    plot(t("charts.finished"), window, finishedSeries, t("charts.noFinished")),
    plot(t("charts.depth"), window, depthSeries, t("charts.noDepth")),
  );
}

/** Mount the charts into container (a data-role="charts" element of the runs view). */
export function mountCharts(container, { signal }) {
  const heading = h("h2", { class: "charts-heading" }, t("charts.heading"));
  const buttons = ["hour", "day"].map((window) =>
    h("button", { type: "button", "data-window": window, "aria-pressed": String(window === chosenWindow) }, t(`charts.${window}`)),
  );
  const picker = h("div", { class: "chart-window", role: "group", "aria-label": t("charts.windowLabel") }, buttons);
  const status = h("p", { class: "view-status", "aria-live": "polite" }, t("charts.loading"));
  const plots = h("div", { class: "chart-grid" });
  fill(container, heading, picker, status, plots);

  let loop = null;
  const start = () => {
    if (loop) {
      loop.abort();
    }
    loop = new AbortController();
    signal.addEventListener("abort", () => loop.abort());
    const window = chosenWindow;
    every(
      REFRESH_MS,
      async () => {
        const data = await getJson("/runs/activity", { window }, loop.signal);
        render(plots, data);
        setText(status, "");
        container.dataset.loaded = window;
      },
      loop.signal,
      (error) => setText(status, describe(error)),
    );
  };
  picker.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-window]");
    if (!button || button.dataset.window === chosenWindow) {
      return;
    }
    chosenWindow = button.dataset.window;
    for (const other of buttons) {
      other.setAttribute("aria-pressed", String(other === button));
    }
    start();
  });
  start();
}
