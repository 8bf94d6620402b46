// The dashboard's entry point: configuration, the session bar and the hash router.

import { apiConfig, loadConfig } from "./api.js";
import { currentKey, forgetKey, keyId, onKeyChange } from "./auth.js";
import { fill } from "./dom.js";
import { chooseLanguage, setLanguage, t, translate } from "./i18n.js";
import { mountPlugins } from "./plugins.js";
import { mountQueues } from "./queues.js";
import { mountRegistry } from "./registry.js";
import { mountRun } from "./run-detail.js";
import { mountRuns } from "./runs.js";
import { mountSchedules } from "./schedules.js";
import { mountWorkers } from "./workers.js";

// Routes: #/runs?filters, #/runs/<run id>, #/schedules, #/workers, #/queues, #/plugins,
// #/registry.
const ROUTES = [
  { pattern: /^\/runs\/([^/?]+)$/, nav: "runs", title: "run.title", mount: mountRun },
  { pattern: /^\/runs$/, nav: "runs", title: "nav.runs", mount: mountRuns },
  { pattern: /^\/schedules$/, nav: "schedules", title: "nav.schedules", mount: mountSchedules },
  { pattern: /^\/workers$/, nav: "workers", title: "nav.workers", mount: mountWorkers },
  { pattern: /^\/queues$/, nav: "queues", title: "nav.queues", mount: mountQueues },
  { pattern: /^\/plugins$/, nav: "plugins", title: "nav.plugins", mount: mountPlugins },
  { pattern: /^\/registry$/, nav: "registry", title: "nav.registry", mount: mountRegistry },
];

let current = null;

function parseHash() {
  const hash = window.location.hash.replace(/^#/, "") || "/runs";
  const [path, query = ""] = hash.split("?", 2);
  return { path, params: new URLSearchParams(query) };
}

function route(focus) {
  const { path, params } = parseHash();
  const match = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
  if (!match) {
    window.location.replace("#/runs");
    return;
  }
  if (current) {
    current.abort();
  }
  current = new AbortController();
  const main = document.getElementById("main");
  main.replaceChildren();
  document.getElementById("notice").hidden = true;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === match.r.nav) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  document.title = `${t(match.r.title)} · pyoco-server`;
  const arg = match.m[1] ? decodeURIComponent(match.m[1]) : undefined;
  match.r.mount(main, { params, arg, signal: current.signal });
  if (focus) {
    const heading = main.querySelector("h1");
    (heading || main).focus();
  }
}

function showSession() {
  const state = document.getElementById("session-state");
  const forget = document.getElementById("forget-key");
  if (apiConfig().auth_mode !== "api_key") {
    fill(state, t("session.authOff"));
    forget.hidden = true;
    return;
  }
  const key = currentKey();
  if (key) {
    const id = keyId(key);
    fill(state, id ? t("session.key", { id }) : t("session.keySet"));
  } else {
    fill(state, t("session.noKey"));
  }
  forget.hidden = !key;
}

async function start() {
  await loadConfig();
  // PYOCO_DASHBOARD_LANG: ja or en, or auto (the browser's preferred languages).
  setLanguage(chooseLanguage(apiConfig().dashboard_lang, navigator.languages));
  translate(document.body);
  document.getElementById("auth-header-name").textContent = apiConfig().api_key_header;
  document.getElementById("forget-key").addEventListener("click", () => {
    forgetKey();
    route(false);
  });
  onKeyChange(showSession);
  showSession();
  window.addEventListener("hashchange", () => route(true));
  window.addEventListener("pyoco:reload", () => route(true));
  route(false);
  document.body.dataset.ready = "true";
}

start();
