"""Shared pieces for torch-based adapters: device choice and weight loading with clear, fast failures."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from verilabel.errors import ConfigError, ModelLoadError
from verilabel.models.weights import source_file


def resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError("device", f"{device!r} is not a device: use auto, cpu or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but torch sees no CUDA GPU: use --device cpu")
    return resolved


def load_state_dict(source: str, override: str | None, *, name: str) -> dict[str, Any]:
    """The state dict of a ``url:`` / ``torch:`` weights source or ``--weights`` file (see ``weights``)."""
    return read_state_dict(source_file(source, override, name=name))


def read_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot read weights {path}: {exc}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def is_asynchronous(device: Any) -> bool:
    """CUDA returns from a forward once its kernels are queued: the engine can then build one batch's labels
    while the GPU runs the next (``Model.asynchronous``)."""
    return getattr(device, "type", str(device)).startswith("cuda")


# Devices whose forward passes run under bf16 / fp16 autocast (tests add "cpu" to exercise the path on a CPU).
AUTOCAST_DEVICE_TYPES: tuple[str, ...] = ("cuda",)


def _device_type(device: Any) -> str:
    return str(getattr(device, "type", device)).split(":")[0]


def inference(device: Any, *, half: bool = True) -> Any:
    """The context for a forward pass: ``inference_mode``, plus bf16 autocast on a CUDA device (fp16 where the
    GPU has no bf16) unless ``half`` is False. On a CPU: fp32, because CPU autocast is slower for most models.
    Box heads run in fp32 all the same (``full_precision``)."""
    import contextlib

    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    kind = _device_type(device)
    if half and kind in AUTOCAST_DEVICE_TYPES:
        bf16 = kind != "cuda" or torch.cuda.is_bf16_supported()
        stack.enter_context(torch.autocast(kind, dtype=torch.bfloat16 if bf16 else torch.float16))
    return stack


def full_precision(*modules: Any) -> None:
    """Run these submodules in fp32 inside ``inference``'s autocast: their inputs are cast up and autocast is off
    while they run. For box heads: bf16 keeps 8 significant bits, so a coordinate of 637.3 px comes out as 636
    (steps of 4 px from 512 to 1024 px; 25 px on a 4000 px photo once scaled back). The heads are a small
    part of a detector's compute; the backbone stays in half precision."""
    import torch

    def up(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
            return value.float()
        if isinstance(value, list | tuple):
            return type(value)(up(v) for v in value)
        if isinstance(value, dict):
            return {key: up(v) for key, v in value.items()}
        return value

    for module in modules:
        forward = module.forward

        def fp32_forward(*args: Any, __forward: Any = forward, **kwargs: Any) -> Any:
            with contextlib.ExitStack() as stack:
                for kind in AUTOCAST_DEVICE_TYPES:
                    stack.enter_context(torch.autocast(kind, enabled=False))
                return __forward(*up(args), **up(kwargs))

        module.forward = fp32_forward


def load_weights(net: Any, state: dict[str, Any], name: str) -> None:
    """Load a state dict strictly; a mismatch (another architecture's file) is a ModelLoadError."""
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"the weights do not fit {name!r}: {str(exc).splitlines()[0]}") from None
