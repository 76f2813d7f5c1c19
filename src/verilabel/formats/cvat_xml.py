"""CVAT for images 1.1 XML (CVAT's "CVAT for images" export and import), in pixels.

One ``<image id name width height>`` per sample, holding its labels:

- a box: ``<box label xtl ytl xbr ybr>``; a polygon: one ``<polygon points="x,y;x,y;...">`` per ring, the
  rings of one label sharing a ``group_id`` (the import joins them again);
- a mask: ``<mask rle left top width height>``, CVAT's run lengths over the mask's own box, row by row,
  starting with a run of background;
- keypoints: a ``<skeleton>`` whose ``<points label=NAME>`` are the named points (``outside="1"`` for one not
  seen); with a box, the two share a ``group_id`` so that they come back as one label;
- a classification: ``<tag label>``.

Each carries ``source`` (the label's attribute ``source`` where it is one of CVAT's, else ``auto`` for a label
with a confidence and ``manual`` without), ``occluded`` and its scalar attributes as
``<attribute name>value</attribute>`` (CVAT's values are text: numbers come back as strings); the confidence is
the attribute ``score``. Label tags, sample tags and attributes that are lists or mappings have no place in the
format and are not written. Reading takes the same (``source`` and ``occluded`` become attributes), plus a
standalone ``<points>`` (keypoints without names); polylines, cuboids and ellipses are counted as skipped, any
other element is an error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from verilabel.errors import DatasetImportError
from verilabel.formats.shapes import full_image_mask, mask_in_box
from verilabel.labels import Box, Classification, Detection, Keypoints, Label, Polygon

SCORE = "score"
SOURCES = ("manual", "auto", "semi-auto", "file", "consensus")  # CVAT's values of ``source``


# --- writing ---------------------------------------------------------------------------------------------------
def header(file: IO[str], classes: list[str], name: str) -> None:
    file.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n  <meta>\n')
    file.write(f"    <task>\n      <name>{escape(name)}</name>\n      <mode>annotation</mode>\n      <labels>\n")
    for label in classes:
        file.write(f"        <label>\n          <name>{escape(label)}</name>\n          <type>any</type>\n")
        file.write("        </label>\n")
    file.write("      </labels>\n    </task>\n  </meta>\n")


def footer(file: IO[str]) -> None:
    file.write("</annotations>\n")


def write_image(file: IO[str], index: int, name: str, width: int, height: int, labels: list[Label]) -> None:
    file.write(f'  <image id="{index}" name={quoteattr(name)} width="{width}" height="{height}">\n')
    for group, label in enumerate(labels, start=1):
        for element in _elements(label, width, height, group):
            file.write("    " + element + "\n")
    file.write("  </image>\n")


def _f(value: float) -> str:
    return f"{value:.2f}"


def _common(label: Label) -> str:
    source = label.attributes.get("source")
    if source not in SOURCES:
        source = "auto" if label.confidence is not None else "manual"
    occluded = "1" if label.attributes.get("occluded") in (True, 1, "1", "true") else "0"
    return f'label={quoteattr(label.label)} source="{source}" occluded="{occluded}"'


def _attributes(label: Label) -> str:
    values = {
        k: v
        for k, v in label.attributes.items()
        if k not in ("occluded", "source") and isinstance(v, str | int | float | bool)
    }
    if label.confidence is not None:
        values[SCORE] = round(label.confidence, 6)
    return "".join(f"<attribute name={quoteattr(str(k))}>{escape(str(v))}</attribute>" for k, v in values.items())


def _element(tag: str, attributes: str, label: Label) -> str:
    inner = _attributes(label)
    return f"<{tag} {attributes}>{inner}</{tag}>" if inner else f"<{tag} {attributes}/>"


def _elements(label: Label, width: int, height: int, group: int) -> list[str]:
    if isinstance(label, Classification):
        return [_element("tag", _common(label), label)]
    rings = label.polygon.rings if label.polygon is not None and label.mask is None else ()
    grouped = f' group_id="{group}"' if label.keypoints is not None or len(rings) > 1 else ""
    out = []
    if label.mask is not None:
        x, y, w, h = label.box.to_pixels(width, height)
        bitmap = full_image_mask(label, width, height)[y : y + h, x : x + w]
        rle = ", ".join(str(n) for n in _runs(bitmap))
        place = f'rle="{rle}" left="{x}" top="{y}" width="{w}" height="{h}"'
        out.append(_element("mask", f'{_common(label)} {place} z_order="0"{grouped}', label))
    elif rings:
        for ring in rings:
            points = ";".join(f"{_f(px * width)},{_f(py * height)}" for px, py in ring)
            out.append(_element("polygon", f'{_common(label)} points="{points}" z_order="0"{grouped}', label))
    else:
        b = label.box
        corners = f'xtl="{_f(b.x * width)}" ytl="{_f(b.y * height)}" xbr="{_f((b.x + b.w) * width)}" '
        corners += f'ybr="{_f((b.y + b.h) * height)}"'
        out.append(_element("box", f'{_common(label)} {corners} z_order="0"{grouped}', label))
    if label.keypoints is not None:
        out.append(_skeleton(label, label.keypoints, width, height, group))
    return out


def _skeleton(label: Detection, keypoints: Keypoints, width: int, height: int, group: int) -> str:
    points = []
    for index, (x, y) in enumerate(keypoints.points):
        name = keypoints.names[index] if keypoints.names else str(index)
        seen = keypoints.visibility[index] if keypoints.visibility else 1.0
        state = f'outside="{int(seen <= 0)}" occluded="{int(0 < seen < 0.5)}"'
        points.append(f'<points label={quoteattr(name)} {state} points="{_f(x * width)},{_f(y * height)}"/>')
    return f'<skeleton {_common(label)} z_order="0" group_id="{group}">{"".join(points)}</skeleton>'


def _runs(bitmap: np.ndarray) -> list[int]:
    """CVAT's mask run lengths: row-major, starting with a run of background (0 when the first pixel is set)."""
    flat = bitmap.ravel()
    if not flat.size:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], changes, [flat.size]))).tolist()
    return [0, *runs] if flat[0] else runs


