// Embeddings as a 2-D scatter on a canvas: fitted to the points, coloured by class (the overlays' colours), wheel
// zoom and drag pan, a lasso (shift-drag, or lasso mode) that selects the points inside it, a hovered point's
// preview, and a legend whose classes show or hide. Points live in typed arrays grouped by class, so a frame is one
// pass over them; past 10k points, squares are written straight into the canvas's pixels (200k points draw in
// tens of milliseconds, with no GPU).

import { h, clear } from "./dom.js";
import { colour } from "./overlay.js";

export const NONE = "#6b7280"; // points without a class
const PAD = 24; // CSS pixels between the points' extent and the canvas's edge
const HOVER = 10; // how near (CSS pixels) the pointer must be to a point to preview it
export const DENSE = 10000; // up to this many points, circles (promoted ones ringed); more, squares in the pixels

// `data`: the API's embedding (x, y, classes, class_names, confidence, promoted). `describe(i)`: a point's preview,
// {src, text}. `onselect()`: after the selection changed.
export function scatter(data, { describe, onselect = () => {} } = {}) {
  const canvas = h("canvas", { "aria-label": "embeddings scatter plot", role: "img" });
  const tipImage = h("img", { alt: "" });
  const tipText = h("div.tip-text");
  const tip = h("div.scatter-tip", { hidden: true }, tipImage, tipText);
  const element = h("div.scatter", {}, canvas, tip);
  const legend = h("ul.legend", { "aria-label": "classes" });

  let n = 0;
  let xs, ys, cls, conf, promoted, hidden, selected, order, starts;
  let names = [];
  let counts = [];
  const off = new Set(); // classes switched off in the legend (-1: the points without a class)
  let minConfidence = 0;
  let extent = { x0: 0, x1: 1, y0: 0, y1: 1 };
  const view = { k: 1, ox: 0, oy: 0 }; // zoom, and pan in CSS pixels
  let lasso = null; // {points: [[x, y], …], add}
  let lassoMode = false;
  let drag = null;
  let hover = -1;
  let frame = 0;

  function load(fresh) {
    n = fresh.x.length;
    xs = Float32Array.from(fresh.x);
    ys = Float32Array.from(fresh.y);
    cls = Int32Array.from(fresh.classes || new Array(n).fill(-1));
    conf = fresh.confidence ? Float32Array.from(fresh.confidence, (c) => (c === null ? NaN : c)) : new Float32Array(n).fill(NaN);
    promoted = fresh.promoted ? Uint8Array.from(fresh.promoted, Number) : new Uint8Array(n);
    names = fresh.class_names || [];
    selected = selected && selected.length === n ? selected : new Uint8Array(n);
    hidden = new Uint8Array(n);
    // counting sort by class: one fill colour per run of points (slot 0: no class)
    const slots = names.length + 1;
    counts = new Array(slots).fill(0);
    for (let i = 0; i < n; i++) counts[cls[i] + 1]++;
    starts = new Uint32Array(slots + 1);
    for (let c = 0; c < slots; c++) starts[c + 1] = starts[c] + counts[c];
    const next = starts.slice(0, slots);
    order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[next[cls[i] + 1]++] = i;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      if (xs[i] < x0) x0 = xs[i];
      if (xs[i] > x1) x1 = xs[i];
      if (ys[i] < y0) y0 = ys[i];
      if (ys[i] > y1) y1 = ys[i];
    }
    extent = n ? { x0, x1, y0, y1 } : { x0: 0, x1: 1, y0: 0, y1: 1 };
    filter();
  }

  // A point is shown when its class is on and its confidence is at least the minimum (no confidence: shown);
  // hiding a point unselects it, so an action applies to what is seen.
  function filter() {
    for (let i = 0; i < n; i++) {
      const out = off.has(cls[i]) || conf[i] < minConfidence;
      hidden[i] = out ? 1 : 0;
      if (out) selected[i] = 0;
    }
    drawLegend();
  }

  // From data to CSS pixels: the extent fitted with PAD on each side (y up), then zoomed and panned.
  function transform() {
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    const dx = Math.max(extent.x1 - extent.x0, 1e-9);
    const dy = Math.max(extent.y1 - extent.y0, 1e-9);
    const s = Math.max(1e-9, Math.min((w - 2 * PAD) / dx, (hgt - 2 * PAD) / dy)) * view.k;
    const cx = (extent.x0 + extent.x1) / 2;
    const cy = (extent.y0 + extent.y1) / 2;
    return { w, h: hgt, ax: s, bx: w / 2 + view.ox - cx * s, ay: -s, by: hgt / 2 + view.oy + cy * s };
  }

  function radius() {
    const base = n <= 1000 ? 4 : n <= 10000 ? 2.5 : n <= 50000 ? 1.5 : 1;
    return Math.min(8, base * Math.sqrt(Math.max(1, view.k)));
  }

  function draw() {
    frame = 0;
    const t = transform();
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(t.w * ratio) || canvas.height !== Math.round(t.h * ratio)) {
      canvas.width = Math.max(1, Math.round(t.w * ratio));
      canvas.height = Math.max(1, Math.round(t.h * ratio));
    }
    const g = canvas.getContext("2d");
    const r = radius();
    // few points: circles in one path per class; many: squares written straight into the pixels
    if (n <= DENSE) drawCircles(g, t, ratio, r);
    else drawSquares(g, t, ratio, r);
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.globalAlpha = 1;
    if (hover >= 0 && !hidden[hover]) {
      g.strokeStyle = "#fff";
      g.lineWidth = 2;
      g.beginPath();
      g.arc(t.ax * xs[hover] + t.bx, t.ay * ys[hover] + t.by, r + 5, 0, 2 * Math.PI);
      g.stroke();
    }
    if (lasso && lasso.points.length > 1) {
      g.beginPath();
      lasso.points.forEach(([px, py], i) => (i ? g.lineTo(px, py) : g.moveTo(px, py)));
      g.closePath();
      g.fillStyle = "rgba(59, 130, 246, 0.12)";
      g.fill();
      g.setLineDash([5, 4]);
      g.strokeStyle = "#93c5fd";
      g.lineWidth = 1.5;
      g.stroke();
      g.setLineDash([]);
    }
  }

  // Points' opacity: faded while something is selected; lighter when they are many, so density shows.
  const fade = () => (selectedTotal ? 0.35 : n > 20000 ? 0.6 : 0.9);
  // The passes over the points: all of them; or, with a selection, the others then the selected ones on top.
  const passes = () => (selectedTotal ? [0, 1] : [-1]);
  const inPass = (i, pass) => !hidden[i] && (pass < 0 || selected[i] === pass);

  function drawCircles(g, { w, h: hgt, ax, bx, ay, by }, ratio, r) {
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const path = (c, pass, radius) => {
      g.beginPath();
      for (let j = starts[c]; j < starts[c + 1]; j++) {
        const i = order[j];
        if (!inPass(i, pass)) continue;
        const px = ax * xs[i] + bx;
        const py = ay * ys[i] + by;
        if (px < -radius || py < -radius || px > w + radius || py > hgt + radius) continue;
        g.moveTo(px + radius, py);
        g.arc(px, py, radius, 0, 2 * Math.PI);
      }
    };
    for (const pass of passes()) {
      for (let c = 0; c < starts.length - 1; c++) {
        if (off.has(c - 1) || starts[c] === starts[c + 1]) continue;
        if (pass === 1) {
          g.globalAlpha = 1;
          g.fillStyle = "#fff";
          path(c, pass, r + 1.5);
          g.fill();
        }
        g.globalAlpha = pass === 1 ? 1 : fade();
        g.fillStyle = c === 0 ? NONE : colour(names[c - 1]);
        path(c, pass, r);
        g.fill();
      }
    }
    // promoted: a ring, a little apart from the point
    g.globalAlpha = 0.9;
    g.strokeStyle = "#fff";
    g.lineWidth = 1.25;
    g.beginPath();
    for (let i = 0; i < n; i++) {
      if (!promoted[i] || hidden[i]) continue;
      const px = ax * xs[i] + bx;
      const py = ay * ys[i] + by;
      if (px < -10 || py < -10 || px > w + 10 || py > hgt + 10) continue;
      g.moveTo(px + r + 2.5, py);
      g.arc(px, py, r + 2.5, 0, 2 * Math.PI);
    }
    g.stroke();
  }

  // Squares blended ("over") straight into an ImageData in device pixels: no path, no per-point canvas call. Too
  // many to ring: promoted points are a lighter shade of their class's colour; with a selection, the other points
  // are dimmed towards the background and the selected ones drawn opaque on top.
  let image = null;
  function drawSquares(g, { ax, bx, ay, by }, ratio, r) {
    const W = canvas.width;
    const H = canvas.height;
    if (!image || image.width !== W || image.height !== H) image = g.createImageData(W, H);
    else image.data.fill(0);
    const data = image.data;
    const side = Math.max(1, Math.round(2 * r * ratio));
    for (const pass of passes()) {
      const alpha = pass === 1 ? 1 : pass === 0 ? 0.5 : fade();
      for (let c = 0; c < starts.length - 1; c++) {
        if (off.has(c - 1) || starts[c] === starts[c + 1]) continue;
        const plain = rgb(c === 0 ? NONE : colour(names[c - 1]));
        const shades = [plain, mix(plain, [255, 255, 255], 0.5)].map((shade) => (pass === 0 ? mix(shade, BACKGROUND, 0.65) : shade));
        for (let j = starts[c]; j < starts[c + 1]; j++) {
          const i = order[j];
          if (!inPass(i, pass)) continue;
          const [R, G, B] = shades[promoted[i]];
          square(data, W, H, (ax * xs[i] + bx) * ratio, (ay * ys[i] + by) * ratio, side, R, G, B, alpha);
        }
      }
    }
    g.putImageData(image, 0, 0);
  }

  let selectedTotal = 0;
  function recount() {
    selectedTotal = 0;
    for (let i = 0; i < n; i++) selectedTotal += selected[i];
  }

  function redraw() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function local(event) {
    const box = canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  function nearest(px, py) {
    const { ax, bx, ay, by } = transform();
    let best = -1;
    let bestDistance = HOVER * HOVER;
    for (let i = 0; i < n; i++) {
      if (hidden[i]) continue;
      const dx = ax * xs[i] + bx - px;
      const dy = ay * ys[i] + by - py;
      const d = dx * dx + dy * dy;
      if (d < bestDistance) {
        bestDistance = d;
        best = i;
      }
    }
    return best;
  }

  // The shown points inside the polygon (screen coordinates): even-odd ray casting, after the polygon's box.
  function inside(polygon) {
    const { ax, bx, ay, by } = transform();
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [px, py] of polygon) {
      x0 = Math.min(x0, px);
      x1 = Math.max(x1, px);
      y0 = Math.min(y0, py);
      y1 = Math.max(y1, py);
    }
    const found = [];
    for (let i = 0; i < n; i++) {
      if (hidden[i]) continue;
      const px = ax * xs[i] + bx;
      const py = ay * ys[i] + by;
      if (px < x0 || px > x1 || py < y0 || py > y1) continue;
      let within = false;
      for (let a = 0, b = polygon.length - 1; a < polygon.length; b = a++) {
        const [xa, ya] = polygon[a];
        const [xb, yb] = polygon[b];
        if (ya > py !== yb > py && px < ((xb - xa) * (py - ya)) / (yb - ya) + xa) within = !within;
      }
      if (within) found.push(i);
    }
    return found;
  }

  function showTip(i, px, py) {
    if (i < 0 || !describe) {
      tip.hidden = true;
      return;
    }
    const { src, text } = describe(i);
    if (src && tipImage.getAttribute("src") !== src) tipImage.src = src;
    tipImage.hidden = !src;
    tipText.textContent = text;
    tip.hidden = false;
    // beside the pointer, inside the plot
    const left = px + 16 + tip.offsetWidth > canvas.clientWidth ? px - 16 - tip.offsetWidth : px + 16;
    const top = Math.min(Math.max(0, py - tip.offsetHeight / 2), canvas.clientHeight - tip.offsetHeight);
    Object.assign(tip.style, { left: `${Math.max(0, left)}px`, top: `${Math.max(0, top)}px` });
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    canvas.setPointerCapture(event.pointerId);
    const [px, py] = local(event);
    if (event.shiftKey || lassoMode) lasso = { points: [[px, py]], add: event.ctrlKey || event.metaKey };
    else drag = { px, py, ox: view.ox, oy: view.oy, moved: false };
    hover = -1;
    tip.hidden = true;
    event.preventDefault();
  });
  canvas.addEventListener("pointermove", (event) => {
    const [px, py] = local(event);
    if (lasso) {
      const [lx, ly] = lasso.points[lasso.points.length - 1];
      if (Math.abs(px - lx) + Math.abs(py - ly) >= 2) lasso.points.push([px, py]);
    } else if (drag) {
      if (Math.abs(px - drag.px) + Math.abs(py - drag.py) > 3) drag.moved = true;
      view.ox = drag.ox + px - drag.px;
      view.oy = drag.oy + py - drag.py;
    } else {
      const found = nearest(px, py);
      showTip(found, px, py);
      if (found === hover) return;
      hover = found;
      canvas.style.cursor = found >= 0 ? "pointer" : "";
    }
    redraw();
  });
  canvas.addEventListener("pointerup", (event) => {
    if (lasso) {
      const { points: polygon, add } = lasso;
      lasso = null;
      if (polygon.length >= 3) select(inside(polygon), add);
    } else if (drag && !drag.moved) {
      // a click: that point alone, or (ctrl / ⌘) added to or taken from the selection
      const [px, py] = local(event);
      const found = nearest(px, py);
      if (found >= 0 && (event.ctrlKey || event.metaKey)) {
        selected[found] ^= 1;
        recount();
        onselect();
      } else if (found >= 0) select([found], false);
    }
    drag = null;
    redraw();
  });
  canvas.addEventListener("pointerleave", () => {
    if (hover >= 0) {
      hover = -1;
      redraw();
    }
    tip.hidden = true;
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const [px, py] = local(event);
    const k = Math.min(500, Math.max(0.5, view.k * Math.exp(-event.deltaY * 0.0015)));
    const { w, h: hgt } = transform();
    // the point under the pointer stays there
    view.ox = px - w / 2 - ((px - w / 2 - view.ox) * k) / view.k;
    view.oy = py - hgt / 2 - ((py - hgt / 2 - view.oy) * k) / view.k;
    view.k = k;
    redraw();
  }, { passive: false });
  canvas.addEventListener("dblclick", () => fit());

  function select(indices, add) {
    if (!add) selected.fill(0);
    for (const i of indices) selected[i] = 1;
    recount();
    onselect();
    redraw();
  }

  function fit() {
    Object.assign(view, { k: 1, ox: 0, oy: 0 });
    redraw();
  }

  function drawLegend() {
    const shown = new Array(names.length + 1).fill(0);
    for (let i = 0; i < n; i++) if (!(conf[i] < minConfidence)) shown[cls[i] + 1]++;
    const rows = counts
      .map((count, slot) => ({ slot, count, shown: shown[slot], name: slot ? names[slot - 1] : "no class" }))
      .filter((row) => row.count)
      .sort((a, b) => b.count - a.count || a.name.localeCompare(b.name));
    clear(
      legend,
      rows.map((row) =>
        h(
          "li",
          {},
          h(
            "button.legend-item",
            {
              className: `legend-item${off.has(row.slot - 1) ? " off" : ""}`,
              "aria-pressed": String(!off.has(row.slot - 1)),
              title: "click: show or hide · shift-click: only this class",
              dataset: { class: row.name },
              onclick: (event) => toggleClass(row.slot - 1, event.shiftKey),
            },
            h("span.swatch", { style: { background: row.slot ? colour(row.name) : NONE } }),
            h("span.name", {}, row.name),
            h("span.count", {}, row.shown === row.count ? String(row.count) : `${row.shown} of ${row.count}`),
          ),
        ),
      ),
    );
  }

  function toggleClass(c, only) {
    if (only) {
      const isolate = off.size === 0 || off.has(c); // else: c alone is shown already, show every class again
      off.clear();
      if (isolate) for (let other = -1; other < names.length; other++) if (other !== c) off.add(other);
    } else if (off.has(c)) off.delete(c);
    else off.add(c);
    filter();
    recount();
    onselect();
    redraw();
  }

  const resize = new ResizeObserver(() => redraw());
  resize.observe(canvas);
  load(data);
  recount();

  const plot = {
    element,
    legend,
    canvas,
    // new values for the same points (colours by another field, promoted after a promote); the view stays
    update(fresh) {
      load(fresh);
      recount();
      redraw();
    },
    selection: () => {
      const out = [];
      for (let i = 0; i < n; i++) if (selected[i]) out.push(i);
      return out;
    },
    clearSelection: () => select([], false),
    setMinConfidence(value) {
      minConfidence = value;
      filter();
      recount();
      onselect();
      redraw();
    },
    setLasso(on) {
      lassoMode = on;
      canvas.classList.toggle("lasso", on);
    },
    fit,
    shown() {
      let count = 0;
      for (let i = 0; i < n; i++) count += hidden[i] ? 0 : 1;
      return count;
    },
    // a point's position in CSS pixels from the canvas's top-left, and whether it is shown (for the tests)
    project(i) {
      const { ax, bx, ay, by } = transform();
      return [ax * xs[i] + bx, ay * ys[i] + by, !hidden[i]];
    },
    isPromoted: (i) => promoted[i] === 1,
    stop: () => resize.disconnect(),
  };
  canvas.plot = plot; // for the console and the tests
  return plot;
}

