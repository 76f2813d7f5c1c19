"""ONNX exports of models' networks, built once and kept under ``VERILABEL_HOME/cache/onnx``.

An entry is keyed by what decides the exported graph: the weights' content hash, the model's name and structure,
the input shape and its dynamic axes, the opset and the exporter's version (``key``). It is two files,
``NAME-KEY.onnx`` and ``NAME-KEY.json`` (the key, the ONNX file's SHA-256 and size, when and how fast it was
built). Both are written to a temporary file and renamed, the JSON last, and under a file lock, so that workers
exporting the same model at once build it once, and a kill -9 mid-export leaves no entry that looks whole. An
entry whose file no longer matches its recorded hash is deleted and rebuilt.

A new export is checked before it is kept: ONNX Runtime must give torch's outputs (within 1e-3, relative to
their scale) on an input of the export's shape and on one that varies each dynamic axis.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPSET = 17
RECIPE = 1  # bump when the way verilabel exports changes: old entries stop matching
TOLERANCE = 1e-3


class ExportFailed(Exception):
    """The network could not be exported, or its export does not run or does not match torch (message: why)."""


@dataclass(frozen=True)
class Export:
    path: Path
    built_seconds: float | None  # None: taken from the cache

    def describe(self) -> str:
        return "cached" if self.built_seconds is None else f"built in {self.built_seconds:.1f} s"


@dataclass(frozen=True)
class CacheEntry:
    """One kept export, as ``verilabel cache list`` shows it."""

    path: Path
    model: str
    size: int
    created: str
    valid: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "file": self.path.name,
            "bytes": self.size,
            "created": self.created,
            "valid": self.valid,
        }


def cache_dir() -> Path:
    from verilabel.settings import Settings

    return Settings.from_env().home / "cache" / "onnx"


def weights_digest(module: Any) -> str:
    """SHA-256 of the module's parameters and buffers (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.reshape(-1).view(_byte_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _byte_dtype() -> Any:
    import torch

    return torch.uint8


def key(
    module: Any, *, name: str, shape: Sequence[int], dynamic: Sequence[int], settings: dict[str, Any]
) -> dict[str, Any]:
    import torch

    return {
        "model": name,
        "weights": weights_digest(module),
        "structure": hashlib.sha256(repr(module).encode()).hexdigest(),
        "settings": settings,
        "input": list(shape),
        "dynamic": list(dynamic),
        "opset": OPSET,
        "exporter": f"torch {torch.__version__} (TorchScript exporter)",
        "recipe": RECIPE,
    }