# --- reading ---------------------------------------------------------------------------------------------------
@dataclass
class CvatImage:
    name: str
    width: int
    height: int
    labels: list[Label] = field(default_factory=list)


@dataclass
class CvatAnnotations:
    images: list[CvatImage]
    skipped: dict[str, int]  # elements of kinds verilabel does not take, by tag


SKIPPED = ("polyline", "cuboid", "ellipse")  # CVAT's shapes verilabel has no label for
READ = ("box", "polygon", "points", "mask", "tag", "skeleton")


def read(path: Path) -> CvatAnnotations:
    """The images of a CVAT for images 1.1 XML file, with their labels (read as a stream: an image's elements are
    freed once read)."""
    images: list[CvatImage] = []
    skipped: dict[str, int] = {}
    try:
        for _, element in ET.iterparse(path, events=("end",)):
            if element.tag == "image":
                images.append(_image(element, path, skipped))
                element.clear()
            elif element.tag == "track":
                raise DatasetImportError(
                    f"{path} is CVAT for video (it has <track> elements): export the task as CVAT for images 1.1"
                )
    except FileNotFoundError:
        raise DatasetImportError(f"CVAT XML file not found: {path}") from None
    except ET.ParseError as exc:
        raise DatasetImportError(
            f"{path} is not valid XML ({exc}): export the task again as CVAT for images 1.1"
        ) from None
    if not images:
        raise DatasetImportError(f"{path} has no <image> elements: is it a CVAT for images 1.1 export?")
    return CvatAnnotations(images, skipped)


def _number(element: ET.Element, name: str, path: Path) -> float:
    try:
        return float(element.attrib[name])
    except (KeyError, ValueError):
        raise DatasetImportError(
            f"{path}: image {element.get('name', '?')!r} has no valid {name}={element.get(name)!r}: fix it, or "
            "export the task from CVAT again as CVAT for images 1.1"
        ) from None


def _image(element: ET.Element, path: Path, skipped: dict[str, int]) -> CvatImage:
    name = element.get("name")
    if not name:
        raise DatasetImportError(f"{path}: an <image> has no name")
    width, height = int(_number(element, "width", path)), int(_number(element, "height", path))
    image = CvatImage(name, width, height)
    groups: dict[str, Detection] = {}
    skeletons: list[tuple[ET.Element, Detection]] = []
    for child in element:
        where = f"{path}: image {name}: <{child.tag} label={child.get('label')!r}>"
        if child.tag in SKIPPED:
            skipped[child.tag] = skipped.get(child.tag, 0) + 1
            continue
        if child.tag not in READ:
            raise DatasetImportError(
                f"{where} is not an element of CVAT for images 1.1 (an image holds {', '.join(READ + SKIPPED)}): "
                "remove it, or export the task from CVAT again as CVAT for images 1.1"
            )
        try:
            label = _label(child, width, height)
        except KeyError as exc:
            raise DatasetImportError(f"{where} has no {exc.args[0]}=: add it, or export the task again") from None
        except ValueError as exc:
            raise DatasetImportError(f"{where} is malformed ({exc}): fix it, or export the task again") from None
        if label is None:  # a skeleton without points
            continue
        group = child.get("group_id") if child.get("group_id") not in (None, "", "0") else None
        if child.tag == "skeleton":
            assert isinstance(label, Detection)
            skeletons.append((child, label))
            continue
        owner = groups.get(group) if group is not None else None
        if child.tag == "polygon" and owner is not None and _join_ring(owner, label):
            continue
        image.labels.append(label)
        if isinstance(label, Detection) and group is not None:
            groups.setdefault(group, label)
    for child, skeleton in skeletons:
        owner = groups.get(str(child.get("group_id")))
        if owner is not None and owner.keypoints is None and owner.label == skeleton.label:
            owner.keypoints = skeleton.keypoints
        else:
            image.labels.append(skeleton)
    return image


