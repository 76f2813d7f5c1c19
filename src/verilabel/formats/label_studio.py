"""Label Studio tasks: labels as the ``result`` regions Label Studio imports, and the labeling config they need.

Coordinates are percentages of the image width and height from the top-left corner (Label Studio's convention).
Boxes become ``rectanglelabels`` regions, polygons and masks ``polygonlabels`` (a mask by its largest outer
contour), classifications ``choices``, a detection's keypoints ``keypointlabels`` under its box; each carries
the label's confidence as ``score``. The control names below
are the ones the generated config declares, so a project made with that config shows every region.

``read_export`` goes the other way: the annotations of a project's JSON export, people's corrections, as labels
(brushes too: ``label_studio_rle`` reads Label Studio's mask encoding).
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verilabel.errors import DatasetImportError
from verilabel.formats import label_studio_rle
from verilabel.formats.shapes import box_around, full_image_mask, mask_in_box, outline
from verilabel.labels import Box, Classification, Detection, Keypoints, Label, Polygon

IMAGE = "image"
# result type -> (control name, config tag of the control, config tag of its items)
CONTROLS = {
    "rectanglelabels": ("label", "RectangleLabels", "Label"),
    "polygonlabels": ("polygon", "PolygonLabels", "Label"),
    "choices": ("class", "Choices", "Choice"),
    "keypointlabels": ("keypoint", "KeyPointLabels", "Label"),
}


@dataclass(frozen=True)
class Layout:
    """Where a task's regions go in a project: the control (``from_name``) of each result type its labeling config
    declares, the ``<Image>`` they target (``to_name``), and the task data field holding the image."""

    controls: dict[str, str]  # result type -> control name
    image: str = IMAGE
    data_key: str = IMAGE


DEFAULT_LAYOUT = Layout({kind: name for kind, (name, _, _) in CONTROLS.items()})


def layout_of(config: str) -> Layout:
    """The layout of a project's labeling config: its first ``<Image>`` and, per result type, the first control
    targeting it."""
    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise DatasetImportError(f"the project's labeling config is not XML: {exc}") from None
    image = next((tag for tag in root.iter() if tag.tag == "Image" and tag.get("name")), None)
    if image is None:
        raise DatasetImportError("the project's labeling config has no <Image>: verilabel's labels are image regions")
    tags = {"RectangleLabels": "rectanglelabels", "PolygonLabels": "polygonlabels", "BrushLabels": "brushlabels"}
    tags |= {"Choices": "choices", "KeyPointLabels": "keypointlabels"}
    controls: dict[str, str] = {}
    for tag in root.iter():
        if tag.tag in tags and tag.get("toName") == image.get("name") and tag.get("name"):
            controls.setdefault(tags[tag.tag], str(tag.get("name")))
    return Layout(controls, str(image.get("name")), (image.get("value") or "").lstrip("$") or IMAGE)


def _region(
    kind: str, value: dict[str, Any], label: Label, width: int, height: int, layout: Layout = DEFAULT_LAYOUT
) -> dict[str, Any]:
    region: dict[str, Any] = {
        "id": label.id,
        "from_name": layout.controls[kind],
        "to_name": layout.image,
        "type": kind,
        "value": value,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
    }
    if label.confidence is not None:
        region["score"] = label.confidence
    return region


def percent(value: float) -> float:
    """A relative coordinate as Label Studio's percentage, to 4 decimals."""
    return round(value * 100, 4)


def box_value(box: Box, name: str) -> dict[str, Any]:
    """A ``rectanglelabels`` region's value: the box in percent from the top-left, labelled ``name``."""
    return {
        "x": percent(box.x),
        "y": percent(box.y),
        "width": percent(box.w),
        "height": percent(box.h),
        "rotation": 0,
        "rectanglelabels": [name],
    }


def polygon_value(points: list[tuple[float, float]], name: str) -> dict[str, Any]:
    """A ``polygonlabels`` region's value: relative points in percent, labelled ``name``."""
    return {"points": [[percent(x), percent(y)] for x, y in points], "closed": True, "polygonlabels": [name]}


