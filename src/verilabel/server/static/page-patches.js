// The patches view: one tile per label (its box with a margin), sorted by confidence or grouped by class, filtered
// like the review; click, shift-click and drag select; promote, undo or tag the selection.

import { api, media } from "./api.js";
import { h, clear, plural, toast } from "./dom.js";
import { colour } from "./overlay.js";
import { BINS, rangeSlider } from "./histogram.js";
import { pagerButtons } from "./page-dataset.js";
import { promptDialog } from "./dialogs.js";

const PAGE = 120;

export async function render(main, [id], { me, crumbs }) {
  const info = await api.get(`/runs/${encodeURIComponent(id)}`);
  crumbs(
    h("a", { href: "#/" }, "datasets"),
    h("a", { href: `#/datasets/${encodeURIComponent(info.dataset)}` }, info.dataset),
    h("a", { href: `#/runs/${info.id}` }, info.name),
    "patches",
  );
  const canEdit = me.role !== "viewer";
  const state = { approval: false, lo: 0, hi: BINS, classes: new Set(), sort: "-confidence", offset: 0, selected: new Set(), anchor: null };
  let labels = [];
  const grid = h("div.patches", { id: "patches" });
  const pager = h("div.pager");
  const actions = h("div.actions");
  const classPick = h("select", { "aria-label": "class", onchange: () => ((state.classes = classPick.value ? new Set([classPick.value]) : new Set()), reset()) });
  const sortPick = h(
    "select",
    { "aria-label": "order", onchange: () => ((state.sort = sortPick.value), reset()) },
    h("option", { value: "-confidence" }, "most confident first"),
    h("option", { value: "confidence" }, "least confident first"),
    h("option", { value: "sample" }, "by sample"),
  );
  const approvalPick = h(
    "select",
    { "aria-label": "set", onchange: () => ((state.approval = approvalPick.value === "approval"), setup()) },
    h("option", { value: "review" }, "review set"),
    h("option", { value: "approval" }, "approval set"),
  );
  const sliderBox = h("div.slider-box.compact");
  clear(main, h("div.titlebar", {}, h("h1", {}, `${info.name}: patches`), h("span.grow"), actions), h("div.toolbar", {}, approvalPick, classPick, sortPick, sliderBox), grid, pager);

  const filter = () => ({
    min_confidence: state.lo > 0 ? state.lo / BINS : undefined,
    below: state.hi < BINS ? state.hi / BINS : undefined,
    classes: state.classes.size ? [...state.classes] : undefined,
  });

  async function setup() {
    const histogram = await api.get(`/runs/${info.id}/histogram`, { approval: state.approval });
    clear(classPick, h("option", { value: "" }, "every class"), Object.keys(histogram.classes).map((c) => h("option", { value: c }, c)));
    clear(sliderBox, rangeSlider(histogram, state.lo, state.hi, () => state.classes, (lo, hi) => {
      state.lo = lo;
      state.hi = hi;
      reset();
    }));
    reset();
  }

  function reset() {
    state.offset = 0;
    state.selected.clear();
    load();
  }

  let dragging = false;
  window.addEventListener("mouseup", () => (dragging = false));

  async function load() {
    labels = await api.get(`/runs/${info.id}/labels`, { ...filter(), approval: state.approval, sort: state.sort, limit: PAGE + 1, offset: state.offset });
    const more = labels.length > PAGE;
    labels = labels.slice(0, PAGE);
    clear(
      grid,
      labels.map((label, index) =>
        h(
          "figure.patch",
          {
            dataset: { label: label.id, index },
            className: `patch${state.selected.has(label.id) ? " selected" : ""}`,
            onmousedown: (event) => {
              event.preventDefault();
              dragging = true;
              if (event.shiftKey && state.anchor !== null) selectRange(state.anchor, index);
              else toggle(label.id, index);
            },
            onmouseenter: () => dragging && select(label.id),
          },
          h("img", { src: media.patch(info.id, label.id), alt: label.label, loading: "lazy", draggable: false }),
          h("figcaption", {}, h("span.swatch", { style: { background: colour(label.label) } }), label.label, label.confidence === null ? "" : ` ${label.confidence.toFixed(2)}`),
        ),
      ),
    );
    if (!labels.length) grid.append(h("p.dim", {}, "No label in this range."));
    pagerButtons(pager, state.offset + labels.length + (more ? 1 : 0), state.offset, PAGE, (offset) => {
      state.offset = offset;
      load();
    }, false);
    drawActions();
  }

  function select(labelId) {
    state.selected.add(labelId);
    grid.querySelector(`[data-label="${labelId}"]`)?.classList.add("selected");
    drawActions();
  }

  function toggle(labelId, index) {
    state.anchor = index;
    if (state.selected.has(labelId)) {
      state.selected.delete(labelId);
      grid.querySelector(`[data-label="${labelId}"]`)?.classList.remove("selected");
      dragging = false;
      drawActions();
    } else select(labelId);
  }

  function selectRange(from, to) {
    const [a, b] = from < to ? [from, to] : [to, from];
    labels.slice(a, b + 1).forEach((label) => select(label.id));
  }

  function drawActions() {
    if (!canEdit) return clear(actions, h("span.dim", {}, plural(state.selected.size, "label") + " selected"));
    const n = state.selected.size;
    clear(
      actions,
      h("span.dim", {}, `${plural(n, "label")} selected`),
      state.approval
        ? h("button", { disabled: !n, onclick: () => move("undo") }, "Undo selection")
        : h("button.primary", { disabled: !n, onclick: () => move("promote") }, "Promote selection"),
      h("button", { disabled: !n, onclick: tag }, "Tag…"),
    );
  }

  async function move(action) {
    const result = await api.post(`/runs/${info.id}/${action}`, { label_ids: [...state.selected] });
    toast(`${action === "promote" ? "promoted" : "returned"} ${plural(result.promoted ?? result.undone, "label")}`);
    state.selected.clear();
    load();
  }

  async function tag() {
    const name = await promptDialog("Tag labels", "Tag the selected labels as:", "needs-fix");
    if (!name) return;
    const result = await api.post(`/runs/${info.id}/tag`, { tags: [name], filter: { label_ids: [...state.selected] } });
    toast(`tagged ${plural(result.tagged, "label")} ${name}`);
  }

  await setup();
}
