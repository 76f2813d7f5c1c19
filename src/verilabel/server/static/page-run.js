// A run: configuration, live progress, failures, timings and history; in review, the review panel: a confidence
// range over the histogram, the class table, the grid of samples with the matching labels, and promote, undo,
// tag and approve, from buttons or the keyboard.

import { api, media } from "./api.js";
import { h, clear, plural, toast, debounce } from "./dom.js";
import { labelledImage, colour } from "./overlay.js";
import { BINS, classTable, rangeSlider } from "./histogram.js";
import { progressBar, statusBadge, speed, labelsText } from "./runs-panel.js";
import { pagerButtons } from "./page-dataset.js";
import { openViewer } from "./viewer.js";
import { confirmDialog, promptDialog, helpOverlay } from "./dialogs.js";

const PAGE = 40;
export const KEYS = [
  ["← → ↑ ↓ / h j k l", "move between samples"],
  ["space / x", "select or unselect the sample"],
  ["p", "promote the selection, or the whole filter when nothing is selected"],
  ["u", "undo: return the selection (or the filter) to review, on the approval tab"],
  ["t", "tag the selection's labels (or the filter's)"],
  ["a", "select every sample of the page"],
  ["n / b", "next / previous page"],
  ["r / v", "review set / approval set"],
  ["enter", "open the sample"],
  ["?", "this help"],
];

export async function render(main, [id], ctx) {
  let info = await api.get(`/runs/${encodeURIComponent(id)}`);
  ctx.crumbs(h("a", { href: "#/" }, "datasets"), h("a", { href: `#/datasets/${encodeURIComponent(info.dataset)}` }, info.dataset), info.name);
  const canEdit = ctx.me.role !== "viewer";
  const stops = [];
  const head = h("div");
  const body = h("div");
  clear(main, head, body);

  function drawHead() {
    clear(
      head,
      h(
        "div.titlebar",
        {},
        h("h1", {}, info.name),
        statusBadge(info),
        h("span.grow"),
        info.status === "in_review" ? h("a.button", { href: `#/runs/${info.id}/patches` }, "Patches") : null,
        info.status === "in_review" ? h("a.button", { href: `#/runs/${info.id}/embeddings` }, "Embeddings") : null,
        canEdit && info.active ? h("button", { onclick: () => act("cancel") }, "Cancel") : null,
        canEdit && info.resumable ? h("button", { onclick: () => act("resume") }, "Resume") : null,
        canEdit && info.status !== "approved" ? h("button.danger", { onclick: remove }, "Delete") : null,
      ),
      h("p.dim", {}, `${info.task} with ${info.model} → field ${info.field}`, info.min_confidence !== null ? `, min confidence ${info.min_confidence}` : ""),
      h("div.run-progress", {}, progressBar(info), h("span", {}, `${info.progress.done + info.progress.failed}/${info.progress.total} samples · ${speed(info) || labelsText(info)}`)),
      info.error ? h("p.error", { role: "alert" }, info.error) : null,
      runtimeLine(info.model_info || {}),
      details(info),
    );
  }

  async function act(what) {
    try {
      info = await api.post(`/runs/${info.id}/${what}`, {});
      toast(what === "cancel" ? "cancel requested: the workers stop after their batch" : "resumed");
      reload();
    } catch (failure) {
      toast(failure.message, "error");
    }
  }

  async function remove() {
    const ok = await confirmDialog(
      `Delete run ${info.name}?`,
      `Its ${plural(info.labels, "generated label")} and masks are deleted and field ${info.field} becomes free. This cannot be undone.`,
      "Delete",
    );
    if (!ok) return;
    await api.del(`/runs/${info.id}`);
    location.hash = `#/datasets/${encodeURIComponent(info.dataset)}`;
  }

  function reload() {
    stops.splice(0).forEach((stop) => stop());
    render(main, [id], ctx).then((stop) => stop && stops.push(stop));
  }

  drawHead();
  if (info.active) {
    // live: Server-Sent Events, polling as the fallback
    const source = new EventSource(`/api/v1/runs/${info.id}/stream`);
    source.addEventListener("run", (event) => {
      info = JSON.parse(event.data);
      drawHead();
      if (!info.active) {
        source.close();
        reload();
      }
    });
    source.onerror = () => {
      source.close();
      const timer = setInterval(async () => {
        info = await api.get(`/runs/${info.id}`);
        drawHead();
        if (!info.active) {
          clearInterval(timer);
          reload();
        }
      }, 2000);
      stops.push(() => clearInterval(timer));
    };
    stops.push(() => source.close());
    clear(body, h("p.dim", {}, "Labels appear for review when the run is done."));
  } else if (info.status === "in_review") {
    stops.push(await reviewPanel(body, info, canEdit, reload));
  }
  return () => stops.splice(0).forEach((stop) => stop());
}

