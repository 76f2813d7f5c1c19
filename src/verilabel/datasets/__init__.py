"""Datasets: create them from folders, COCO, YOLO or Pascal VOC; describe, query, tag and export them.

The functions live in ``service`` and ``export``; this package re-exports them (loaded on first use)::

    import verilabel as vl
    vl.datasets.create_dataset(store, "pets")
    vl.datasets.add_images(store, "pets", "~/data/pets")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from verilabel._lazy import lazy_exports

_SERVICE = "verilabel.datasets.service"
_EXPORTS = {
    **dict.fromkeys(
        (
            "DatasetInfo",
            "ImportSummary",
            "Sample",
            "add_images",
            "create_dataset",
            "dataset_info",
            "delete_dataset",
            "import_coco",
            "import_voc",
            "import_yolo",
            "labels_of",
            "list_datasets",
            "sample_ids",
            "samples",
            "tag_samples",
            "untag_samples",
        ),
        _SERVICE,
    ),
    **dict.fromkeys(
        ("caption_dataset", "CaptionSummary"),
        "verilabel.datasets.captions",
    ),
    **dict.fromkeys(
        ("EmbeddingSummary", "compute_embeddings", "delete_embeddings", "embedding_map", "list_embeddings"),
        "verilabel.datasets.embeddings",
    ),
    "ExportSummary": "verilabel.datasets.export",
    "export_field": "verilabel.datasets.export",
    "View": "verilabel.datasets.views",
    "parse_view": "verilabel.datasets.views",
}
__all__ = [  # tests/test_public_api.py checks it against _EXPORTS
    "CaptionSummary",
    "DatasetInfo",
    "EmbeddingSummary",
    "ExportSummary",
    "ImportSummary",
    "Sample",
    "View",
    "add_images",
    "caption_dataset",
    "compute_embeddings",
    "create_dataset",
    "dataset_info",
    "delete_dataset",
    "delete_embeddings",
    "embedding_map",
    "export_field",
    "import_coco",
    "import_voc",
    "import_yolo",
    "labels_of",
    "list_datasets",
    "list_embeddings",
    "parse_view",
    "sample_ids",
    "samples",
    "tag_samples",
    "untag_samples",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from verilabel.datasets.captions import CaptionSummary, caption_dataset
    from verilabel.datasets.embeddings import (
        EmbeddingSummary,
        compute_embeddings,
        delete_embeddings,
        embedding_map,
        list_embeddings,
    )
    from verilabel.datasets.export import ExportSummary, export_field
    from verilabel.datasets.service import (
        DatasetInfo,
        ImportSummary,
        Sample,
        add_images,
        create_dataset,
        dataset_info,
        delete_dataset,
        import_coco,
        import_voc,
        import_yolo,
        labels_of,
        list_datasets,
        sample_ids,
        samples,
        tag_samples,
        untag_samples,
    )
    from verilabel.datasets.views import View, parse_view
