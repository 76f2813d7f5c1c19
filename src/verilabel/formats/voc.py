"""Pascal VOC detection XML: one ``Annotations/<image>.xml`` per image, boxes in 1-based pixel coordinates.

VOC's ``xmin ymin xmax ymax`` are the first and last pixel rows/columns of the object, counted from 1 (the
devkit's convention): a box covering pixels 0..9 of an image is written ``xmin=1 xmax=10``. ``difficult``,
``truncated``, ``occluded`` and ``pose`` become label attributes on import and are written back on export.
A ``confidence`` element (not in the devkit, ignored by readers that don't know it) carries scores both ways.
VOC detection has no masks or polygons: an export writes their boxes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from verilabel.errors import DatasetImportError
from verilabel.labels import Box, Detection

FLAGS = ("difficult", "truncated", "occluded")


@dataclass
class VocImage:
    filename: str
    width: int
    height: int
    labels: list[Detection] = field(default_factory=list)
    path: str | None = None  # the image path the file records, if any


def _text(parent: ET.Element, tag: str, where: str) -> str:
    node = parent.find(tag)
    if node is None or node.text is None or not node.text.strip():
        raise DatasetImportError(f"{where}: <{tag}> is missing or empty")
    return node.text.strip()


def _number(parent: ET.Element, tag: str, where: str) -> float:
    text = _text(parent, tag, where)
    try:
        return float(text)
    except ValueError:
        raise DatasetImportError(f"{where}: <{tag}> is {text!r}, not a number") from None


def read_xml(path: Path) -> VocImage:
    """One annotation file. Errors name the file and the element to fix."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DatasetImportError(f"{path} is not valid XML ({exc})") from None
    except OSError as exc:
        raise DatasetImportError(f"cannot read {path}: {exc.strerror}") from None
    if root.tag != "annotation":
        raise DatasetImportError(f"{path} is not a Pascal VOC file: its root element is <{root.tag}>")
    size = root.find("size")
    if size is None:
        raise DatasetImportError(f"{path}: <size> is missing (VOC needs the image width and height)")
    width, height = int(_number(size, "width", str(path))), int(_number(size, "height", str(path)))
    if width <= 0 or height <= 0:
        raise DatasetImportError(f"{path}: image size {width}x{height} is not positive")
    recorded = root.find("path")
    image = VocImage(
        _text(root, "filename", str(path)),
        width,
        height,
        path=recorded.text.strip() if recorded is not None and recorded.text else None,
    )
    for index, obj in enumerate(root.iter("object"), 1):
        where = f"{path}: object {index}"
        name = _text(obj, "name", where)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetImportError(f"{where} ({name}) has no <bndbox>")
        xmin, ymin, xmax, ymax = (_number(bndbox, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        box = Box.from_xyxy_pixels(xmin - 1, ymin - 1, xmax, ymax, width, height)
        attributes: dict[str, object] = {}
        for flag in FLAGS:
            node = obj.find(flag)
            if node is not None and node.text and node.text.strip() not in ("", "0"):
                attributes[flag] = 1
        pose = obj.find("pose")
        if pose is not None and pose.text and pose.text.strip() not in ("", "Unspecified"):
            attributes["pose"] = pose.text.strip()
        score = obj.find("confidence")
        confidence = None if score is None else _number(obj, "confidence", where)
        image.labels.append(Detection(name, box, confidence, attributes=attributes))
    return image


def _element(parent: ET.Element, tag: str, text: object) -> ET.Element:
    node = ET.SubElement(parent, tag)
    node.text = str(text)
    return node


def build_xml(filename: str, width: int, height: int, labels: list[Detection], *, path: str | None = None) -> bytes:
    """The annotation file of one image; boxes are rounded to whole pixels."""
    root = ET.Element("annotation")
    _element(root, "folder", "JPEGImages")
    _element(root, "filename", filename)
    if path is not None:
        _element(root, "path", path)
    source = ET.SubElement(root, "source")
    _element(source, "database", "verilabel")
    size = ET.SubElement(root, "size")
    _element(size, "width", width)
    _element(size, "height", height)
    _element(size, "depth", 3)
    _element(root, "segmented", 0)
    for label in labels:
        obj = ET.SubElement(root, "object")
        _element(obj, "name", label.label)
        _element(obj, "pose", label.attributes.get("pose", "Unspecified"))
        for flag in FLAGS:
            _element(obj, flag, int(bool(label.attributes.get(flag, 0))))
        if label.confidence is not None:
            _element(obj, "confidence", round(label.confidence, 6))
        x, y, w, h = label.box.to_pixels(width, height)
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", x + 1), ("ymin", y + 1), ("xmax", x + w), ("ymax", y + h)):
            _element(bndbox, tag, value)
    ET.indent(root)
    return (ET.tostring(root, encoding="unicode") + "\n").encode()
