"""verilabel: verified auto-labeling for computer-vision datasets.

The public API, loaded lazily so that ``import verilabel`` stays fast (no SQLAlchemy, no torch)::

    import verilabel as vl
    store = vl.Store.open()
    vl.datasets.create_dataset(store, "pets")
    vl.datasets.add_images(store, "pets", "/data/pets")
    run = vl.runs.create_run(store, vl.RunRequest(dataset="pets", task="detection",
                                                  model="mediapipe-face", field="faces"))
    vl.runs.wait_run(store, run.id)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
_MODULES = {"datasets": "verilabel.datasets.service", "runs": "verilabel.runs.service"}

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
    "runs",
]

if TYPE_CHECKING:
    from verilabel.datasets import service as datasets
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
    from verilabel.runs import service as runs
    from verilabel.runs.config import RunRequest
    from verilabel.store import Store


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'verilabel' has no attribute {name!r}")
