// Small modal dialogs: confirm, prompt, and the keyboard help.

import { h } from "./dom.js";

function modal(title, content, buttons) {
  return new Promise((resolve) => {
    const close = (value) => {
      overlay.remove();
      window.removeEventListener("keydown", onKey, true);
      resolve(value);
    };
    const onKey = (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        close(null);
      }
    };
    window.addEventListener("keydown", onKey, true);
    const overlay = h(
      "div.modal",
      { role: "dialog", "aria-label": title },
      h("div.dialog", {}, h("h2", {}, title), content, h("div.buttons", {}, buttons(close))),
    );
    document.body.append(overlay);
    (overlay.querySelector("input") || overlay.querySelector("button.primary"))?.focus();
  });
}

export function confirmDialog(title, text, action) {
  return modal(title, h("p", {}, text), (close) => [
    h("button", { onclick: () => close(false) }, "Cancel"),
    h("button.primary", { onclick: () => close(true) }, action),
  ]).then(Boolean);
}

export function promptDialog(title, text, placeholder) {
  const input = h("input", { placeholder });
  return modal(
    title,
    h("form", { onsubmit: (event) => (event.preventDefault(), event.target.closest(".dialog").querySelector("button.primary").click()) }, h("p", {}, text), input),
    (close) => [
      h("button", { type: "button", onclick: () => close(null) }, "Cancel"),
      h("button.primary", { type: "button", onclick: () => close(input.value.trim() || null) }, "OK"),
    ],
  );
}

export function helpOverlay(keys) {
  if (document.querySelector(".modal .help")) return;
  return modal(
    "Keyboard",
    h("table.help", {}, keys.map(([key, what]) => h("tr", {}, h("td", {}, h("kbd", {}, key)), h("td", {}, what)))),
    (close) => [h("button.primary", { onclick: () => close(null) }, "Close")],
  );
}
