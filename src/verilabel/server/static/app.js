// The verilabel app: a shell (header, sign-in) and a router from the address's hash to a page.

import { api, ApiError } from "./api.js";
import { h, clear, toast } from "./dom.js";
import * as datasets from "./page-datasets.js";
import * as dataset from "./page-dataset.js";
import * as newRun from "./page-new-run.js";
import * as run from "./page-run.js";
import * as patches from "./page-patches.js";
import { runPage as runEmbeddings, datasetPage as datasetEmbeddings } from "./page-embeddings.js";

const ROUTES = [
  [/^#?\/?$/, datasets],
  [/^#\/datasets\/([^/]+)$/, dataset],
  [/^#\/datasets\/([^/]+)\/new-run$/, newRun],
  [/^#\/runs\/([^/]+)$/, run],
  [/^#\/runs\/([^/]+)\/patches$/, patches],
  [/^#\/runs\/([^/]+)\/embeddings$/, { render: runEmbeddings }],
  [/^#\/datasets\/([^/]+)\/embeddings$/, { render: datasetEmbeddings }],
];

const root = document.getElementById("app");
let cleanup = null;
let me = null;

function header() {
  return h(
    "header.top",
    {},
    h("a.brand", { href: "#/" }, h("span.logo", {}, "✓"), "verilabel"),
    h("nav.crumbs", { id: "crumbs" }),
    h(
      "div.who",
      {},
      h("span", { title: `signed in as ${me.name}` }, `${me.name} · ${me.role}`),
      h("button.link", { onclick: signOut }, "sign out"),
      h("button.link", { title: "keyboard shortcuts (?)", onclick: () => window.dispatchEvent(new CustomEvent("verilabel:help")) }, "?"),
    ),
  );
}

export function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  if (!nav) return;
  clear(nav, parts.flatMap((part, i) => [i ? h("span.sep", {}, "/") : null, typeof part === "string" ? h("span", {}, part) : part]));
}

async function signOut() {
  await api.del("/session");
  location.hash = "#/";
  location.reload();
}

function signIn(message) {
  const input = h("input", { type: "password", placeholder: "vl_…", autocomplete: "current-password", id: "token" });
  const error = h("p.error", { role: "alert" }, message || "");
  const form = h(
    "form.signin",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api.post("/session", { token: input.value.trim() });
          location.reload();
        } catch (failure) {
          error.textContent = failure.message;
        }
      },
    },
    h("h1", {}, h("span.logo", {}, "✓"), " verilabel"),
    h("label", { for: "token" }, "Token"),
    input,
    h("button.primary", { type: "submit" }, "Sign in"),
    error,
    h("p.hint", {}, "Open the URL `verilabel serve` printed, or use a token from `verilabel users add NAME`."),
  );
  clear(root, form);
  input.focus();
}

async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  const hash = location.hash || "#/";
  for (const [pattern, page] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    const main = h("main", { id: "page" });
    clear(root, header(), main);
    try {
      cleanup = (await page.render(main, match.slice(1).map(decodeURIComponent), { me, crumbs })) || null;
    } catch (failure) {
      if (failure instanceof ApiError && failure.status === 401) return signIn("Your session ended: sign in again.");
      clear(main, h("div.empty", {}, h("h2", {}, "Something went wrong"), h("p", {}, failure.message)));
    }
    return;
  }
  location.hash = "#/";
}

async function start() {
  try {
    me = await api.get("/me");
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) return signIn();
    clear(root, h("p.error", {}, failure.message));
    return;
  }
  window.addEventListener("hashchange", route);
  window.addEventListener("unhandledrejection", (event) => toast(event.reason?.message || String(event.reason), "error"));
  route();
}

start();
