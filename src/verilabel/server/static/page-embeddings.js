// Embeddings pages: a run's patches (each label's crop) or a dataset's samples as points, computed by
// `verilabel dataset embed` or from here (a background process the page follows). Pick an embedding, colour it (a
// run's classes, or a field's), lasso points, look at them, then promote, undo or tag those labels, or tag those
// samples.

import { api, media } from "./api.js";
import { h, clear, plural, toast } from "./dom.js";
import { scatter, DENSE } from "./embeddings.js";
import { promptDialog, helpOverlay } from "./dialogs.js";

const PREVIEWS = 60;
const PREVIEW_SIZE = 128;
const POLL = 2000; // ms between looks at a map being computed
const OFFLINE_MODEL = "efficientnet-lite0-imagenet";
export const KEYS = [
  ["shift + drag", "lasso: select the points inside"],
  ["ctrl / ⌘ + shift + drag", "lasso: add to the selection"],
  ["click / ctrl + click", "select a point / add it or take it out"],
  ["l", "lasso mode on or off (a plain drag then draws the lasso)"],
  ["drag / wheel", "pan / zoom"],
  ["f / double-click", "fit every point"],
  ["c / esc", "clear the selection"],
  ["p / u / t", "promote / undo / tag the selected labels (a run's patches)"],
  ["?", "this help"],
];

// #/runs/RUN/embeddings: the run's labels as points, coloured by class, promoted ones ringed.
export async function runPage(main, [id], { me, crumbs }) {
  const info = await api.get(`/runs/${encodeURIComponent(id)}`);
  crumbs(
    h("a", { href: "#/" }, "datasets"),
    h("a", { href: `#/datasets/${encodeURIComponent(info.dataset)}` }, info.dataset),
    h("a", { href: `#/runs/${info.id}` }, info.name),
    "embeddings",
  );
  const list = (await api.get(`/datasets/${encodeURIComponent(info.dataset)}/embeddings`, { run: info.name })).filter((e) => e.kind === "patches");
  return explorer(main, {
    title: `${info.name}: embeddings`,
    links: info.status === "in_review" ? h("a.button", { href: `#/runs/${info.id}/patches` }, "Patches") : null,
    dataset: info.dataset,
    run: info,
    list,
    canEdit: me.role !== "viewer",
    empty:
      info.task === "classification"
        ? emptyState(
            `${info.name} labels whole images`,
            h("span", {}, "Its labels have no box to crop: embed the samples instead, and find them on ", h("a", { href: `#/datasets/${encodeURIComponent(info.dataset)}/embeddings` }, "the dataset's embeddings"), "."),
            `verilabel dataset embed ${info.dataset} --model clip-vit-base-patch32`,
          )
        : emptyState(
            `No embeddings of ${info.name}'s patches yet`,
            "Each label's crop becomes a point: similar crops land together, so a cluster of wrong labels can be lassoed and left out at once.",
            `verilabel dataset embed ${info.dataset} --patches ${info.name} --model clip-vit-base-patch32`,
            me.role !== "viewer" ? computeForm(info.dataset, info.name) : null,
          ),
  });
}

// #/datasets/NAME/embeddings: the samples as points, coloured by a field's labels.
export async function datasetPage(main, [name], { me, crumbs }) {
  crumbs(h("a", { href: "#/" }, "datasets"), h("a", { href: `#/datasets/${encodeURIComponent(name)}` }, name), "embeddings");
  const [info, all] = await Promise.all([api.get(`/datasets/${encodeURIComponent(name)}`), api.get(`/datasets/${encodeURIComponent(name)}/embeddings`)]);
  const fields = Object.entries(info.fields)
    .filter(([, f]) => !f.run_status || f.run_status === "approved")
    .map(([field]) => field);
  return explorer(main, {
    title: `${name}: embeddings`,
    dataset: name,
    run: null,
    list: all.filter((e) => e.kind === "samples"),
    fields,
    canEdit: me.role !== "viewer",
    empty: emptyState(
      `No embeddings of ${name}'s samples yet`,
      "Each sample becomes a point: similar images land together, to find near duplicates, outliers and the samples a class is missing.",
      `verilabel dataset embed ${name} --model clip-vit-base-patch32`,
      me.role !== "viewer" ? computeForm(name, null) : null,
    ),
  });
}

function emptyState(title, text, command, form = null) {
  return h(
    "div.empty.embed-empty",
    {},
    h("h2", {}, title),
    h("p.dim", {}, text),
    h("p", {}, "Compute them with the CLI:"),
    h("pre", {}, h("code", {}, command)),
    h("p.dim", {}, "With no network, ", h("code", {}, `--model ${OFFLINE_MODEL}`), " works offline. Then reload this page."),
    form,
  );
}

