"""Which runtime runs a model's network: torch (eager), or ONNX Runtime on the CPU, where it is 2-3x faster for
convolutional networks (docs/performance.md).

An adapter hands ``accelerate`` the part of its network that does the heavy lifting, a ``torch.nn.Module`` from
one input tensor to a tensor or a tuple of tensors, and gets back a ``Core`` with that contract: the module
itself, or an ONNX Runtime session on its cached export (``export_cache``). Pre- and post-processing stay the
adapter's own, so the labels do not change with the runtime.

``auto`` takes ONNX Runtime on a CPU when the export builds and its outputs match torch's, and torch otherwise,
saying why (``RuntimeChoice``); ``onnx`` fails with that reason instead of falling back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from verilabel.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from verilabel.models.interface import LoadRequest

Runtime = Literal["auto", "torch", "onnx"]
RUNTIMES: tuple[Runtime, ...] = ("auto", "torch", "onnx")

# One input tensor -> the network's output tensors, in order.
Core = Callable[[Any], tuple[Any, ...]]


@dataclass(frozen=True)
class RuntimeChoice:
    """What runs a loaded model, and why (``reason``: empty when it is what was asked; ``warning``: ``auto``
    wanted ONNX Runtime and fell back). ``export`` says whether the ONNX export came from the cache or was
    built now, and how long that took."""

    name: str  # "torch", "onnx", or the model's own ("mediapipe", ...)
    reason: str = ""
    warning: bool = False
    export: str = ""
    threads: int | None = None  # ONNX Runtime's intra-op threads: this worker's share of the cores
    device: str = ""  # where the network runs ("cpu", "cuda:0"), when the adapter resolved it

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"runtime": self.name}
        if self.reason:
            out["runtime_reason"] = self.reason
        if self.warning:
            out["runtime_warning"] = True
        if self.export:
            out["runtime_export"] = self.export
        if self.threads:
            out["runtime_threads"] = self.threads
        return out


def check_runtime(value: str) -> Runtime:
    if value not in RUNTIMES:
        raise ConfigError("runtime", f"{value!r} is not a runtime; use auto, torch or onnx")
    return value  # type: ignore[return-value]


class TorchCore:
    """The module itself as a ``Core``: its outputs as a tuple."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __call__(self, batch: Any) -> tuple[Any, ...]:
        out = self.module(batch)
        return tuple(out) if isinstance(out, tuple | list) else (out,)


def default_threads(workers: int = 1) -> int:
    """Each worker's share of the CPU cores (N workers on C cores: C // N each, at least one), so that their
    thread pools do not fight."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def accelerate(
    module: Any,
    *,
    request: LoadRequest,
    device: Any,
    name: str,
    shape: Sequence[int],
    dynamic: Sequence[int] = (0,),
    settings: dict[str, Any] | None = None,
) -> tuple[Core, RuntimeChoice]:
    """The runtime for ``module`` (eval mode, on ``device``) as the run asks (``request.runtime``).

    ``shape`` is an input the module takes (batch of 1); ``dynamic`` the input axes that vary between calls (0:
    the batch; add 2 and 3 for images of varying size). ``settings`` is what else changes the module's graph
    without changing its weights (an option of its head): it is part of the export's cache key."""
    wanted = check_runtime(request.runtime)
    where = str(device)
    module.eval()  # a wrapper built around an eval network starts in training mode; the exporter restores it
    if wanted == "torch":
        return TorchCore(module), RuntimeChoice("torch", device=where)
    kind = str(getattr(device, "type", device)).split(":")[0]
    if kind != "cpu":
        on_device = f"the model runs on {device}, where torch is the runtime (ONNX Runtime is used on the CPU)"
        if wanted == "onnx":
            raise ModelLoadError(f"--runtime onnx for {name!r}: {on_device}. Add --device cpu, or use --runtime torch.")
        return TorchCore(module), RuntimeChoice("torch", reason=on_device, device=where)
    reason = _why_not_onnx()
    if reason is None:
        from verilabel.models.runtimes.export_cache import ExportFailed, cached_export
        from verilabel.models.runtimes.onnx_core import OnnxCore

        try:
            export = cached_export(module, name=name, shape=tuple(shape), dynamic=tuple(dynamic), settings=settings)
            threads = request.threads or default_threads()
            core = OnnxCore(export.path, threads=threads)
            return core, RuntimeChoice("onnx", export=export.describe(), threads=threads, device=where)
        except ExportFailed as exc:
            reason = str(exc)
    if wanted == "onnx":
        raise ModelLoadError(f"--runtime onnx for {name!r}: {reason}. Run it with --runtime torch (or auto).")
    choice = RuntimeChoice("torch", reason=f"ONNX Runtime not used: {reason}", warning=True, device=where)
    return TorchCore(module), choice


def _why_not_onnx() -> str | None:
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed: pip install onnxruntime"
    return None


def runtime_of(model: Any, *, catalogued: bool, requested: str = "auto") -> RuntimeChoice:
    """What runs a loaded model: what its adapter says (``model.runtime``); else torch for a catalogue model
    (its adapter has no ONNX export), and the model's own business for a user's model."""
    choice = getattr(model, "runtime", None)
    if isinstance(choice, RuntimeChoice):
        return choice
    if not catalogued:
        return RuntimeChoice("own", reason="a model of your own runs itself")
    return RuntimeChoice("torch", reason="this model has no ONNX export" if requested == "auto" else "")


def unsupported(name: str, request: LoadRequest, why: str) -> RuntimeChoice:
    """The choice for a model that has no ONNX export (``why``); ``--runtime onnx`` is refused."""
    if request.runtime == "onnx":
        raise ModelLoadError(f"--runtime onnx for {name!r}: {why}. Run it with --runtime torch (or auto).")
    return RuntimeChoice("torch", reason=why if request.runtime == "auto" else "")
