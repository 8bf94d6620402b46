// The API key: asked for on the page when the gateway answers 401/403, kept for this tab
// only (sessionStorage; never the persistent local storage), sent in the header the
// gateway names.

import { t } from "./i18n.js";

const STORAGE_KEY = "pyoco.apiKey";

let pending = null;
let listeners = [];

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

let memoryKey = null;

export function currentKey() {
  const store = storage();
  return (store && store.getItem(STORAGE_KEY)) || memoryKey;
}

function setKey(key) {
  memoryKey = key;
  const store = storage();
  if (store) {
    if (key) {
      store.setItem(STORAGE_KEY, key);
    } else {
      store.removeItem(STORAGE_KEY);
    }
  }
  listeners.forEach((listener) => listener(key));
}

export function forgetKey() {
  setKey(null);
}

/** Call listener(key) whenever the key changes. */
export function onKeyChange(listener) {
  listeners.push(listener);
}

/** The key id of a pyoco key ("pyoco_<key_id>.<secret>"): not secret, fine to show. */
export function keyId(key) {
  const match = /^pyoco_([^.]+)\./.exec(key || "");
  return match ? match[1] : null;
}

/**
 * Ask for a key after a 401 (none sent) or 403 (refused). Resolves true once a new key is
 * stored, false when the operator cancels. Concurrent callers share one prompt.
 */
export function askForKey(status, detail) {
  if (pending) {
    return pending;
  }
  const dialog = document.getElementById("auth-dialog");
  const form = document.getElementById("auth-form");
  const input = document.getElementById("auth-key");
  const message = document.getElementById("auth-message");
  const title = document.getElementById("auth-title");
  if (status === 403) {
    title.textContent = t("auth.titleRefused");
    message.textContent = t("auth.refused");
  } else {
    title.textContent = t("auth.titleRequired");
    message.textContent = detail ? t("auth.requiredDetail", { detail }) : t("auth.required");
  }
  input.value = "";
  pending = new Promise((resolve) => {
    const finish = (ok) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      document.getElementById("auth-cancel").removeEventListener("click", onCancel);
      if (dialog.open) {
        dialog.close();
      }
      pending = null;
      resolve(ok);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) {
        input.focus();
        return;
      }
      setKey(key);
      input.value = "";
      finish(true);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(false);
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
    document.getElementById("auth-cancel").addEventListener("click", onCancel);
  });
  dialog.showModal();
  input.focus();
  return pending;
}
