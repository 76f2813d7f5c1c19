// A dataset: its samples in a paged grid with the labels of chosen fields drawn over them, a filter bar speaking
// the CLI's view expressions, a sample viewer (zoom, pan), and the runs panel.

import { api, media } from "./api.js";
import { h, clear, plural, toast } from "./dom.js";
import { labelledImage, colour } from "./overlay.js";
import { runsPanel } from "./runs-panel.js";
import { fieldState } from "./page-datasets.js";
import { openViewer } from "./viewer.js";

const PAGE = 60;

export async function render(main, [name], { me, crumbs }) {
  crumbs(h("a", { href: "#/" }, "datasets"), name);
  const info = await api.get(`/datasets/${encodeURIComponent(name)}`);
  const state = { view: new URLSearchParams(location.search).get("view") || "", offset: 0, fields: new Set() };
  const approved = Object.entries(info.fields).filter(([, f]) => !f.run_status || f.run_status === "approved");
  approved.slice(0, 2).forEach(([field]) => state.fields.add(field));

  const viewInput = h("input.view", {
    placeholder: "view: tags=a,b; ids=1,2; has=FIELD; FIELD.label=car; FIELD.confidence>=0.5",
    value: state.view,
    "aria-label": "view expression",
  });
  const viewError = h("span.error");
  const grid = h("div.grid", { id: "grid" });
  const pager = h("div.pager");
  const count = h("span.dim");
  const toggles = h(
    "div.toggles",
    {},
    approved.length ? "Fields:" : "No label field yet.",
    approved.map(([field, f]) =>
      h(
        "label",
        { title: fieldState(f) },
        h("input", {
          type: "checkbox",
          checked: state.fields.has(field),
          onchange: (event) => {
            event.target.checked ? state.fields.add(field) : state.fields.delete(field);
            load();
          },
        }),
        field,
      ),
    ),
  );
  const runs = h("div.runs");
  const download = approved.length
    ? h(
        "div.toggles",
        {},
        "Download:",
        approved.flatMap(([field]) => [
          h("a", { href: `/api/v1/datasets/${encodeURIComponent(name)}/export?field=${encodeURIComponent(field)}&format=coco`, download: "" }, `${field} (COCO)`),
          h("a", { href: `/api/v1/datasets/${encodeURIComponent(name)}/export?field=${encodeURIComponent(field)}&format=label-studio`, download: "" }, `${field} (Label Studio)`),
          h("a", { href: `/api/v1/datasets/${encodeURIComponent(name)}/export?field=${encodeURIComponent(field)}&format=cvat`, download: "" }, `${field} (CVAT)`),
        ]),
      )
    : null;
  const canEdit = me.role !== "viewer";
  clear(
    main,
    h(
      "div.split",
      {},
      h(
        "section.main",
        {},
        h("div.titlebar", {}, h("h1", {}, name), count, h("span.grow"), h("a.button", { href: `#/datasets/${encodeURIComponent(name)}/embeddings` }, "Embeddings")),
        h(
          "form.filter",
          {
            onsubmit: (event) => {
              event.preventDefault();
              state.view = viewInput.value.trim();
              state.offset = 0;
              load();
            },
          },
          viewInput,
          h("button", { type: "submit" }, "Filter"),
          viewError,
        ),
        toggles,
        grid,
        pager,
        download,
      ),
      h(
        "aside.side",
        {},
        h("div.titlebar", {}, h("h2", {}, "Runs"), canEdit
          ? h(
              "a.button.primary",
              {
                href: `#/datasets/${encodeURIComponent(name)}/new-run`,
                title: "label the samples of the current filter",
                onclick: () => sessionStorage.setItem("verilabel:view", state.view),
              },
              "New run",
            )
          : null),
        runs,
      ),
    ),
  );
  const stopRuns = runsPanel(runs, name);

  async function load() {
    viewError.textContent = "";
    let page;
    try {
      page = await api.get(`/datasets/${encodeURIComponent(name)}/samples`, {
        view: state.view,
        fields: [...state.fields].join(","),
        limit: PAGE,
        offset: state.offset,
      });
    } catch (failure) {
      if (failure.field) return (viewError.textContent = failure.message);
      throw failure;
    }
    count.textContent = `${plural(page.total, "sample")}${state.view ? " match" : ""}`;
    clear(
      grid,
      page.samples.map((sample) => {
        const labels = Object.values(sample.labels)
          .flat()
          .map((label) => (label.mask ? { ...label, maskUrl: `/api/v1/datasets/${encodeURIComponent(name)}/labels/${label.id}/mask` } : label));
        const tile = h(
          "figure.tile",
          { tabIndex: 0, dataset: { sample: sample.id }, onclick: () => openViewer(sample, labels), onkeydown: (e) => e.key === "Enter" && openViewer(sample, labels) },
          sample.unreadable ? h("div.unreadable", {}, "unreadable") : labelledImage(media.thumbnail(sample.id), labels, { alt: sample.name }),
          h("figcaption", {}, sample.name, labels.length ? h("span.dim", {}, ` · ${labels.length}`) : null),
        );
        return tile;
      }),
    );
    if (!page.samples.length) grid.append(h("p.dim", {}, "No sample matches."));
    pagerButtons(pager, page.total, state.offset, PAGE, (offset) => {
      state.offset = offset;
      load();
    });
  }
  await load();
  return () => stopRuns();
}

// `total`: the count, or (``known`` false) a lower bound that says whether a next page exists.
export function pagerButtons(pager, total, offset, size, go, known = true) {
  const last = Math.max(0, Math.ceil(total / size) - 1);
  const current = Math.floor(offset / size);
  clear(
    pager,
    h("button", { disabled: current === 0, onclick: () => go(Math.max(0, offset - size)) }, "‹ previous"),
    h("span.dim", {}, total ? `page ${current + 1}` + (known ? ` of ${last + 1}` : "") : ""),
    h("button", { disabled: current >= last, onclick: () => go(offset + size) }, "next ›"),
  );
}

export { colour };
