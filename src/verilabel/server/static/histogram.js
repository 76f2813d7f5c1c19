// The confidence range of the review: a histogram of the labels (per class, 100 bins) under a two-handle slider.
// The class table for any range comes from the bins' prefix sums, at every frame, with no request; the server's
// exact filter (min_confidence <= c < below) agrees with the bins at their edges.

import { h } from "./dom.js";
import { colour } from "./overlay.js";

export const BINS = 100;

// Per class: instances in [lo, hi) bins, total, and mean confidence of those instances.
export function classTable(histogram, lo, hi) {
  const whole = lo === 0 && hi === BINS;
  return Object.entries(histogram.classes).map(([label, c]) => {
    let instances = 0;
    let sum = 0;
    for (let i = lo; i < hi; i++) {
      instances += c.counts[i];
      sum += c.sums[i];
    }
    const scored = instances;
    if (whole) instances += c.unscored;
    const total = c.counts.reduce((a, b) => a + b, 0) + c.unscored;
    return { label, instances, total, mean: scored ? sum / scored : null };
  });
}

// The slider: returns its element; `onchange(lo, hi)` fires on every movement (in bins).
export function rangeSlider(histogram, lo, hi, classes, onchange) {
  const canvas = h("canvas.histogram", { width: 600, height: 70, "aria-hidden": "true" });
  const low = h("input.low", { type: "range", min: 0, max: BINS, step: 1, value: lo, "aria-label": "minimum confidence" });
  const high = h("input.high", { type: "range", min: 0, max: BINS, step: 1, value: hi, "aria-label": "maximum confidence" });
  const readout = h("span.readout");
  const paint = () => {
    const a = Number(low.value);
    const b = Number(high.value);
    readout.textContent = `confidence ${(a / BINS).toFixed(2)} – ${(b / BINS).toFixed(2)}`;
    drawHistogram(canvas, histogram, a, b, classes());
  };
  const move = (which) => () => {
    if (Number(low.value) > Number(high.value)) (which === "low" ? (high.value = low.value) : (low.value = high.value));
    paint();
    onchange(Number(low.value), Number(high.value));
  };
  low.addEventListener("input", move("low"));
  high.addEventListener("input", move("high"));
  const element = h("div.slider", {}, canvas, h("div.handles", {}, low, high), readout);
  element.set = (a, b) => {
    low.value = a;
    high.value = b;
    paint();
  };
  element.repaint = paint;
  requestAnimationFrame(paint);
  return element;
}

function drawHistogram(canvas, histogram, lo, hi, selected) {
  const width = canvas.clientWidth || canvas.width;
  const height = canvas.clientHeight || canvas.height;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const classes = Object.entries(histogram.classes).filter(([label]) => !selected.size || selected.has(label));
  const stacks = new Array(BINS).fill(0);
  for (const [, c] of classes) c.counts.forEach((n, i) => (stacks[i] += n));
  const peak = Math.max(1, ...stacks);
  const bar = width / BINS;
  const base = new Array(BINS).fill(0);
  for (const [label, c] of classes) {
    g.fillStyle = colour(label);
    c.counts.forEach((n, i) => {
      if (!n) return;
      const barHeight = (n / peak) * (height - 4);
      g.globalAlpha = i >= lo && i < hi ? 0.9 : 0.18;
      g.fillRect(i * bar, height - base[i] - barHeight, Math.max(1, bar - 1), barHeight);
      base[i] += barHeight;
    });
  }
  g.globalAlpha = 1;
}
