// Labels drawn over an image on a canvas: boxes with class and confidence, polygons, keypoints. Geometry is
// relative to the image ([0, 1] from the top-left), so the same labels draw on a thumbnail or the full image.

// A categorical palette (distinct at a glance); a class keeps its colour everywhere (hash of its name).
const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#aec7e8",
];
const colours = new Map();

export function colour(label) {
  if (!colours.has(label)) {
    let hash = 2166136261; // FNV-1a
    for (const char of label) hash = Math.imul(hash ^ char.charCodeAt(0), 16777619) >>> 0;
    colours.set(label, PALETTE[hash % PALETTE.length]);
  }
  return colours.get(label);
}

// Mask images by URL, shared by every canvas that draws them; `onload` redraws whoever asked.
const masks = new Map();

function maskImage(url, redraw) {
  let entry = masks.get(url);
  if (!entry) {
    const image = new Image();
    entry = { image, waiting: new Set() };
    image.onload = () => entry.waiting.forEach((fn) => fn());
    image.src = url;
    masks.set(url, entry);
  }
  if (!entry.image.complete) entry.waiting.add(redraw);
  return entry.image.complete && entry.image.naturalWidth ? entry.image : null;
}

function drawMask(g, image, colour, x, y, w, h) {
  const tint = document.createElement("canvas");
  tint.width = image.naturalWidth;
  tint.height = image.naturalHeight;
  const t = tint.getContext("2d");
  t.drawImage(image, 0, 0);
  t.globalCompositeOperation = "source-in";
  t.fillStyle = colour;
  t.fillRect(0, 0, tint.width, tint.height);
  g.globalAlpha = 0.45;
  g.drawImage(tint, x, y, w, h);
  g.globalAlpha = 1;
}

// Fit the canvas to the image as displayed, then draw. `selected`: ids of labels drawn thicker.
export function draw(canvas, image, labels, { selected = new Set(), text = true, redraw = null } = {}) {
  const width = image.clientWidth;
  const height = image.clientHeight;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  g.font = "11px system-ui, sans-serif";
  g.textBaseline = "top";
  for (const label of labels) {
    const c = colour(label.label);
    const thick = selected.has(label.id);
    g.strokeStyle = c;
    g.fillStyle = c;
    g.lineWidth = thick ? 3 : 1.5;
    if (label.polygon) {
      g.globalAlpha = 0.25;
      for (const ring of label.polygon) {
        g.beginPath();
        ring.forEach(([x, y], i) => (i ? g.lineTo(x * width, y * height) : g.moveTo(x * width, y * height)));
        g.closePath();
        g.fill();
      }
      g.globalAlpha = 1;
    }
    if (label.box && label.maskUrl) {
      const [x, y, w, h] = label.box;
      const mask = maskImage(label.maskUrl, redraw || (() => {}));
      if (mask) drawMask(g, mask, c, x * width, y * height, w * width, h * height);
    }
    if (label.box) {
      const [x, y, w, h] = label.box;
      g.strokeRect(x * width, y * height, w * width, h * height);
      if (text) {
        const caption = label.confidence === null ? label.label : `${label.label} ${label.confidence.toFixed(2)}`;
        const tw = g.measureText(caption).width + 6;
        const ty = y * height > 14 ? y * height - 14 : y * height;
        g.fillRect(x * width, ty, tw, 14);
        g.fillStyle = "#000";
        g.fillText(caption, x * width + 3, ty + 1);
      }
    } else if (text) {
      // a classification: its class across the top
      const caption = label.confidence === null ? label.label : `${label.label} ${label.confidence.toFixed(2)}`;
      g.fillRect(0, 0, g.measureText(caption).width + 8, 16);
      g.fillStyle = "#000";
      g.fillText(caption, 4, 2);
    }
    if (label.keypoints) {
      g.fillStyle = c;
      for (const [x, y] of label.keypoints.points) {
        g.beginPath();
        g.arc(x * width, y * height, 2.5, 0, 2 * Math.PI);
        g.fill();
      }
    }
  }
}

// An image with its labels drawn over it, redrawn when the image loads or changes size.
export function labelledImage(src, labels, options = {}) {
  const frame = document.createElement("div");
  frame.className = "labelled";
  const image = new Image();
  image.src = src;
  image.alt = options.alt || "";
  image.decoding = "async";
  image.loading = options.eager ? "eager" : "lazy";
  const canvas = document.createElement("canvas");
  frame.append(image, canvas);
  const redraw = () => image.complete && image.naturalWidth && draw(canvas, image, frame.labels, { ...options, redraw });
  frame.labels = labels;
  frame.redraw = (newLabels, newOptions) => {
    if (newLabels) frame.labels = newLabels;
    if (newOptions) Object.assign(options, newOptions);
    redraw();
  };
  image.addEventListener("load", () => {
    frame.classList.add("loaded");
    redraw();
  });
  new ResizeObserver(redraw).observe(image);
  return frame;
}