// Start a map from the app (editors): the server checks the request, then computes it in a background process.
function computeForm(dataset, run) {
  const model = h("input", { id: "embed-model", list: "embed-models", value: OFFLINE_MODEL, autocomplete: "off", spellcheck: false });
  const models = h("datalist", { id: "embed-models" });
  // the classifiers: CLIP, SigLIP, OpenCLIP and the ImageNet ones embed (the server names the ones that do not)
  api.get("/models", { task: "classification" }).then((rows) =>
    clear(models, rows.filter((m) => m.available !== false && m.embeds !== false).map((m) => h("option", { value: m.name }))),
  );
  const method = h("select", { "aria-label": "projection" }, h("option", { value: "pca" }, "PCA"), h("option", { value: "umap" }, "UMAP"));
  const error = h("p.error", { id: "embed-model-error", role: "alert" });
  const submit = h("button.primary", { type: "submit" }, "Compute");
  return h(
    "form.embed-compute",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        submit.disabled = true;
        try {
          const started = await api.post(`/datasets/${encodeURIComponent(dataset)}/embeddings`, { model: model.value.trim(), patches: run, method: method.value });
          toast(`computing ${started.key} in the background`);
          window.dispatchEvent(new HashChangeEvent("hashchange")); // this page again: it follows the computation
        } catch (failure) {
          error.textContent = failure.message;
          submit.disabled = false;
        }
      },
    },
    h("p", {}, "Or compute them here:"),
    h("div.row", {}, h("label", { for: "embed-model" }, "model"), model, models, method, submit),
    error,
  );
}