// What ran the model, and why when `auto` did not take ONNX Runtime (a fallback is a warning).
function runtimeLine(model) {
  if (!model.runtime) return null;
  const where = [model.device, model.runtime_export ? `export ${model.runtime_export}` : null].filter(Boolean).join(", ");
  return h(
    model.runtime_warning ? "p.warning" : "p.dim",
    { id: "runtime" },
    `runtime: ${model.runtime}${where ? ` on ${where}` : ""}${model.runtime_reason ? ` (${model.runtime_reason})` : ""}`,
  );
}

function details(info) {
  const history = h("ul.history", {}, h("li.dim", {}, "loading…"));
  api.get(`/runs/${info.id}/history`).then((events) =>
    clear(
      history,
      events.map((e) =>
        h("li", {}, h("time", { datetime: e.at }, new Date(e.at).toLocaleString()), " ", h("b", {}, e.actor), " ", describe(e)),
      ),
    ),
  );
  const timings = Object.entries(info.timings || {}).filter(([, v]) => typeof v === "number");
  return h(
    "details.more",
    {},
    h("summary", {}, "Failures, timings, history"),
    h("div.columns", {},
      h("div", {}, h("h3", {}, `Failures (${info.progress.failed})`), info.failures.length ? h("ul.failures", {}, info.failures.map((f) => h("li", {}, `sample ${f.sample_id}: ${f.error}`))) : h("p.dim", {}, "none")),
      h("div", {}, h("h3", {}, "Timings (s)"), h("table.compact", {}, timings.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td.num", {}, String(v)))))),
      h("div", {}, h("h3", {}, "History"), history),
    ),
  );
}

function describe(event) {
  const d = event.details || {};
  switch (event.action) {
    case "promote":
    case "undo":
      return `${event.action === "promote" ? "promoted" : "returned to review"} ${plural(d.labels, "label")}${filterText(d.filter)}`;
    case "approve":
      return `approved ${d.approved} labels into ${d.field}, discarded ${d.discarded}`;
    case "tag":
    case "untag":
      return `${event.action}ged ${plural(d.labels, "label")} ${d.tags.join(", ")}`;
    case "create":
      return `created the run (${d.model} → ${d.field})`;
    default:
      return `${event.action}d the run`;
  }
}

function filterText(filter) {
  if (!filter || !Object.keys(filter).length) return "";
  const parts = [];
  if (filter.min_confidence !== undefined) parts.push(`confidence ≥ ${filter.min_confidence}`);
  if (filter.below !== undefined) parts.push(`< ${filter.below}`);
  if (filter.max_confidence !== undefined) parts.push(`≤ ${filter.max_confidence}`);
  if (filter.classes) parts.push(filter.classes.join(", "));
  if (filter.samples) parts.push(plural(filter.samples, "sample"));
  if (filter.labels) parts.push(plural(filter.labels, "selected label"));
  return ` (${parts.join("; ")})`;
}

// A generative model (Florence-2, Qwen-VL) gives no score: say what its confidence is before anyone filters by it.
function scoreNote(info) {
  if (info.score !== "token-probability") return null;
  return h(
    "p.score-note",
    { role: "note" },
    h("strong", {}, "Confidence is a proxy. "),
    `${info.model} gives no score of its own: each label's confidence is the probability it gave the words and `,
    "coordinates naming that object. It ranks labels; it is not a calibrated probability.",
  );
}

async function reviewPanel(container, info, canEdit, reload) {
  const state = { approval: false, lo: 0, hi: BINS, classes: new Set(), offset: 0, selected: new Set(), focus: 0 };
  let histogram = null;
  let page = { samples: [], total: 0 };
  const tabs = h("div.tabs", { role: "tablist" });
  const sliderBox = h("div.slider-box");
  const table = h("table.classes");
  const actions = h("div.actions");
  const grid = h("div.grid.review-grid", { id: "grid" });
  const pager = h("div.pager");
  const summary = h("span.dim");
  clear(
    container,
    tabs,
    h("div.review", {}, h("section.filters", {}, scoreNote(info), sliderBox, table), h("section.main", {}, h("div.titlebar", {}, summary, h("span.grow"), actions), grid, pager)),
  );

  const filter = () => ({
    min_confidence: state.lo > 0 ? state.lo / BINS : undefined,
    below: state.hi < BINS ? state.hi / BINS : undefined,
    classes: state.classes.size ? [...state.classes] : undefined,
  });

  function drawTabs() {
    clear(
      tabs,
      [
        [false, `Review set`],
        [true, `Approval set`],
      ].map(([approval, text]) =>
        h("button.tab", { role: "tab", "aria-selected": String(state.approval === approval), onclick: () => switchTo(approval) }, text),
      ),
    );
  }

  async function switchTo(approval) {
    Object.assign(state, { approval, offset: 0, selected: new Set(), lo: 0, hi: BINS, classes: new Set() });
    drawTabs();
    await refresh();
  }

  function drawTable() {
    const rows = classTable(histogram, state.lo, state.hi);
    const matching = rows.filter((r) => !state.classes.size || state.classes.has(r.label)).reduce((a, r) => a + r.instances, 0);
    clear(
      table,
      h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "class"), h("th.num", {}, "instances"), h("th.num", {}, "mean conf."))),
      h(
        "tbody",
        {},
        rows.map((r) =>
          h(
            "tr",
            { className: state.classes.size && !state.classes.has(r.label) ? "off" : "" },
            h("td", {}, h("input", {
              type: "checkbox",
              checked: state.classes.has(r.label),
              "aria-label": `only ${r.label}`,
              onchange: (event) => {
                event.target.checked ? state.classes.add(r.label) : state.classes.delete(r.label);
                state.offset = 0;
                drawTable();
                slider.repaint();
                loadGrid();
              },
            })),
            h("td", {}, h("span.swatch", { style: { background: colour(r.label) } }), r.label),
            h("td.num", {}, r.instances === r.total ? String(r.total) : `${r.instances} of ${r.total}`),
            h("td.num", {}, r.mean === null ? "–" : r.mean.toFixed(3)),
          ),
        ),
      ),
    );
    drawActions(matching);
  }

  function drawActions(matching) {
    if (!canEdit) return clear(actions);
    const selected = state.selected.size;
    const scope = selected ? plural(selected, "selected sample") : `${plural(matching, "label")} in the filter`;
    clear(
      actions,
      state.approval
        ? h("button", { onclick: () => move("undo") }, `Undo ${scope}`)
        : h("button.primary", { onclick: () => move("promote"), disabled: !matching && !selected }, `Promote ${scope}`),
      h("button", { onclick: tag }, "Tag…"),
      h("button.approve", { onclick: approve }, "Approve…"),
    );
  }

  let slider = null;
  async function refresh() {
    histogram = await api.get(`/runs/${info.id}/histogram`, { approval: state.approval });
    slider = rangeSlider(histogram, state.lo, state.hi, () => state.classes, (lo, hi) => {
      state.lo = lo;
      state.hi = hi;
      state.offset = 0;
      drawTable();
      loadGridSoon();
    });
    clear(sliderBox, slider);
    drawTable();
    await loadGrid();
  }

  async function loadGrid() {
    const asked = { ...filter(), approval: state.approval, limit: PAGE, offset: state.offset };
    page = await api.get(`/runs/${info.id}/samples`, asked);
    for (const sample of page.samples) {
      sample.labels = sample.labels.map((label) => (label.mask ? { ...label, maskUrl: `/api/v1/runs/${info.id}/labels/${label.id}/mask` } : label));
    }
    state.selected = new Set([...state.selected].filter((id) => page.samples.some((s) => s.id === id)));
    state.focus = Math.min(state.focus, Math.max(0, page.samples.length - 1));
    summary.textContent = page.samples.length
      ? `samples ${state.offset + 1}–${state.offset + page.samples.length}${page.more ? "" : ` of ${state.offset + page.samples.length}`} with matching labels`
      : "";
    clear(
      grid,
      page.samples.map((sample, index) =>
        h(
          "figure.tile",
          {
            tabIndex: -1,
            dataset: { sample: sample.id, index },
            className: `tile${state.selected.has(sample.id) ? " selected" : ""}`,
            onclick: (event) => {
              state.focus = index;
              if (event.detail > 1) return openViewer(sample, sample.labels);
              toggle(sample.id);
            },
          },
          labelledImage(media.thumbnail(sample.id), sample.labels, { alt: sample.name }),
          h("figcaption", {}, sample.name, h("span.dim", {}, ` · ${sample.labels.length}`)),
        ),
      ),
    );
    if (!page.samples.length) grid.append(h("p.dim", {}, state.approval ? "Nothing promoted in this range." : "No label in this range."));
    // pages without a count of every matching sample (at 1M labels that count is the slow part)
    pagerButtons(pager, state.offset + page.samples.length + (page.more ? 1 : 0), state.offset, PAGE, (offset) => {
      state.offset = offset;
      loadGrid();
    }, false);
    focusTile();
    drawTable();
  }
  const loadGridSoon = debounce(loadGrid, 200);

  function toggle(sampleId) {
    state.selected.has(sampleId) ? state.selected.delete(sampleId) : state.selected.add(sampleId);
    grid.querySelector(`[data-sample="${sampleId}"]`)?.classList.toggle("selected", state.selected.has(sampleId));
    drawTable();
  }

  function focusTile() {
    const tiles = grid.querySelectorAll(".tile");
    tiles.forEach((tile, i) => tile.classList.toggle("focus", i === state.focus));
    tiles[state.focus]?.scrollIntoView({ block: "nearest" });
  }

  function scoped() {
    const body = filter();
    if (state.selected.size) body.sample_ids = [...state.selected];
    return body;
  }

  let busy = false;
  async function move(action) {
    busy = true;
    try {
      const result = await api.post(`/runs/${info.id}/${action}`, scoped());
      const n = result.promoted ?? result.undone;
      toast(action === "promote" ? `promoted ${plural(n, "label")}` : `returned ${plural(n, "label")} to review`);
      state.selected.clear();
      const fresh = await api.get(`/runs/${info.id}`);
      known = `${fresh.labels}/${fresh.promoted}`; // our own change: no second refresh when its event arrives
      await refresh();
    } catch (failure) {
      toast(failure.message, "error");
    } finally {
      busy = false;
    }
  }

  async function tag() {
    const name = await promptDialog("Tag labels", `Tag the ${state.selected.size ? "selected samples'" : "filter's"} labels as:`, "needs-fix");
    if (!name) return;
    const result = await api.post(`/runs/${info.id}/tag`, { tags: [name], filter: scoped() });
    toast(`tagged ${plural(result.tagged, "label")} ${name}`);
  }

  async function approve() {
    const fresh = await api.get(`/runs/${info.id}`);
    const promoted = fresh.promoted;
    const discarded = fresh.labels - promoted;
    const text = promoted
      ? `${plural(promoted, "promoted label")} will be written to field ${fresh.field}; the ${plural(discarded, "label")} left in review will be discarded. This is final: the run closes.`
      : `Nothing is promoted: approving writes no label to field ${fresh.field} and discards all ${plural(discarded, "label")}. This is final.`;
    if (!(await confirmDialog(`Approve ${fresh.name}?`, text, promoted ? "Approve" : "Approve with nothing"))) return;
    try {
      const result = await api.post(`/runs/${info.id}/approve`, { allow_empty: !promoted });
      toast(`approved ${plural(result.approved, "label")} into ${result.field}`);
      reload();
    } catch (failure) {
      toast(failure.message, "error");
    }
  }

  function onKey(event) {
    if (event.target.closest("input, textarea, select, .modal")) return;
    const tiles = page.samples.length;
    const columns = Math.max(1, Math.round(grid.clientWidth / (grid.querySelector(".tile")?.offsetWidth || 200)));
    const moves = { ArrowRight: 1, l: 1, ArrowLeft: -1, h: -1, ArrowDown: columns, j: columns, ArrowUp: -columns, k: -columns };
    if (event.key in moves) {
      state.focus = Math.min(tiles - 1, Math.max(0, state.focus + moves[event.key]));
      focusTile();
    } else if (event.key === " " || event.key === "x") {
      const sample = page.samples[state.focus];
      if (sample) toggle(sample.id);
    } else if (event.key === "Enter") {
      const sample = page.samples[state.focus];
      if (sample) openViewer(sample, sample.labels);
    } else if (event.key === "a") {
      page.samples.forEach((s) => state.selected.add(s.id));
      grid.querySelectorAll(".tile").forEach((t) => t.classList.add("selected"));
      drawTable();
    } else if (event.key === "p" && canEdit && !state.approval) move("promote");
    else if (event.key === "u" && canEdit && state.approval) move("undo");
    else if (event.key === "t" && canEdit) tag();
    else if (event.key === "n" && page.more) {
      state.offset += PAGE;
      loadGrid();
    } else if (event.key === "b" && state.offset > 0) {
      state.offset -= PAGE;
      loadGrid();
    } else if (event.key === "r") switchTo(false);
    else if (event.key === "v") switchTo(true);
    else if (event.key === "?") helpOverlay(KEYS);
    else return;
    event.preventDefault();
  }
  // Another reviewer's promote or undo changes the counts: the panel follows (Server-Sent Events, else polling).
  let known = `${info.labels}/${info.promoted}`;
  const follow = new EventSource(`/api/v1/runs/${info.id}/stream?review=true`);
  follow.addEventListener("run", async (event) => {
    const fresh = JSON.parse(event.data);
    if (fresh.status !== "in_review") return reload();
    const counts = `${fresh.labels}/${fresh.promoted}`;
    if (counts !== known) {
      known = counts;
      if (!busy) await refresh();
    }
  });
  const onHelp = () => helpOverlay(KEYS);
  window.addEventListener("keydown", onKey);
  window.addEventListener("verilabel:help", onHelp);
  drawTabs();
  await refresh();
  return () => {
    follow.close();
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("verilabel:help", onHelp);
  };
}
