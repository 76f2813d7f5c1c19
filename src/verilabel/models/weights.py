"""Where a model's weights come from: a local path, the local cache of a hub, or one download attempt.

A catalogue entry names its default source with a prefix:

- ``hf:ORG/NAME``: a Hugging Face Hub repository (transformers, OpenCLIP), cached in the HF cache;
- ``url:https://...``: one file (torchvision, ultralytics), cached under ``weights_dir()`` or torch's hub cache;
- ``package:DIST``: the weights ship inside an installed Python package.

``--weights`` overrides the source with a local file or directory, or another hub id. Weights found locally load
with no network access at all; missing weights fail fast (one attempt, short timeouts, no retry loops) with a
message naming the exact weights and where to put them. ``VERILABEL_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) forbids
every download attempt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from verilabel.errors import ModelLoadError

DOWNLOAD_TIMEOUT_S = 30


def offline() -> bool:
    return any(os.environ.get(var, "") not in ("", "0") for var in ("VERILABEL_OFFLINE", "HF_HUB_OFFLINE"))


def weights_dir() -> Path:
    """verilabel's own cache for single weight files (ultralytics and other URL sources)."""
    from verilabel.settings import Settings

    return Settings.from_env().home / "weights"


def local_path(weights: str | None) -> Path | None:
    """``--weights`` as an existing local file or directory, else None (it may be a hub id)."""
    if not weights:
        return None
    path = Path(weights).expanduser()
    return path if path.exists() else None


def looks_like_path(weights: str) -> bool:
    return weights.startswith((".", "/", "~")) or weights.endswith((".pt", ".pth", ".onnx", ".bin", ".safetensors"))


def torch_hub_dir() -> Path:
    """torch's own cache of downloaded weight files (shared with torchvision and torch.hub users)."""
    if "TORCH_HOME" in os.environ:
        return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return cache / "torch" / "hub" / "checkpoints"


def cached(source: str) -> bool:
    """The default weights of a catalogue entry are on this machine (no download needed)."""
    kind, _, ref = source.partition(":")
    if kind == "package":
        return True
    if kind == "hf":
        return hf_cached(ref)
    if kind == "url":
        return url_cached(ref)
    if kind == "torch":
        return url_cached(ref, torch_hub_dir())
    return False  # "user": the weights must be passed with --weights


def source_file(source: str, override: str | None, *, name: str) -> Path:
    """The local file of a ``url:`` or ``torch:`` source (or ``--weights``), downloading it once if allowed."""
    kind, _, ref = source.partition(":")
    if kind not in ("url", "torch"):
        raise ValueError(f"{name!r}: {source!r} is not a url: or torch: weights source")
    return url_file(ref, override, name=name, cache_dir=torch_hub_dir() if kind == "torch" else None)


# --- Hugging Face Hub ---------------------------------------------------------------------------------------
def hf_repo(source: str, override: str | None, *, name: str) -> str | Path:
    """A local directory to load from, or the hub repo id (default source or an ``--weights ORG/NAME``)."""
    path = local_path(override)
    if path is not None:
        if not path.is_dir():
            raise ModelLoadError(
                f"--weights for {name!r} must be a directory saved with save_pretrained (or a hub id), got the "
                f"file {path}"
            )
        return path
    if override:
        if looks_like_path(override):
            raise ModelLoadError(f"weights for {name!r} not found: {override}. Pass an existing directory.")
        return override
    return source.removeprefix("hf:")


