"""YOLO folders (Ultralytics layout): ``images/`` beside ``labels/``, class names in ``data.yaml``."""

from __future__ import annotations

from pathlib import Path

from verilabel.errors import DatasetImportError
from verilabel.formats.shapes import outline
from verilabel.labels import Box, Detection, Polygon


def read_class_names(root: Path) -> list[str]:
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        if (root / name).exists():
            import yaml

            data = yaml.safe_load((root / name).read_text()) or {}
            names = data.get("names")
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names, key=int)]
            if isinstance(names, list):
                return [str(n) for n in names]
            raise DatasetImportError(f"{root / name} has no `names` list or mapping")
    if (root / "classes.txt").exists():
        return [line.strip() for line in (root / "classes.txt").read_text().splitlines() if line.strip()]
    raise DatasetImportError(f"no class names in {root}: add a data.yaml with `names:` or a classes.txt")


def label_file_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder in the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def parse_label_line(line: str, names: list[str], where: str) -> Detection:
    """``cls cx cy w h [conf]`` (a box) or ``cls x1 y1 x2 y2 x3 y3 ... [conf]`` (a polygon), all normalised."""
    fields = line.split()
    try:
        cls_index, values = int(fields[0]), [float(v) for v in fields[1:]]
    except (ValueError, IndexError):
        raise DatasetImportError(f"{where}: cannot read {line!r}") from None
    if not 0 <= cls_index < len(names):
        raise DatasetImportError(f"{where}: class index {cls_index} is outside the {len(names)} names")
    label = names[cls_index]
    if len(values) in (4, 5):
        cx, cy, w, h = values[:4]
        box = Box.from_xyxy_pixels(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 1, 1)
        return Detection(label, box, values[4] if len(values) == 5 else None)
    confidence = None
    if len(values) >= 7 and len(values) % 2 == 1:  # a polygon with a trailing confidence (Ultralytics save_conf)
        values, confidence = values[:-1], values[-1]
    if len(values) >= 6 and len(values) % 2 == 0:
        points = [
            (min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)) for x, y in zip(values[::2], values[1::2], strict=True)
        ]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box = Box.from_xyxy_pixels(min(xs), min(ys), max(xs), max(ys), 1, 1)
        return Detection(label, box, confidence, polygon=Polygon((tuple(points),)))
    raise DatasetImportError(
        f"{where}: expected 4 box values (+ confidence) or >= 3 polygon points, got {len(values)} values"
    )


def read_labels(image: Path, names: list[str]) -> list[Detection]:
    label_file = label_file_for(image)
    if not label_file.exists():
        return []
    return [
        parse_label_line(line, names, f"{label_file}:{n}")
        for n, line in enumerate(label_file.read_text().splitlines(), 1)
        if line.strip()
    ]


def label_line(detection: Detection, class_index: int, *, segments: bool, with_score: bool = False) -> str:
    """One line of a YOLO label file: a box (``cls cx cy w h``) or, for segments, a polygon; ``with_score`` adds
    the confidence at the end (ultralytics' ``save_conf`` prediction format, which its training refuses)."""
    score = [detection.confidence] if with_score and detection.confidence is not None else []
    if segments:
        points = outline(detection)
        if len(points) >= 3:
            values = [v for point in points for v in point] + score
            return " ".join([str(class_index), *(f"{v:.6f}" for v in values)])
    box = detection.box
    values = [box.x + box.w / 2, box.y + box.h / 2, box.w, box.h, *score]
    return " ".join([str(class_index), *(f"{v:.6f}" for v in values)])
