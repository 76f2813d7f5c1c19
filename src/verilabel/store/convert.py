"""Label objects <-> label table columns (shared by dataset labels and generated run labels)."""

from __future__ import annotations

from typing import Any

from verilabel.labels import Box, Classification, Detection, Keypoints, Label, Mask, Polygon
from verilabel.store.schema import _LabelColumns


def label_columns(label: Label) -> dict[str, Any]:
    """The column values of one label. A mask must already be stored (a path or RLE), not a raw array."""
    row: dict[str, Any] = {
        "id": label.id,
        "kind": label.kind,
        "label": label.label,
        "confidence": label.confidence,
        "attributes": label.attributes,
        "tags": list(label.tags),
        "x": None,
        "y": None,
        "w": None,
        "h": None,
        "mask_path": None,
        "mask_rle": None,
        "polygon": None,
        "keypoints": None,
    }
    if isinstance(label, Detection):
        row.update(x=label.box.x, y=label.box.y, w=label.box.w, h=label.box.h)
        if label.mask is not None:
            if label.mask.array is not None:
                raise ValueError("store the mask array (to a file or RLE) before writing the label")
            row.update(mask_path=label.mask.path, mask_rle=label.mask.rle)
        if label.polygon is not None:
            row["polygon"] = label.polygon.to_json()
        if label.keypoints is not None:
            row["keypoints"] = label.keypoints.to_json()
    return row


def row_label(row: _LabelColumns) -> Label:
    if row.kind == "classification":
        return Classification(row.label, row.confidence, dict(row.attributes or {}), list(row.tags or []), id=row.id)
    assert row.x is not None and row.y is not None and row.w is not None and row.h is not None
    mask = None
    if row.mask_path is not None:
        mask = Mask(path=row.mask_path)
    elif row.mask_rle is not None:
        mask = Mask(rle=row.mask_rle)
    return Detection(
        row.label,
        Box(row.x, row.y, row.w, row.h),
        row.confidence,
        mask=mask,
        polygon=Polygon.from_json(row.polygon) if row.polygon else None,
        keypoints=Keypoints.from_json(row.keypoints) if row.keypoints else None,
        attributes=dict(row.attributes or {}),
        tags=list(row.tags or []),
        id=row.id,
    )