def cached_export(
    module: Any,
    *,
    name: str,
    shape: tuple[int, ...],
    dynamic: tuple[int, ...],
    settings: dict[str, Any] | None = None,
    folder: Path | None = None,
) -> Export:
    """The ONNX file of ``module`` for inputs like ``shape``: from the cache, or exported, checked and kept."""
    wanted = key(module, name=name, shape=shape, dynamic=dynamic, settings=settings or {})
    folder = folder or cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportFailed(f"cannot create the export cache {folder}: {exc.strerror}") from None
    stem = f"{_safe(name)}-{hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:20]}"
    model_path, meta_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    with _locked(folder / f".{stem}.lock"):
        if _intact(model_path, meta_path, wanted):
            return Export(model_path, None)
        for stale in (meta_path, model_path):  # meta first: a file without its meta is never taken as whole
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        start = time.perf_counter()
        temporary = folder / f".{stem}.{os.getpid()}.tmp"
        try:
            _export(module, temporary, shape, dynamic)
            check_export(module, temporary, shape, dynamic)
            meta = {"key": wanted, "sha256": _file_digest(temporary), "bytes": temporary.stat().st_size}
            os.replace(temporary, model_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        seconds = time.perf_counter() - start
        meta |= {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(seconds, 2)}
        _write_atomic(meta_path, json.dumps(meta, indent=1))
    return Export(model_path, seconds)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "model"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _read_meta(meta_path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _intact(model_path: Path, meta_path: Path, wanted: dict[str, Any]) -> bool:
    meta = _read_meta(meta_path)
    if meta is None or meta.get("key") != wanted or not model_path.is_file():
        return False
    return meta.get("bytes") == model_path.stat().st_size and meta.get("sha256") == _file_digest(model_path)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _export(module: Any, path: Path, shape: tuple[int, ...], dynamic: tuple[int, ...]) -> None:
    import torch

    example = _example(shape, seed=0)
    # Attention's inference fast path is one fused operator the exporter lacks: export the composite form.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), warnings.catch_warnings(), _native_output_silenced():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's concern
            outputs = module(example)
            count = len(outputs) if isinstance(outputs, tuple | list) else 1
            names = [f"output{i}" for i in range(count)]
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                input_names=["input"],
                output_names=names,
                dynamic_axes={"input": {axis: f"axis{axis}" for axis in dynamic}, **{n: {0: "axis0"} for n in names}},
                opset_version=OPSET,
            )
    except Exception as exc:
        raise ExportFailed(f"the ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})") from None
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """The exporter's C++ side prints the whole graph to stderr when an operator has no ONNX form: the reason
    is in the exception, so its output goes nowhere while it runs."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _example(shape: Sequence[int], seed: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.rand(tuple(shape), generator=generator)


def check_export(module: Any, path: Path, shape: tuple[int, ...], dynamic: tuple[int, ...]) -> None:
    """ONNX Runtime gives torch's outputs on the export's shape and on one that changes every dynamic axis."""
    import numpy as np
    import torch

    from verilabel.models.runtimes.onnx_core import OnnxCore

    try:
        core = OnnxCore(path, threads=1)
    except Exception as exc:
        raise ExportFailed(f"ONNX Runtime cannot open the export ({str(exc).splitlines()[0][:300]})") from None
    varied = [size + (1 if axis == 0 else 32) if axis in dynamic else size for axis, size in enumerate(shape)]
    for probe_shape in (shape, varied):
        probe = _example(probe_shape, seed=1)
        with torch.no_grad():
            expected = module(probe)
        expected = expected if isinstance(expected, tuple | list) else (expected,)
        try:
            got = core(probe)
        except Exception as exc:
            raise ExportFailed(
                f"ONNX Runtime fails on an input of shape {tuple(probe_shape)} ({str(exc).splitlines()[0][:300]})"
            ) from None
        for i, (theirs, ours) in enumerate(zip(expected, got, strict=True)):
            reference = theirs.detach().float().cpu().numpy()
            value = ours.float().numpy()
            scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
            if reference.shape != value.shape:
                raise ExportFailed(f"output {i} has shape {value.shape} in ONNX Runtime, {reference.shape} in torch")
            error = float(np.abs(reference - value).max(initial=0.0))
            if error > TOLERANCE * scale:
                raise ExportFailed(
                    f"ONNX Runtime's output {i} differs from torch's by {error:.3g} (scale {scale:.3g}) on an input "
                    f"of shape {tuple(probe_shape)}"
                )


def entries(folder: Path | None = None) -> list[CacheEntry]:
    """The kept exports, newest first (``valid``: the file still matches its recorded hash)."""
    folder = folder or cache_dir()
    found = []
    for meta_path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        meta = _read_meta(meta_path) or {}
        model_path = meta_path.with_suffix(".onnx")
        valid = bool(meta) and _intact(model_path, meta_path, meta.get("key"))  # type: ignore[arg-type]
        size = model_path.stat().st_size if model_path.is_file() else 0
        model = str((meta.get("key") or {}).get("model", meta_path.stem))
        found.append(CacheEntry(model_path, model, size, str(meta.get("created", "")), valid))
    return sorted(found, key=lambda entry: entry.created, reverse=True)


def clear(folder: Path | None = None) -> tuple[int, int]:
    """Delete every kept export (and leftovers of interrupted ones): (files removed, bytes freed)."""
    folder = folder or cache_dir()
    removed = freed = 0
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.suffix in (".onnx", ".json", ".tmp", ".lock") and path.is_file():
            freed += path.stat().st_size
            path.unlink()
            removed += 1
    return removed, freed