def to_results(labels: list[Label], width: int, height: int, layout: Layout = DEFAULT_LAYOUT) -> list[dict[str, Any]]:
    """The ``result`` list of one task's prediction or annotation, in the controls ``layout`` has: a detection
    with a shape as a polygon (else its mask as a brush), else as a box; a classification as a choice; a
    detection's keypoints after it, each a ``keypointlabels`` region named after the point, with the detection's
    region as its ``parentID``. Labels the layout has no control for are left out."""
    results = []
    for label in labels:
        if isinstance(label, Classification):
            if "choices" in layout.controls:
                results.append(_region("choices", {"choices": [label.label]}, label, width, height, layout))
            continue
        assert isinstance(label, Detection)
        points = outline(label) if "polygonlabels" in layout.controls else []
        if len(points) >= 3:
            value = polygon_value(points, label.label)
            results.append(_region("polygonlabels", value, label, width, height, layout))
        elif label.mask is not None and "brushlabels" in layout.controls:
            value = label_studio_rle.brush_value(full_image_mask(label, width, height), label.label)
            results.append(_region("brushlabels", value, label, width, height, layout))
        elif "rectanglelabels" in layout.controls:
            results.append(_region("rectanglelabels", box_value(label.box, label.label), label, width, height, layout))
        else:
            continue
        if "keypointlabels" in layout.controls:
            results += _keypoint_regions(label, width, height, layout)
    return results


def _keypoint_regions(detection: Detection, width: int, height: int, layout: Layout) -> list[dict[str, Any]]:
    keypoints = detection.keypoints
    if keypoints is None:
        return []
    regions = []
    for index, (x, y) in enumerate(keypoints.points):
        name = keypoints.names[index] if keypoints.names else str(index)
        value = {"x": percent(x), "y": percent(y), "width": 1.0, "keypointlabels": [name]}
        region = _region("keypointlabels", value, detection, width, height, layout)
        region |= {"id": f"{detection.id}-{index}", "parentID": detection.id}
        if keypoints.visibility:
            region["score"] = keypoints.visibility[index]
        regions.append(region)
    return regions


