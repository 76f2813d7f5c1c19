"""verilabel: verified auto-labeling for computer-vision datasets.

The public API, loaded lazily so that ``import verilabel`` stays fast (no SQLAlchemy, no torch)::

    import verilabel as vl
    store = vl.Store.open()
    vl.datasets.create_dataset(store, "pets")
    vl.datasets.add_images(store, "pets", "~/data/pets")
    run = vl.runs.create_run(store, vl.RunRequest(dataset="pets", task="detection",
                                                  model="mediapipe-face", field="faces"))
    vl.runs.wait_run(store, run.id)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from verilabel._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Store": "verilabel.store",
    "RunRequest": "verilabel.runs.config",
    "View": "verilabel.datasets.views",
    "Box": "verilabel.labels",
    "Classification": "verilabel.labels",
    "Detection": "verilabel.labels",
    "Keypoints": "verilabel.labels",
    "Mask": "verilabel.labels",
    "Polygon": "verilabel.labels",
    "ImageItem": "verilabel.models.interface",
    "LoadRequest": "verilabel.models.interface",
    "Model": "verilabel.models.interface",
    "ModelSpec": "verilabel.models.interface",
    "PredictContext": "verilabel.models.interface",
    "VerilabelError": "verilabel.errors",
    "ConfigError": "verilabel.errors",
    "ConflictError": "verilabel.errors",
    "DatasetImportError": "verilabel.errors",
    "ModelLoadError": "verilabel.errors",
    "ModelOutputError": "verilabel.errors",
    "NotFoundError": "verilabel.errors",
    "SampleError": "verilabel.errors",
    "StoreError": "verilabel.errors",
}
# Subpackages whose own ``__init__`` re-exports their functions: ``vl.datasets.add_images``, ``vl.runs.wait_run``.
_MODULES = ("datasets", "review", "runs")

__all__ = [  # the public API; tests/test_public_api.py checks it against _EXPORTS
    "Box",
    "Classification",
    "ConfigError",
    "ConflictError",
    "DatasetImportError",
    "Detection",
    "ImageItem",
    "Keypoints",
    "LoadRequest",
    "Mask",
    "Model",
    "ModelLoadError",
    "ModelOutputError",
    "ModelSpec",
    "NotFoundError",
    "Polygon",
    "PredictContext",
    "RunRequest",
    "SampleError",
    "Store",
    "StoreError",
    "VerilabelError",
    "View",
    "__version__",
    "datasets",
    "review",
    "runs",
]

if TYPE_CHECKING:
    from verilabel import datasets, review, runs
    from verilabel.datasets.views import View
    from verilabel.errors import (
        ConfigError,
        ConflictError,
        DatasetImportError,
        ModelLoadError,
        ModelOutputError,
        NotFoundError,
        SampleError,
        StoreError,
        VerilabelError,
    )
    from verilabel.labels import Box, Classification, Detection, Keypoints, Mask, Polygon
    from verilabel.models.interface import ImageItem, LoadRequest, Model, ModelSpec, PredictContext
    from verilabel.runs.config import RunRequest
    from verilabel.store import Store


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _MODULES)