async function explorer(main, { title, links = null, dataset, run, list, fields = null, canEdit, empty }) {
  const base = `/datasets/${encodeURIComponent(dataset)}/embeddings`;
  if (!list.length) {
    clear(main, h("div.titlebar", {}, h("h1", {}, title), h("span.grow"), links), empty);
    return null;
  }
  const patches = run !== null;
  // the newest on the map (an interrupted computation's set is listed, not shown first)
  const ready = list.filter((e) => e.ready !== false);
  const newest = [...(ready.length ? ready : list)].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))[0];
  const state = { key: newest.key, field: fields?.[0] || "", min: 0 };
  let data = null;
  let plot = null;

  const picker = h(
    "select",
    { "aria-label": "embedding", onchange: () => ((state.key = picker.value), show()) },
    list.map((e) =>
      h("option", { value: e.key, selected: e.key === state.key }, `${e.key} · ${e.model} · ${e.method} · ${plural(e.points, "point")}${e.ready === false ? " (not on the map yet)" : ""}`),
    ),
  );
  const fieldPick = fields
    ? h(
        "label.pick",
        {},
        "colour by",
        h(
          "select",
          { "aria-label": "colour by field", onchange: (event) => ((state.field = event.target.value), refresh()) },
          h("option", { value: "" }, "nothing"),
          fields.map((field) => h("option", { value: field, selected: field === state.field }, field)),
        ),
      )
    : null;
  const lassoButton = h("button", { "aria-pressed": "false", title: "lasso mode (l): a plain drag draws the lasso", onclick: () => setLasso(lassoButton.getAttribute("aria-pressed") !== "true") }, "Lasso");
  const readout = h("span.readout", {}, "0.00");
  const minPick = patches
    ? h(
        "label.pick",
        {},
        "min confidence",
        h("input", {
          type: "range",
          min: 0,
          max: 1,
          step: 0.01,
          value: 0,
          "aria-label": "minimum confidence",
          oninput: (event) => {
            state.min = Number(event.target.value);
            readout.textContent = state.min.toFixed(2);
            plot?.setMinConfidence(state.min);
          },
        }),
        readout,
      )
    : null;
  const about = h("p.dim.embed-about");
  const stage = h("div.scatter-stage", {}, h("p.loading", {}, "loading…"));
  const legend = h("div.legend-box");
  const count = h("p.selection-count", { id: "selection-count" });
  const actions = h("div.actions.embed-actions");
  const previews = h("div.previews", { id: "previews" });
  const more = h("p.dim");
  clear(
    main,
    h("div.titlebar", {}, h("h1", {}, title), picker, fieldPick, h("span.grow"), links),
    h(
      "div.embed",
      {},
      h(
        "section.embed-main",
        {},
        h(
          "div.toolbar",
          {},
          lassoButton,
          h("button", { title: "fit every point (f)", onclick: () => plot?.fit() }, "Fit"),
          minPick,
          h("span.dim.hint", {}, "shift-drag: lasso · ctrl/⌘+shift: add · drag: pan · wheel: zoom · ? keys"),
        ),
        stage,
        about,
      ),
      h("aside.side.embed-side", {}, h("h3", {}, "Classes"), legend, h("h3", {}, "Selection"), count, actions, previews, more),
    ),
  );

  function setLasso(on) {
    lassoButton.setAttribute("aria-pressed", String(on));
    plot?.setLasso(on);
  }

  const className = (i) => (data.classes[i] >= 0 ? data.class_names[data.classes[i]] : null);
  const confidenceText = (i) => (data.confidence && data.confidence[i] !== null ? ` ${data.confidence[i].toFixed(2)}` : "");
  const src = (i) => (patches ? media.patch(run.id, data.label_ids[i], PREVIEW_SIZE) : media.thumbnail(data.sample_ids[i], PREVIEW_SIZE));
  const caption = (i) => `${className(i) ?? (patches ? "no class" : `sample ${data.sample_ids[i]}`)}${confidenceText(i)}`;
  const promotedText = (i) => (data.promoted?.[i] ? " · promoted" : "");

  async function fetchData() {
    return api.get(`${base}/${encodeURIComponent(state.key)}`, patches ? undefined : { field: state.field });
  }

  // another embedding: a new plot fitted to its points
  let poll = null;
  async function show() {
    clearInterval(poll);
    data = await fetchData();
    plot?.stop();
    plot = null;
    if (data.ready === false || !data.x.length) return notOnMap();
    plot = scatter(data, { describe: (i) => ({ src: src(i), text: caption(i) + promotedText(i) }), onselect: drawSelection });
    plot.setLasso(lassoButton.getAttribute("aria-pressed") === "true");
    if (state.min) plot.setMinConfidence(state.min);
    clear(stage, plot.element);
    clear(legend, plot.legend);
    drawAbout();
    drawSelection();
  }

  // the same points with fresh colours or promoted marks: the view and the selection stay
  async function refresh() {
    if (!plot) return show();
    data = await fetchData();
    plot.update(data);
    drawAbout();
    drawSelection();
  }

  // A map not drawn: being computed (followed until it is ready), stopped by an error, or emptied.
  function notOnMap() {
    clear(legend);
    clear(count);
    clear(actions);
    clear(previews);
    about.textContent = "";
    const command = `verilabel dataset embed ${dataset}${patches ? ` --patches ${run.name}` : ""} --key ${data.key} --model ${data.model}`;
    const box = h("div.empty.embed-empty");
    clear(stage, box);
    if (data.error) {
      const again = h("button.primary", { onclick: () => restart(again) }, "Compute again");
      return clear(
        box,
        h("h2", {}, `${data.key} stopped`),
        h("p.error", { role: "alert" }, data.error),
        h("p.dim", {}, "Once the cause is fixed, computing it again keeps the points already embedded:"),
        h("pre", {}, h("code", {}, command)),
        canEdit ? again : null,
      );
    }
    if (data.ready) {
      return clear(box, h("h2", {}, `${data.key} has no point left`), h("p.dim", {}, `The ${patches ? "labels" : "samples"} it embedded are gone. Compute it again:`), h("pre", {}, h("code", {}, `${command} --overwrite`)));
    }
    const progress = h("p", { id: "embed-progress" }, `${plural(data.points, "point")} embedded so far`);
    clear(
      box,
      h("h2", {}, `${data.key} is being computed`),
      progress,
      h("p.dim", {}, "The map appears here when every point is embedded and projected. If the computation was interrupted, the same command goes on where it stopped:"),
      h("pre", {}, h("code", {}, command)),
    );
    poll = setInterval(async () => {
      const now = (await api.get(base)).find((e) => e.key === state.key);
      if (!now) return clearInterval(poll);
      progress.textContent = `${plural(now.points, "point")} embedded so far`;
      if (now.ready || now.error) show();
    }, POLL);
  }

  async function restart(button) {
    button.disabled = true;
    try {
      await api.post(base, { model: data.model, patches: patches ? run.name : null, key: data.key, method: data.method });
      toast(`computing ${data.key} again in the background`);
      await show();
    } catch (failure) {
      toast(failure.message, "error");
      button.disabled = false;
    }
  }

  function drawAbout() {
    const what = patches ? `each point is one of ${run.name}'s labels (its crop)` : "each point is a sample";
    const ring = patches && data.promoted ? `; a promoted label is ${data.x.length > DENSE ? "a lighter shade of its class's colour" : "ringed in white"}` : "";
    about.textContent = `${plural(data.x.length, "point")} · ${data.model} · ${data.method}: ${what}${ring}.`;
  }

  function drawSelection() {
    const chosen = plot.selection();
    const noun = patches ? ["label", "labels"] : ["sample", "samples"];
    count.textContent = chosen.length
      ? `${plural(chosen.length, ...noun)} selected of ${plot.shown()} shown`
      : "Nothing selected: shift-drag a lasso around points, or click one.";
    drawActions(chosen);
    clear(
      previews,
      chosen.slice(0, PREVIEWS).map((i) =>
        h(
          "figure.preview",
          {
            className: `preview${data.promoted?.[i] ? " promoted" : ""}`,
            dataset: patches ? { label: data.label_ids[i] } : { sample: data.sample_ids[i] },
            title: caption(i) + promotedText(i),
          },
          h("img", { src: src(i), alt: className(i) || "", loading: "lazy", draggable: false }),
          h("figcaption", {}, caption(i)),
        ),
      ),
    );
    more.textContent = chosen.length > PREVIEWS ? `and ${chosen.length - PREVIEWS} more` : "";
  }

  function drawActions(chosen) {
    const clearButton = h("button", { disabled: !chosen.length, onclick: () => plot.clearSelection() }, "Clear");
    if (!canEdit) return clear(actions, clearButton);
    if (!patches) return clear(actions, h("button.primary", { disabled: !chosen.length, onclick: tagSamples }, "Tag samples…"), clearButton);
    if (run.status !== "in_review") return clear(actions, h("span.dim", {}, `The run is ${run.status.replace("_", " ")}: promote and undo work in review.`), clearButton);
    const up = chosen.filter((i) => !data.promoted?.[i]).length;
    const down = chosen.length - up;
    clear(
      actions,
      h("button.primary", { disabled: !up, onclick: () => move("promote"), title: "promote the selected labels (p)" }, `Promote ${up}`),
      h("button", { disabled: !down, onclick: () => move("undo"), title: "return the selected promoted labels to review (u)" }, `Undo ${down}`),
      h("button", { disabled: !chosen.length, onclick: tagLabels, title: "tag the selected labels (t)" }, "Tag…"),
      clearButton,
    );
  }

  let busy = false;
  async function move(action) {
    if (busy || !patches || run.status !== "in_review" || !canEdit) return;
    const ids = plot
      .selection()
      .filter((i) => (action === "promote" ? !data.promoted?.[i] : data.promoted?.[i]))
      .map((i) => data.label_ids[i]);
    if (!ids.length) return;
    busy = true;
    try {
      const result = await api.post(`/runs/${run.id}/${action}`, { label_ids: ids });
      toast(action === "promote" ? `promoted ${plural(result.promoted, "label")}` : `returned ${plural(result.undone, "label")} to review`);
      plot.clearSelection();
      await refresh();
    } catch (failure) {
      toast(failure.message, "error");
    } finally {
      busy = false;
    }
  }

  async function tagLabels() {
    const ids = plot.selection().map((i) => data.label_ids[i]);
    if (!ids.length || !canEdit) return;
    const name = await promptDialog("Tag labels", `Tag the ${plural(ids.length, "selected label")} as:`, "needs-fix");
    if (!name) return;
    const result = await api.post(`/runs/${run.id}/tag`, { tags: [name], filter: { label_ids: ids } });
    toast(`tagged ${plural(result.tagged, "label")} ${name}`);
  }

  async function tagSamples() {
    const ids = plot.selection().map((i) => data.sample_ids[i]);
    if (!ids.length || !canEdit) return;
    const name = await promptDialog("Tag samples", `Tag the ${plural(ids.length, "selected sample")} as:`, "near-duplicate");
    if (!name) return;
    const result = await api.post(`/datasets/${encodeURIComponent(dataset)}/tags`, { tags: [name], sample_ids: ids });
    toast(`tagged ${plural(result.tagged, "sample")} ${name}: the dataset's view tags=${name} shows them`);
  }

  function onKey(event) {
    if (event.target.closest("input:not([type=range]), textarea, select, .modal") || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "l") setLasso(lassoButton.getAttribute("aria-pressed") !== "true");
    else if (event.key === "f") plot?.fit();
    else if (event.key === "c" || event.key === "Escape") plot?.clearSelection();
    else if (event.key === "p" && patches) move("promote");
    else if (event.key === "u" && patches) move("undo");
    else if (event.key === "t") patches ? tagLabels() : tagSamples();
    else if (event.key === "?") helpOverlay(KEYS);
    else return;
    event.preventDefault();
  }
  const onHelp = () => helpOverlay(KEYS);
  window.addEventListener("keydown", onKey);
  window.addEventListener("verilabel:help", onHelp);
  await show();
  return () => {
    clearInterval(poll);
    plot?.stop();
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("verilabel:help", onHelp);
  };
}
