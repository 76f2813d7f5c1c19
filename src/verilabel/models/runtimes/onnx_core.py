"""An ONNX Runtime session standing in for a torch module: torch tensors in, a tuple of torch tensors out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class OnnxCore:
    """CPU session on one ONNX file. ``threads`` is its share of the cores (intra-op); one inter-op thread,
    because the engine's decode pool already works beside it."""

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its optimiser's notes are not the user's concern
        self.path = path
        self.threads = threads
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def __call__(self, batch: Any) -> tuple[Any, ...]:
        import torch

        array = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return tuple(torch.from_numpy(out) for out in self._session.run(None, {self._input: array}))