def label_config(classes: list[str], kinds: set[str], keypoint_names: list[str] | None = None) -> str:
    """A labeling config declaring the controls that ``kinds`` (result types) need, each listing ``classes`` (the
    keypoint control: ``keypoint_names``)."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE, value=f"${IMAGE}")
    for kind, (name, control, item) in CONTROLS.items():
        if kind not in kinds:
            continue
        attributes = {"name": name, "toName": IMAGE} | ({"choice": "single"} if kind == "choices" else {})
        node = ET.SubElement(view, control, attributes)
        for label in (keypoint_names or []) if kind == "keypointlabels" else classes:
            ET.SubElement(node, item, value=label)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


# --- import: a Label Studio JSON export ---------------------------------------------------------------------
IMPORTED_TYPES = ("rectanglelabels", "polygonlabels", "brushlabels", "choices")


@dataclass
class ExportedTask:
    """One task of a Label Studio JSON export: its image reference as Label Studio stores it, the image size
    its regions record, and the labels of its chosen annotation."""

    task_id: int | None
    image: str
    width: int | None
    height: int | None
    labels: list[Label]
    skipped: dict[str, int]  # regions of types not imported, by type


def read_export(path: Path) -> list[ExportedTask]:
    """The tasks of a Label Studio JSON export (``Export > JSON``: a list of tasks with ``data`` and
    ``annotations``). Per task, the annotation marked ground truth, else the latest one not cancelled; each label
    carries who made it and when (attributes ``annotator``: the user's email where the export has it, else the
    user id Label Studio 1.23 writes; ``annotated_at``; ``label_studio_task``)."""
    try:
        tasks = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetImportError(f"Label Studio export not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DatasetImportError(f"{path} is not a Label Studio JSON export: {exc}") from None
    if not isinstance(tasks, list) or any(not isinstance(t, dict) or "data" not in t for t in tasks):
        raise DatasetImportError(
            f"{path} is not a Label Studio JSON export (a list of tasks with `data`); export the project as JSON, "
            "not JSON-MIN or CSV"
        )
    return [_exported_task(task, path) for task in tasks]


def _exported_task(task: dict[str, Any], path: Path) -> ExportedTask:
    images = [v for v in task["data"].values() if isinstance(v, str)]
    if not images:
        raise DatasetImportError(f"{path}: task {task.get('id')} has no image reference in its data")
    image = task["data"].get(IMAGE) if isinstance(task["data"].get(IMAGE), str) else images[0]
    annotation = _chosen_annotation(task.get("annotations") or [])
    results = annotation.get("result") or [] if annotation else []
    sizes = [(r.get("original_width"), r.get("original_height")) for r in results if r.get("original_width")]
    width, height = sizes[0] if sizes else (None, None)
    provenance = {"label_studio_task": task.get("id")}
    if annotation:
        provenance |= {"annotator": _annotator(annotation), "annotated_at": _when(annotation)}
    labels: list[Label] = []
    skipped: dict[str, int] = {}
    by_region: dict[str, Detection] = {}  # region id -> its detection, for the keypoints under it
    points: list[dict[str, Any]] = []
    for result in results:
        kind = result.get("type")
        if kind == "keypointlabels":
            points.append(result)
            continue
        try:
            label = _label(result, dict(provenance)) if kind in IMPORTED_TYPES else None
        except ValueError as exc:
            raise DatasetImportError(f"{path}: task {task.get('id')}: a {kind} region is malformed ({exc})") from None
        if label is None:
            skipped[str(kind)] = skipped.get(str(kind), 0) + 1
            continue
        labels.append(label)
        if isinstance(label, Detection) and result.get("id"):
            by_region[str(result["id"])] = label
    labels += _attach_keypoints(points, by_region, provenance)
    return ExportedTask(task.get("id"), image, width, height, labels, skipped)


def _chosen_annotation(annotations: list[dict[str, Any]]) -> dict[str, Any] | None:
    kept = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not kept:
        return None
    truth = [a for a in kept if a.get("ground_truth")]
    return max(truth or kept, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))


def _annotator(annotation: dict[str, Any]) -> str | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return None if who is None else str(who)


def _when(annotation: dict[str, Any]) -> str | None:
    when = annotation.get("updated_at") or annotation.get("created_at")
    return None if when is None else str(when)


def _label(result: dict[str, Any], attributes: dict[str, Any]) -> Label | None:
    value = result.get("value") or {}
    kind = result["type"]
    names = value.get(kind) or []
    if not names:
        return None
    name = str(names[0])
    if kind == "choices":
        return Classification(name, None, attributes=attributes)
    if kind == "brushlabels":
        return _brush(name, value, result, attributes)
    if kind == "polygonlabels":
        points = [(float(x) / 100, float(y) / 100) for x, y in value.get("points") or []]
        if len(points) < 3:
            return None
        clipped = [(min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)) for x, y in points]
        xs, ys = [p[0] for p in clipped], [p[1] for p in clipped]
        box = Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
        return Detection(name, box, None, polygon=Polygon((tuple(clipped),)), attributes=attributes)
    return _rectangle(name, value, result, attributes)


def _brush(name: str, value: dict[str, Any], result: dict[str, Any], attributes: dict[str, Any]) -> Detection | None:
    """A brush region (Label Studio's RLE over the whole image) as a detection with its mask; an empty one is
    left out."""
    width, height = result.get("original_width"), result.get("original_height")
    if value.get("format") != "rle" or not width or not height:
        raise ValueError("a brush needs format 'rle', original_width and original_height")
    full = label_studio_rle.decode(value.get("rle") or [], int(width), int(height))
    box = box_around(full)
    if box is None:
        return None
    return Detection(name, box, None, mask=mask_in_box(full, box, int(width), int(height)), attributes=attributes)


def _attach_keypoints(
    points: list[dict[str, Any]], parents: dict[str, Detection], attributes: dict[str, Any]
) -> list[Detection]:
    """Keypoint regions as the keypoints of the detection they belong to (``parentID``), named after their
    label. Points with no parent become one detection per control, labelled with the control's name, whose box
    surrounds them. Returns those new detections."""
    groups: dict[tuple[str, str], list[tuple[str, float, float]]] = {}
    for result in points:
        value = result.get("value") or {}
        names = value.get("keypointlabels") or []
        if not names or "x" not in value or "y" not in value:
            continue
        x = min(max(float(value["x"]) / 100, 0.0), 1.0)
        y = min(max(float(value["y"]) / 100, 0.0), 1.0)
        parent = str(result.get("parentID") or "")
        key = (parent, "") if parent in parents else ("", str(result.get("from_name") or "keypoints"))
        groups.setdefault(key, []).append((str(names[0]), x, y))
    orphans = []
    for (parent, control), found in groups.items():
        keypoints = Keypoints(tuple((x, y) for _, x, y in found), tuple(name for name, _, _ in found))
        if parent:
            parents[parent].keypoints = keypoints
            continue
        xs, ys = [x for _, x, _ in found], [y for _, _, y in found]
        box = Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
        orphans.append(Detection(control, box, None, keypoints=keypoints, attributes=dict(attributes)))
    return orphans


def _rectangle(name: str, value: dict[str, Any], result: dict[str, Any], attributes: dict[str, Any]) -> Detection:
    """A box; a rotated one (Label Studio turns it about its top-left corner, clockwise, in pixels) becomes the
    upright box around it, its angle kept as the attribute ``rotation``."""
    x, y = float(value["x"]) / 100, float(value["y"]) / 100
    w, h = float(value["width"]) / 100, float(value["height"]) / 100
    angle = float(value.get("rotation") or 0.0)
    if angle:
        width, height = float(result.get("original_width") or 1), float(result.get("original_height") or 1)
        theta = math.radians(angle)
        corners = [(0.0, 0.0), (w * width, 0.0), (w * width, h * height), (0.0, h * height)]
        turned = [
            (
                x + (cx * math.cos(theta) - cy * math.sin(theta)) / width,
                y + (cx * math.sin(theta) + cy * math.cos(theta)) / height,
            )
            for cx, cy in corners
        ]
        xs, ys = [p[0] for p in turned], [p[1] for p in turned]
        x, y, w, h = min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)
        attributes = attributes | {"rotation": angle}
    left, top = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
    right, bottom = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
    return Detection(name, Box(left, top, right - left, bottom - top), None, attributes=attributes)


_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio prefixes uploaded files with 8 hex digits


def reference_parts(reference: str) -> tuple[str | None, list[str]]:
    """What a task's image reference says of its file: its path below Label Studio's document root (local files
    ``/data/local-files/?d=REL``), and the file names it may have, most likely first (an upload
    ``/data/upload/N/abcd1234-name.png`` by its stored name, then its original one; a URL or path by its name)."""
    parsed = urllib.parse.urlparse(reference)
    if parsed.path.endswith("/data/local-files/") or parsed.path == "/data/local-files":
        relative = urllib.parse.parse_qs(parsed.query).get("d", [""])[0]
        return relative, [Path(relative).name]
    name = Path(urllib.parse.unquote(parsed.path)).name
    names = [name]
    if "/data/upload/" in parsed.path and _UPLOAD_PREFIX.match(name):
        names.append(_UPLOAD_PREFIX.sub("", name))
    return None, names


def image_candidates(reference: str, images: Path) -> list[Path]:
    """Where the file of a task's image reference may be under ``images``, most likely first: local-files
    references relative to it (pass Label Studio's LOCAL_FILES_DOCUMENT_ROOT), then by name; uploads and URLs by
    their file names; a plain path as it is, then by its name."""
    relative, names = reference_parts(reference)
    if relative is not None:
        return [images / relative, images / names[0]]
    found = [images / name for name in names]
    parsed = urllib.parse.urlparse(reference)
    if not parsed.scheme and not parsed.netloc:
        found.insert(0, Path(reference).expanduser())
    return found


class SampleMatcher:
    """Finds the sample a task's image reference stands for, among a dataset's samples: by path (a plain path),
    then by file name, where a local-files reference's relative path or a unique name settles it."""

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths
        self.by_path = {path: sample for sample, path in paths.items()}
        self.by_name: dict[str, list[int]] = {}
        for sample, path in paths.items():
            self.by_name.setdefault(Path(path).name, []).append(sample)

    def match(self, reference: str) -> int | None:
        if reference in self.by_path:
            return self.by_path[reference]
        relative, names = reference_parts(reference)
        for name in names:
            found = self.by_name.get(name, [])
            if relative is not None and len(found) > 1:
                suffix = "/" + relative.lstrip("/")
                found = [s for s in found if self.paths[s].replace("\\", "/").endswith(suffix)]
            if len(found) == 1:
                return found[0]
        return None