def hf_snapshot(repo: str | Path, *, name: str, files: tuple[str, ...] = ()) -> Path:
    """The local snapshot directory of ``repo``: the directory itself, the HF cache, or one download.

    ``files`` are the patterns the model needs (``*.json``, ``*.safetensors``...); a cached snapshot counts only
    when it holds a config and weights, so a half-finished earlier download is completed rather than loaded."""
    if isinstance(repo, Path):
        return repo
    from huggingface_hub import snapshot_download

    try:
        cached = Path(snapshot_download(repo, local_files_only=True))
        if _complete(cached):
            return cached
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        pass
    where = f"the Hugging Face cache ({_hf_cache()})"
    fix = (
        f"Run `hf download {repo}` on a machine with a network and copy {where}, or save the model with "
        f"save_pretrained() and pass that directory to --weights."
    )
    if offline():
        raise ModelLoadError(f"weights {repo!r} for {name!r} are not in {where} and downloads are off. {fix}")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(DOWNLOAD_TIMEOUT_S))
    try:
        folder = Path(snapshot_download(repo, allow_patterns=list(files) or None))
        if not _complete(folder) and "*.safetensors" in files:  # an older repo: PyTorch pickles only
            folder = Path(snapshot_download(repo, allow_patterns=[*files, "*.bin"]))
    except Exception as exc:
        raise ModelLoadError(
            f"weights {repo!r} for {name!r} are not in {where} and the download failed "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). {fix}"
        ) from None
    return folder


_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")


def _complete(folder: Path) -> bool:
    """A snapshot a model can load from: some config and some weights."""
    has_config = any(folder.glob("*config*.json"))
    return has_config and any(any(folder.glob(pattern)) for pattern in _WEIGHT_FILES)


def hf_cached(repo: str) -> bool:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return False
    try:
        return _complete(Path(snapshot_download(repo.removeprefix("hf:"), local_files_only=True)))
    except Exception:
        return False


def _hf_cache() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:
        return "~/.cache/huggingface/hub"


# --- single files from a URL ---------------------------------------------------------------------------------
def url_file(url: str, override: str | None, *, name: str, cache_dir: Path | None = None) -> Path:
    """A weights file: ``--weights`` if it is one, else the cached copy of ``url``, else one download."""
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ModelLoadError(f"weights file for {name!r} not found: {path}. Pass an existing file to --weights.")
        return path
    folder = cache_dir or weights_dir()
    cached = folder / Path(url).name
    if cached.is_file():
        return cached
    fix = f"Download {url} where a network is available and put it at {cached}, or pass --weights /path/to/file."
    if offline():
        raise ModelLoadError(f"weights for {name!r} are not on this machine and VERILABEL_OFFLINE is set. {fix}")
    folder.mkdir(parents=True, exist_ok=True)
    part = tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part")  # noqa: SIM115
    try:
        with part, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, part)
        os.replace(part.name, cached)  # a killed download never leaves a truncated file under the real name
    except Exception as exc:
        Path(part.name).unlink(missing_ok=True)
        raise ModelLoadError(
            f"weights for {name!r} are not on this machine and the download failed ({type(exc).__name__}: {exc}). {fix}"
        ) from None
    return cached


def url_cached(url: str, cache_dir: Path | None = None) -> bool:
    return ((cache_dir or weights_dir()) / Path(url).name).is_file()


def identity(source: str, override: str | None) -> str:
    """What a run records as the weights it used: the hub repo at its cached revision, or a file / directory
    with its size and modification time (cheap to compute, and it changes when the file is replaced)."""
    path = local_path(override)
    if path is not None:
        return _describe(path.resolve())
    if override:
        source = f"hf:{override}"  # another hub id
    kind, _, ref = source.partition(":")
    if kind == "hf":
        try:
            from huggingface_hub import snapshot_download

            snapshot = Path(snapshot_download(ref, local_files_only=True))
        except Exception:
            return source
        return f"{source}@{snapshot.name}"  # the snapshot folder is named by the commit
    if kind in ("url", "torch"):
        cached = (torch_hub_dir() if kind == "torch" else weights_dir()) / Path(ref).name
        return _describe(cached) if cached.is_file() else source
    return source


def _describe(path: Path) -> str:
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file()]
        size, stamp = sum(f.stat().st_size for f in files), max((f.stat().st_mtime for f in files), default=0)
    else:
        size, stamp = path.stat().st_size, path.stat().st_mtime
    from datetime import UTC, datetime

    modified = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{path} ({size} bytes, modified {modified})"
