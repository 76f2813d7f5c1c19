"""Verification: filter generated labels, promote them for approval, undo, tag, and approve (terminal, atomic).

The functions live in ``service``; this package re-exports them (loaded on first use)::

    vl.review.promote(store, "faces", vl.review.LabelQuery(min_confidence=0.8))
    vl.review.approve(store, "faces")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from verilabel._lazy import lazy_exports

_EXPORTS = dict.fromkeys(
    (
        "ApproveResult",
        "ClassRow",
        "LabelQuery",
        "analyze_field",
        "approve",
        "class_table",
        "list_labels",
        "promote",
        "tag_labels",
        "undo",
    ),
    "verilabel.review.service",
)
__all__ = [  # tests/test_public_api.py checks it against _EXPORTS
    "ApproveResult",
    "ClassRow",
    "LabelQuery",
    "analyze_field",
    "approve",
    "class_table",
    "list_labels",
    "promote",
    "tag_labels",
    "undo",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from verilabel.review.service import (
        ApproveResult,
        ClassRow,
        LabelQuery,
        analyze_field,
        approve,
        class_table,
        list_labels,
        promote,
        tag_labels,
        undo,
    )
