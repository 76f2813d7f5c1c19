"""Shared pieces for torch-based adapters: device choice and weight loading with clear, fast failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from verilabel.errors import ConfigError, ModelLoadError


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


def load_state_dict(weights: str | None, *, name: str, url: str, cache_dir: Path) -> dict[str, Any]:
    """Weights from an explicit path, else the local hub cache, else one download attempt (no retries)."""
    import torch

    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelLoadError(
                f"weights file for {name!r} not found: {path}. Pass an existing .pth file to --weights."
            )
        return _read(path)
    cached = cache_dir / Path(url).name
    if cached.is_file():
        return _read(cached)
    if offline():
        raise ModelLoadError(
            f"weights for {name!r} are not on this machine and VERILABEL_OFFLINE is set. "
            f"Download {url} where a network is available and put it at {cached}, or pass "
            "--weights /path/to/file.pth."
        )
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ModelLoadError(
            f"weights for {name!r} are not on this machine and the download failed ({type(exc).__name__}: "
            f"{exc}). Download {url} where a network is available and put it at {cached}, or pass "
            "--weights /path/to/file.pth."
        ) from None


def offline() -> bool:
    """``VERILABEL_OFFLINE=1`` (or HF_HUB_OFFLINE=1) forbids every download attempt."""
    return any(os.environ.get(var, "") not in ("", "0") for var in ("VERILABEL_OFFLINE", "HF_HUB_OFFLINE"))


def _read(path: Path) -> dict[str, Any]:
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
