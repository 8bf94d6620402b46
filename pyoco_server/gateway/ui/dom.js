// DOM helpers. Server values only ever become text nodes or attribute values: nothing here
// parses HTML (and the page's Trusted Types policy would refuse it anyway).

import { translate } from "./i18n.js";

/**
 * Create an element: h("a", {href: "#/x", class: "c"}, "text", child).
 * Attribute values are set with setAttribute; children are nodes or text.
 */
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of element with children (nodes or text). */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** Set textContent only when it changes (keeps selections and screen readers calm). */
export function setText(element, value) {
  const text = value === undefined || value === null ? "" : String(value);
  if (element.textContent !== text) {
    element.textContent = text;
  }
}

/** The element of the current view marked data-role=name. */
export function role(root, name) {
  return root.querySelector(`[data-role="${name}"]`);
}

/** A fresh copy of the <template id=id> content, in the page's language. */
export function fromTemplate(id) {
  return translate(document.getElementById(id).content.firstElementChild.cloneNode(true));
}

/**
 * Make tbody show one row per item, reusing rows by key (so a focused link or button in a
 * row keeps its focus across live refreshes). render(row, item) fills or updates a row;
 * cells get data-label from the table's column headers for the narrow-screen layout.
 */
export function syncRows(tbody, items, keyOf, render) {
  const labels = [...tbody.closest("table").tHead.rows[0].cells].map((cell) => cell.textContent);
  const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  const rows = items.map((item) => {
    const key = keyOf(item);
    let row = existing.get(key);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.key = key;
      labels.forEach((label) => row.append(h("td", { "data-label": label })));
    }
    render(row, item);
    return row;
  });
  const unchanged = rows.length === tbody.rows.length && rows.every((row, i) => tbody.rows[i] === row);
  if (!unchanged) {
    const focused = document.activeElement;
    tbody.replaceChildren(...rows);
    if (focused && focused !== document.activeElement && tbody.contains(focused)) {
      focused.focus();
    }
  }
}

/** Set the content of a cell only when the given signature changed. */
export function cell(row, index, signature, build) {
  const td = row.cells[index];
  const text = String(signature);
  if (td.dataset.sig !== text) {
    td.dataset.sig = text;
    fill(td, build());
  }
  return td;
}
