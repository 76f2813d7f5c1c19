// The runs of a dataset with live progress: a bar, the rate and the ETA, refreshed while any run is active.

import { api } from "./api.js";
import { h, clear, plural, duration } from "./dom.js";

export function progressBar(run) {
  const { done, failed, total } = run.progress;
  const share = total ? ((done + failed) / total) * 100 : 0;
  return h(
    "div.progress",
    { title: `${done} done, ${failed} failed of ${total}` },
    h("div.bar", { style: { width: `${share.toFixed(1)}%` } }),
    failed ? h("div.bar.failed", { style: { width: `${((failed / (total || 1)) * 100).toFixed(1)}%` } }) : null,
  );
}

export function statusBadge(run) {
  const status = run.stalled ? "stalled" : run.status;
  return h(`span.badge.${status}`, {}, status.replace("_", " "));
}

export function speed(run) {
  const p = run.progress;
  if (p.rate > 0) return `${p.rate.toFixed(1)} img/s` + (p.eta_seconds ? `, ETA ${duration(p.eta_seconds)}` : "");
  if (p.average_rate) return `average ${p.average_rate.toFixed(1)} img/s`;
  return "";
}

export function labelsText(run) {
  if (run.status === "approved") return `${plural(run.labels, "label")} approved, ${run.discarded} discarded`;
  if (run.status === "in_review") return `${plural(run.labels, "label")} in review, ${run.promoted} promoted`;
  return plural(run.labels, "label");
}

// Returns a stop function. Polls every 2 s while a run is active (one request for the whole list).
export function runsPanel(container, dataset) {
  let timer = null;
  let stopped = false;
  async function refresh() {
    const runs = await api.get(`/datasets/${encodeURIComponent(dataset)}/runs`);
    if (stopped) return;
    clear(
      container,
      runs.length
        ? runs
            .slice()
            .reverse()
            .map((run) =>
              h(
                "a.run-row",
                { href: `#/runs/${run.id}`, dataset: { run: run.name } },
                h("div.line", {}, h("b", {}, run.name), statusBadge(run)),
                h("div.line.dim", {}, `${run.model} → ${run.field}`),
                progressBar(run),
                h("div.line.dim", {}, `${run.progress.done + run.progress.failed}/${run.progress.total}`, " · ", speed(run) || labelsText(run)),
                run.error ? h("div.line.error", {}, run.error) : null,
              ),
            )
        : h("p.dim", {}, "No run yet."),
    );
    if (runs.some((run) => run.active)) timer = setTimeout(refresh, 2000);
  }
  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