def _join_ring(owner: Detection, ring: Label) -> bool:
    """Add a polygon to the polygon of its group and label (a shape in parts, as an export writes one with
    several rings); False where the group's first shape is something else."""
    if not isinstance(ring, Detection) or ring.polygon is None or owner.polygon is None or owner.label != ring.label:
        return False
    owner.polygon = Polygon(owner.polygon.rings + ring.polygon.rings)
    owner.box = _around([point for part in owner.polygon.rings for point in part])
    return True


def _values(child: ET.Element) -> tuple[dict[str, Any], float | None]:
    attributes: dict[str, Any] = {a.get("name", ""): a.text or "" for a in child.findall("attribute")}
    if child.get("occluded") == "1":
        attributes["occluded"] = True
    if child.get("source"):
        attributes["source"] = child.get("source")
    score = attributes.pop(SCORE, None)
    confidence = min(max(float(score), 0.0), 1.0) if score not in (None, "") else None
    return attributes, confidence


def _clip(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def _pairs(text: str, width: int, height: int) -> list[tuple[float, float]]:
    out = []
    for pair in text.split(";"):
        x, y = pair.split(",")
        out.append((_clip(float(x) / width), _clip(float(y) / height)))
    return out


def _around(points: list[tuple[float, float]]) -> Box:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _label(child: ET.Element, width: int, height: int) -> Label | None:
    kind = child.tag
    name = child.attrib["label"]
    attributes, confidence = _values(child)
    if kind == "tag":
        return Classification(name, confidence, attributes=attributes)
    if kind == "box":
        xtl, ytl = float(child.attrib["xtl"]), float(child.attrib["ytl"])
        xbr, ybr = float(child.attrib["xbr"]), float(child.attrib["ybr"])
        return Detection(
            name, Box.from_xyxy_pixels(xtl, ytl, xbr, ybr, width, height), confidence, attributes=attributes
        )
    if kind == "polygon":
        ring = _pairs(child.attrib["points"], width, height)
        if len(ring) < 3:
            raise ValueError("a polygon needs 3 points")
        return Detection(name, _around(ring), confidence, polygon=Polygon((tuple(ring),)), attributes=attributes)
    if kind == "points":
        points = _pairs(child.attrib["points"], width, height)
        return Detection(name, _around(points), confidence, keypoints=Keypoints(tuple(points)), attributes=attributes)
    if kind == "mask":
        left, top = int(float(child.attrib["left"])), int(float(child.attrib["top"]))
        w, h = int(float(child.attrib["width"])), int(float(child.attrib["height"]))
        runs = [int(n) for n in child.attrib["rle"].replace(" ", "").split(",") if n]
        values = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
        if values.size != w * h:
            raise ValueError(f"its runs cover {values.size} pixels, its {w}x{h} box has {w * h}")
        if not (0 <= left < width and 0 <= top < height):
            raise ValueError(f"its corner left={left} top={top} lies outside the {width}x{height} image")
        full = np.zeros((height, width), dtype=bool)
        full[top : top + h, left : left + w] = values.reshape(h, w)[: height - top, : width - left]
        box = Box.from_xyxy_pixels(left, top, left + w, top + h, width, height)
        return Detection(name, box, confidence, mask=mask_in_box(full, box, width, height), attributes=attributes)
    # a skeleton: its named points (an outside one at visibility 0, an occluded one at 0.25)
    names, points, seen = [], [], []
    for point in child.findall("points"):
        names.append(point.attrib["label"])
        points.extend(_pairs(point.attrib["points"], width, height)[:1])
        seen.append(0.0 if point.get("outside") == "1" else 0.25 if point.get("occluded") == "1" else 1.0)
    if not points:
        return None
    visible = [p for p, s in zip(points, seen, strict=True) if s > 0] or points
    keypoints = Keypoints(tuple(points), tuple(names), tuple(seen))
    return Detection(name, _around(visible), confidence, keypoints=keypoints, attributes=attributes)


def write(file: IO[str], images: Iterable[tuple[str, int, int, list[Label]]], classes: list[str], name: str) -> int:
    """A whole file from ``(name, width, height, labels)`` per image; returns the number of images."""
    header(file, classes, name)
    count = 0
    for count, (image, width, height, labels) in enumerate(images, start=1):
        write_image(file, count - 1, image, width, height, labels)
    footer(file)
    return count
