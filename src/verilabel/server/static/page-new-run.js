// A new run: task, method, model (with what the catalogue says of it), classes, confidence, target, field, name,
// workers. Errors appear next to the field they concern, with the CLI's words.

import { api } from "./api.js";
import { h, clear, plural } from "./dom.js";

export async function render(main, [dataset], { crumbs }) {
  crumbs(h("a", { href: "#/" }, "datasets"), h("a", { href: `#/datasets/${encodeURIComponent(dataset)}` }, dataset), "new run");
  const [models, info] = await Promise.all([api.get("/models", { vocabulary: true }), api.get(`/datasets/${encodeURIComponent(dataset)}`)]);
  const form = h("form.new-run", { novalidate: true });
  const fields = {};
  const errors = {};

  function row(name, label, control, hint) {
    fields[name] = control;
    errors[name] = h("span.error", { id: `${name}-error`, role: "alert" });
    return h("div.row", {}, h("label", { for: name }, label), h("div", {}, control, hint ? h("small.dim", {}, hint) : null, errors[name]));
  }

  const task = h("select", { id: "task" }, ["detection", "segmentation", "classification", "keypoints"].map((t) => h("option", { value: t }, t)));
  const method = h(
    "select",
    { id: "method" },
    h("option", { value: "one" }, "one model"),
    h("option", { value: "two" }, "a detector, then SAM"),
    h("option", { value: "field" }, "masks for an existing field's boxes"),
  );
  const model = h("select", { id: "model" });
  const segmenter = h("select", { id: "segmenter" });
  const sourceField = h("select", { id: "source_field" }, Object.keys(info.fields).map((f) => h("option", { value: f }, f)));
  const card = h("div.model-card");
  const classes = h("input", { id: "classes", placeholder: "cat, dog (free text for zero-shot models)", list: "vocabulary" });
  const vocabulary = h("datalist", { id: "vocabulary" });
  const aliases = h("input", { id: "aliases", placeholder: "vehicle=car,truck; dog=dog,puppy" });
  const negatives = h("input", { id: "negatives", placeholder: "toy dog, statue (zero-shot look-alikes)" });
  const minConfidence = h("input", { id: "min_confidence", type: "number", min: 0, max: 1, step: 0.01, placeholder: "model default" });
  // the dataset page's filter, when the form was opened from it
  const target = h("input", { id: "view", placeholder: "all samples, or a view: tags=a; has=FIELD", value: sessionStorage.getItem("verilabel:view") || "" });
  sessionStorage.removeItem("verilabel:view");
  const field = h("input", { id: "field", placeholder: "the new label field", required: true });
  const name = h("input", { id: "name", placeholder: "named after the field" });
  const workers = h("input", { id: "workers", type: "number", min: 1, max: 64, value: 1 });
  const runtime = h("select", { id: "runtime" }, [
    h("option", { value: "auto" }, "auto: ONNX Runtime on a CPU where the model exports, else torch"),
    h("option", { value: "torch" }, "torch"),
    h("option", { value: "onnx" }, "ONNX Runtime (CPU)"),
  ]);
  const submit = h("button.primary", { type: "submit" }, "Start run");
  const general = h("p.error", { role: "alert" });

  const chosen = () => models.find((m) => m.name === model.value);
  function fillModels() {
    const wanted = method.value === "one" ? task.value : "detection";
    const detectors = models.filter((m) => m.tasks.includes(wanted) && !m.prompted);
    clear(model, detectors.map((m) => h("option", { value: m.name }, `${m.name}${m.available ? "" : " (not here yet)"}`)));
    clear(segmenter, models.filter((m) => m.prompted).map((m) => h("option", { value: m.name }, `${m.name}${m.available ? "" : " (not here yet)"}`)));
    showModel();
  }
  function showModel() {
    const m = chosen();
    if (!m) return clear(card);
    const stars = (n) => "★".repeat(n) + "☆".repeat(3 - n);
    clear(
      card,
      h("p", {}, h("b", {}, m.name), ` · ${m.family} ${m.version} · ${m.licence}`),
      h("p.dim", {}, m.description || ""),
      h("p", {}, `${m.zero_shot ? "zero-shot: name any classes" : `fixed vocabulary of ${plural(m.vocabulary_size, "class", "classes")}`} · speed ${stars(m.speed)} · accuracy ${stars(m.accuracy)}`),
      (m.runtimes || []).includes("onnx") ? h("p.dim", {}, "runs on ONNX Runtime on a CPU (auto), on torch on a GPU") : null,
      m.available ? h("p.ok", {}, "available here") : h("p.warn", {}, `missing: ${m.missing}`),
    );
    clear(vocabulary, (m.vocabulary || []).map((v) => h("option", { value: v })));
    classes.placeholder = m.zero_shot ? "cat, dog (what to look for)" : "all of its classes, or some: person, car";
  }
  task.addEventListener("change", fillModels);
  method.addEventListener("change", () => {
    for (const el of [segmenterRow, sourceRow]) el.hidden = true;
    if (method.value === "two") segmenterRow.hidden = false;
    if (method.value === "field") sourceRow.hidden = false;
    modelRow.hidden = method.value === "field";
    fillModels();
  });
  model.addEventListener("change", showModel);

  const modelRow = row("model", "Model", h("div", {}, model, card));
  const segmenterRow = row("segmenter", "Segmenter", segmenter);
  const sourceRow = row("source_field", "Boxes from", sourceField);
  segmenterRow.hidden = sourceRow.hidden = true;
  const methodRow = row("method", "Method", method, "segmentation only");
  form.append(
    h("h1", {}, `New run on ${dataset}`),
    row("task", "Task", task),
    methodRow,
    modelRow,
    segmenterRow,
    sourceRow,
    row("classes", "Classes", h("div", {}, classes, vocabulary), "comma-separated"),
    row("aliases", "Aliases", aliases, "DATASET_CLASS=MODEL_CLASS[,...]; separated by ; (synonyms merge into one box)"),
    row("negatives", "Negatives", negatives, "comma-separated; asked for, never kept: a box they outscore is dropped"),
    row("min_confidence", "Minimum confidence", minConfidence, "labels below are not kept; generate low, accept high in review"),
    row("view", "Samples", target, "leave empty for every sample"),
    row("field", "Field", field),
    row("name", "Run name", name),
    row("workers", "Workers", workers),
    row("runtime", "Runtime", runtime, "what runs the network; auto is fastest on a CPU"),
    h("div.row", {}, h("span"), h("div", {}, submit, general)),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    Object.values(errors).forEach((e) => (e.textContent = ""));
    general.textContent = "";
    let modelName = model.value;
    if (task.value === "segmentation" && method.value === "two") modelName = `${model.value}+${segmenter.value}`;
    if (task.value === "segmentation" && method.value === "field") modelName = `field:${sourceField.value}+${segmenter.value}`;
    const body = {
      task: task.value,
      model: modelName,
      field: field.value.trim(),
      classes: classes.value.split(",").map((c) => c.trim()).filter(Boolean),
      aliases: aliases.value.split(";").map((a) => a.trim()).filter(Boolean),
      negatives: negatives.value.split(",").map((n) => n.trim()).filter(Boolean),
      min_confidence: minConfidence.value === "" ? null : Number(minConfidence.value),
      view: target.value.trim() || null,
      name: name.value.trim() || null,
      workers: Number(workers.value) || 1,
      runtime: runtime.value,
    };
    submit.disabled = true;
    try {
      const run = await api.post(`/datasets/${encodeURIComponent(dataset)}/runs`, body);
      location.hash = `#/runs/${run.id}`;
    } catch (failure) {
      const key = { target: "view" }[failure.field] || failure.field;
      (errors[key] || general).textContent = failure.message;
      fields[key]?.focus?.();
    } finally {
      submit.disabled = false;
    }
  });
  task.addEventListener("change", () => (methodRow.hidden = task.value !== "segmentation"));
  methodRow.hidden = true;
  fillModels();
  clear(main, form);
  field.focus();
}
