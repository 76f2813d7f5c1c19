// Building the page: h("div.card", {onclick}, children...) without a framework.

export function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") Object.assign(node.style, value);
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function plural(count, word, many) {
  return `${count} ${count === 1 ? word : many || word + "s"}`;
}

export function percent(value) {
  return value === null || value === undefined ? "–" : value.toFixed(2);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

// A message at the bottom of the page; errors stay until dismissed.
export function toast(message, kind = "info") {
  let box = document.querySelector(".toasts");
  if (!box) document.body.append((box = h("div.toasts")));
  const note = h(`div.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  note.addEventListener("click", () => note.remove());
  box.append(note);
  if (kind !== "error") setTimeout(() => note.remove(), 4000);
  return note;
}

export function debounce(fn, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
}
