"""Label Studio tasks: labels as the ``result`` regions Label Studio imports, and the labeling config they need.

Coordinates are percentages of the image width and height from the top-left corner (Label Studio's convention).
Boxes become ``rectanglelabels`` regions, polygons and masks ``polygonlabels`` (a mask by its largest outer
contour), classifications ``choices``; each carries the label's confidence as ``score``. The control names below
are the ones the generated config declares, so a project made with that config shows every region.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from verilabel.formats.shapes import outline
from verilabel.labels import Classification, Detection, Label

IMAGE = "image"
# result type -> (control name, config tag of the control, config tag of its items)
CONTROLS = {
    "rectanglelabels": ("label", "RectangleLabels", "Label"),
    "polygonlabels": ("polygon", "PolygonLabels", "Label"),
    "choices": ("class", "Choices", "Choice"),
}


def _region(kind: str, value: dict[str, Any], label: Label, width: int, height: int) -> dict[str, Any]:
    region: dict[str, Any] = {
        "id": label.id,
        "from_name": CONTROLS[kind][0],
        "to_name": IMAGE,
        "type": kind,
        "value": value,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
    }
    if label.confidence is not None:
        region["score"] = label.confidence
    return region


def _percent(value: float) -> float:
    return round(value * 100, 4)


def to_results(labels: list[Label], width: int, height: int) -> list[dict[str, Any]]:
    """The ``result`` list of one task's prediction or annotation."""
    results = []
    for label in labels:
        if isinstance(label, Classification):
            results.append(_region("choices", {"choices": [label.label]}, label, width, height))
            continue
        assert isinstance(label, Detection)
        points = outline(label)
        if len(points) >= 3:
            value: dict[str, Any] = {
                "points": [[_percent(x), _percent(y)] for x, y in points],
                "closed": True,
                "polygonlabels": [label.label],
            }
            results.append(_region("polygonlabels", value, label, width, height))
        else:
            box = label.box
            value = {
                "x": _percent(box.x),
                "y": _percent(box.y),
                "width": _percent(box.w),
                "height": _percent(box.h),
                "rotation": 0,
                "rectanglelabels": [label.label],
            }
            results.append(_region("rectanglelabels", value, label, width, height))
    return results


def label_config(classes: list[str], kinds: set[str]) -> str:
    """A labeling config declaring the controls that ``kinds`` (result types) need, each listing ``classes``."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE, value=f"${IMAGE}")
    for kind, (name, control, item) in CONTROLS.items():
        if kind not in kinds:
            continue
        attributes = {"name": name, "toName": IMAGE} | ({"choice": "single"} if kind == "choices" else {})
        node = ET.SubElement(view, control, attributes)
        for label in classes:
            ET.SubElement(node, item, value=label)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"
