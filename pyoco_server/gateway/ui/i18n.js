// The dashboard's languages: every text a person reads comes from a message catalog
// (messages-en.js, messages-ja.js) through t(); static markup names its keys with
// data-i18n="key" (text) and data-i18n-attr="attribute:key;..." (attributes), filled by
// translate(). A new view adds its keys to both catalogs and never writes English literals.
// Translations are plain text, set as text nodes or attribute values: never parsed as HTML.

import { EN } from "./messages-en.js";
import { JA } from "./messages-ja.js";

const CATALOGS = { en: EN, ja: JA };
export const LANGUAGES = Object.keys(CATALOGS);

let current = "en";
let plurals = new Intl.PluralRules("en");

/**
 * The language to show for the gateway's setting ("auto", "ja" or "en") and the browser's
 * preferred languages (navigator.languages): auto takes the first preferred language the
 * dashboard has, else English.
 */
export function chooseLanguage(setting, preferred) {
  if (LANGUAGES.includes(setting)) {
    return setting;
  }
  for (const tag of preferred || []) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) {
      return base;
    }
  }
  return "en";
}

/** Switch the language of later t() calls (and the document's lang attribute). */
export function setLanguage(lang) {
  current = LANGUAGES.includes(lang) ? lang : "en";
  plurals = new Intl.PluralRules(current);
  document.documentElement.lang = current;
}

export function language() {
  return current;
}

/** Whether the current catalog has key (or English has it as a fallback). */
export function has(key) {
  return Object.hasOwn(CATALOGS[current], key) || Object.hasOwn(EN, key);
}

function lookup(key) {
  if (Object.hasOwn(CATALOGS[current], key)) {
    return CATALOGS[current][key];
  }
  return Object.hasOwn(EN, key) ? EN[key] : key;
}

/**
 * The text of key in the current language with {name} placeholders replaced from params;
 * a {one, other} entry picks the form for params.n. Missing keys fall back to English, then
 * to the key itself (so a gap is visible, never an exception).
 */
export function t(key, params = {}) {
  let entry = lookup(key);
  if (typeof entry === "object") {
    entry = entry[plurals.select(Number(params.n))] ?? entry.other;
  }
  return entry.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole,
  );
}

/** The word shown for a run, task or worker status (the status itself when unknown). */
export function statusWord(status) {
  const key = `status.${status}`;
  return has(key) ? t(key) : String(status);
}

/** Fill data-i18n texts and data-i18n-attr attributes under root (root included). */
export function translate(root) {
  const elements = [root, ...root.querySelectorAll("[data-i18n], [data-i18n-attr]")];
  for (const element of elements) {
    if (!element.dataset) {
      continue;
    }
    if (element.dataset.i18n) {
      element.textContent = t(element.dataset.i18n);
    }
    for (const pair of (element.dataset.i18nAttr || "").split(";")) {
      const [attribute, key] = pair.split(":").map((part) => part.trim());
      if (attribute && key) {
        element.setAttribute(attribute, t(key));
      }
    }
  }
  return root;
}
