// A sample at full size over the page: its labels drawn and listed, zoom with the wheel, pan by dragging.

import { media } from "./api.js";
import { h } from "./dom.js";
import { labelledImage, colour } from "./overlay.js";

export function openViewer(sample, labels) {
  const picture = labelledImage(media.image(sample.id), labels, { eager: true, alt: sample.name });
  const stage = h("div.stage", {}, picture);
  let scale = 1;
  let x = 0;
  let y = 0;
  const apply = () => (picture.style.transform = `translate(${x}px, ${y}px) scale(${scale})`);
  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    scale = Math.min(8, Math.max(1, scale * (event.deltaY < 0 ? 1.2 : 1 / 1.2)));
    if (scale === 1) x = y = 0;
    apply();
  });
  let drag = null;
  stage.addEventListener("pointerdown", (event) => (drag = { x: event.clientX - x, y: event.clientY - y }));
  stage.addEventListener("pointermove", (event) => {
    if (!drag || scale === 1) return;
    x = event.clientX - drag.x;
    y = event.clientY - drag.y;
    apply();
  });
  window.addEventListener("pointerup", () => (drag = null), { once: false });
  const close = () => {
    overlay.remove();
    window.removeEventListener("keydown", onKey, true);
  };
  const onKey = (event) => {
    if (event.key === "Escape") {
      event.stopPropagation();
      close();
    }
  };
  window.addEventListener("keydown", onKey, true);
  const overlay = h(
    "div.modal",
    { role: "dialog", "aria-label": sample.name, onclick: (event) => event.target === overlay && close() },
    h(
      "div.viewer",
      {},
      stage,
      h(
        "aside",
        {},
        h("h2", {}, sample.name),
        h("p.dim", {}, sample.width ? `${sample.width} × ${sample.height}` : "", sample.tags?.length ? ` · tags: ${sample.tags.join(", ")}` : ""),
        h(
          "ul.labels",
          {},
          labels.map((label) =>
            h(
              "li",
              {},
              h("span.swatch", { style: { background: colour(label.label) } }),
              label.label,
              h("span.dim", {}, label.confidence === null ? "" : ` ${label.confidence.toFixed(3)}`),
              label.tags?.length ? h("span.tag", {}, label.tags.join(", ")) : null,
            ),
          ),
        ),
        h("p.dim", {}, "Wheel to zoom, drag to pan, Esc to close."),
        h("button", { onclick: close }, "Close"),
      ),
    ),
  );
  document.body.append(overlay);
  return close;
}