const BACKGROUND = [11, 13, 17]; // .scatter's background

const mix = (a, b, t) => a.map((v, k) => Math.round(v * (1 - t) + b[k] * t));

// "#rrggbb" as [r, g, b]
const rgbs = new Map();
function rgb(hex) {
  if (!rgbs.has(hex)) rgbs.set(hex, [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16)));
  return rgbs.get(hex);
}

// A side x side square centred on (cx, cy) in colour (R, G, B) at opacity a, blended over the pixels there
// (ImageData holds unpremultiplied RGBA).
function square(data, W, H, cx, cy, side, R, G, B, a) {
  blend(data, W, H, Math.round(cx - side / 2), Math.round(cy - side / 2), side, side, R, G, B, a);
}

function blend(data, W, H, left, top, width, height, R, G, B, a) {
  const x0 = Math.max(0, left);
  const x1 = Math.min(W, left + width);
  const y1 = Math.min(H, top + height);
  for (let y = Math.max(0, top); y < y1; y++) {
    for (let o = (y * W + x0) * 4, end = (y * W + x1) * 4; o < end; o += 4) {
      if (a >= 1) {
        data[o] = R;
        data[o + 1] = G;
        data[o + 2] = B;
        data[o + 3] = 255;
        continue;
      }
      const keep = (data[o + 3] / 255) * (1 - a);
      const out = a + keep;
      data[o] = (R * a + data[o] * keep) / out;
      data[o + 1] = (G * a + data[o + 1] * keep) / out;
      data[o + 2] = (B * a + data[o + 2] * keep) / out;
      data[o + 3] = out * 255;
    }
  }
}
