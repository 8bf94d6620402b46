// What every view shares: live refresh loops and how a failed request is shown.

import { ApiError, EndpointMissing, SignInCancelled } from "./api.js";
import { fill, fromTemplate, h, role } from "./dom.js";
import { has, t } from "./i18n.js";

/** Milliseconds between refreshes of live views. */
export const REFRESH_MS = 2000;

/**
 * Run fn now and then every intervalMs after it finished, until signal aborts. Errors are
 * handed to onError (the loop keeps going, so a view heals when the gateway does); a
 * cancelled sign-in stops the loop.
 */
export function every(intervalMs, fn, signal, onError) {
  let timer = null;
  const tick = async () => {
    timer = null;
    if (signal.aborted) {
      return;
    }
    try {
      await fn();
    } catch (error) {
      if (signal.aborted || error.name === "AbortError") {
        return;
      }
      onError(error);
      if (error instanceof SignInCancelled || error instanceof EndpointMissing) {
        return;
      }
    }
    if (!signal.aborted) {
      timer = setTimeout(tick, intervalMs);
    }
  };
  signal.addEventListener("abort", () => timer && clearTimeout(timer));
  tick();
}

/** A short sentence for an error, for a view's status line. */
export function describe(error) {
  if (error instanceof EndpointMissing) {
    return t("error.missing");
  }
  if (error instanceof ApiError) {
    if (error.status === 0) {
      return t("error.noAnswer");
    }
    if (error.status === 503) {
      return t("error.unavailable", { detail: error.message });
    }
    const key = `error.${error.errId}`;
    const text = error.errId && has(key) ? t(key, { detail: error.message }) : error.message;
    return `${text}${error.errId ? ` (${error.errId})` : ""}`;
  }
  return String(error && error.message ? error.message : error);
}

/**
 * Show error on the view's status line; a cancelled sign-in replaces the view with a
 * "Sign in" panel whose button asks again (then re-opens the view).
 */
export function showError(root, error, statusRole = "status") {
  if (error instanceof SignInCancelled) {
    const panel = fromTemplate("tpl-signin");
    role(panel, "signin").addEventListener("click", () => window.dispatchEvent(new Event("pyoco:reload")));
    root.replaceWith(panel);
    return;
  }
  const line = role(root, statusRole);
  if (line) {
    line.classList.add("problem");
    fill(line, h("strong", {}, t("error.problem")), describe(error));
  }
}

/** Clear the view's status line after a successful refresh. */
export function clearError(root, statusRole = "status") {
  const line = role(root, statusRole);
  if (line && line.classList.contains("problem")) {
    line.classList.remove("problem");
    line.replaceChildren();
  }
}

/** Show a transient message in the page's notice area. */
export function notify(message, kind = "info") {
  const notice = document.getElementById("notice");
  notice.className = `notice ${kind}`;
  fill(notice, message);
  notice.hidden = false;
}

/** Ask for confirmation in the page's dialog; resolves true when confirmed. */
export function confirmAction(title, message, confirmLabel) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-message").textContent = message;
  document.getElementById("confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}
