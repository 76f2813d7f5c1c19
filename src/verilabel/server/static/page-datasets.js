// The datasets: samples, label fields (and where their labels are), runs.

import { api } from "./api.js";
import { h, clear, plural } from "./dom.js";

export async function render(main, params, { crumbs }) {
  crumbs("datasets");
  const list = await api.get("/datasets");
  if (!list.length) {
    clear(
      main,
      h(
        "div.empty",
        {},
        h("h2", {}, "No dataset yet"),
        h("p", {}, "Create one from a folder of images: ", h("code", {}, "verilabel dataset create NAME --from-dir DIR")),
        h("p", {}, "or try the demo: ", h("code", {}, "verilabel demo")),
      ),
    );
    return;
  }
  clear(
    main,
    h("h1", {}, "Datasets"),
    h(
      "div.cards",
      {},
      list.map((d) =>
        h(
          "a.card",
          { href: `#/datasets/${encodeURIComponent(d.name)}` },
          h("h2", {}, d.name),
          h("p", {}, plural(d.samples, "sample")),
          h(
            "ul.fields",
            {},
            Object.entries(d.fields).map(([name, f]) =>
              h("li", {}, h("b", {}, name), " ", fieldState(f)),
            ),
          ),
        ),
      ),
    ),
  );
}

export function fieldState(field) {
  if (!field.run_status) return plural(field.labels, "label");
  if (field.run_status === "in_review") return `${plural(field.run_labels, "label")} in review (${field.promoted} promoted)`;
  if (field.run_status === "queued" || field.run_status === "generating") return `generating: ${plural(field.run_labels, "label")} so far`;
  return `run ${field.run_status}`;
}
