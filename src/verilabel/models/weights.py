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

import hashlib
import os
import re
import tempfile
import urllib.parse
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


def missing(source: str) -> str | None:
    """What is missing for the default weights of a catalogue entry to load here with no download, and where
    they go; None when they are here. Reads the local caches only."""
    kind, _, ref = source.partition(":")
    if kind == "user":
        return "no default weights: pass --weights FILE"
    if kind == "hf" and not hf_cached(ref):
        return f"weights {ref} not in the Hugging Face cache ({_hf_cache()}): `hf download {ref}`, or --weights DIR"
    if kind in ("url", "torch"):
        cached = _cached_file(ref, torch_hub_dir() if kind == "torch" else None)
        if not cached.is_file():
            return f"weights file {cached.name} not in {cached.parent} (downloaded at first use when online)"
    return None


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
    if offline():
        raise ModelLoadError(_hf_missing(repo, name, "downloads are off"))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(DOWNLOAD_TIMEOUT_S))
    try:
        folder = Path(snapshot_download(repo, allow_patterns=list(files) or None))
        if not _complete(folder) and "*.safetensors" in files:  # an older repo: PyTorch pickles only
            folder = Path(snapshot_download(repo, allow_patterns=[*files, "*.bin"]))
    except Exception as exc:
        why = gated(repo) if type(exc).__name__ == "GatedRepoError" else f"the download failed ({_reason(exc)})"
        raise ModelLoadError(_hf_missing(repo, name, why)) from None
    return folder


def gated(repo: str) -> str:
    """Why a gated repo cannot be downloaded, and how to get access (SAM 3 and others ask for a licence)."""
    return (
        f"{repo} is gated: request access on https://huggingface.co/{repo} (accept its licence), then log in "
        "with `hf auth login` or set HF_TOKEN"
    )


def _hf_missing(repo: str, name: str, why: str) -> str:
    where = f"the Hugging Face cache ({_hf_cache()})"
    return (
        f"weights {repo!r} for {name!r} are not in {where} and {why}. Run `hf download {repo}` on a machine with "
        f"a network and copy {where}, or save the model with save_pretrained() and pass that directory to --weights."
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    """A weights file: ``--weights`` if it is one, else the cached copy of ``url``, else one download, checked
    against the SHA-256 the URL names when it names one (torchvision's ``-<hash prefix>.pth``)."""
    if override:
        return _override_file(override, name)
    cached = _cached_file(url, cache_dir)
    if cached.is_file():
        return cached
    if offline():
        raise ModelLoadError(_url_missing(url, name, cached, "VERILABEL_OFFLINE is set"))
    cached.parent.mkdir(parents=True, exist_ok=True)
    part = tempfile.NamedTemporaryFile(dir=cached.parent, delete=False, suffix=".part")  # noqa: SIM115
    try:
        digest = hashlib.sha256()
        with part, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                part.write(chunk)
        _check_digest(url, digest.hexdigest(), name)
        os.replace(part.name, cached)  # a killed download never leaves a truncated file under the real name
    except ModelLoadError:
        Path(part.name).unlink(missing_ok=True)
        raise
    except Exception as exc:
        Path(part.name).unlink(missing_ok=True)
        raise ModelLoadError(_url_missing(url, name, cached, f"the download failed ({_reason(exc)})")) from None
    return cached


def _override_file(override: str, name: str) -> Path:
    path = Path(override).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"weights file for {name!r} not found: {path}. Pass an existing file to --weights.")
    return path


def _cached_file(url: str, cache_dir: Path | None) -> Path:
    return (cache_dir or weights_dir()) / Path(urllib.parse.urlparse(url).path).name


def _url_missing(url: str, name: str, cached: Path, why: str) -> str:
    return (
        f"weights for {name!r} are not on this machine and {why}. Download {url} where a network is available "
        f"and put it at {cached}, or pass --weights /path/to/file."
    )


_HASH_PREFIX = re.compile(r"-([a-f0-9]{8,64})\.[A-Za-z0-9]+$")  # torchvision / torch.hub: NAME-<sha256 prefix>.pth
_HASH_SEGMENT = re.compile(r"/([a-f0-9]{64})/")  # a full SHA-256 as a folder (OpenAI's CLIP releases)


def expected_digest(url: str) -> str | None:
    """The SHA-256 (or its prefix) that ``url`` names, if it names one."""
    path = urllib.parse.urlparse(url).path
    found = _HASH_PREFIX.search(path) or _HASH_SEGMENT.search(path)
    return found.group(1) if found else None


def _check_digest(url: str, actual: str, name: str) -> None:
    expected = expected_digest(url)
    if expected is not None and not actual.startswith(expected):
        raise ModelLoadError(
            f"the weights downloaded for {name!r} from {url} are corrupt: their SHA-256 is {actual[:16]}..., the URL "
            f"names {expected}. Nothing was kept; try again, or download the file yourself and pass --weights."
        )


def ensure_obtainable(source: str, override: str | None, *, name: str) -> None:
    """Raise the loader's own ModelLoadError now, before a run starts, when the weights are neither on this
    machine nor downloadable: missing with downloads off, or (downloads allowed) their source cannot be
    reached. Cheap when they are present: no network is touched."""
    kind, _, ref = source.partition(":")
    if kind in ("url", "torch"):
        if override:
            _override_file(override, name)
            return
        cached = _cached_file(ref, torch_hub_dir() if kind == "torch" else None)
        if cached.is_file():
            return
        if offline():
            raise ModelLoadError(_url_missing(ref, name, cached, "VERILABEL_OFFLINE is set"))
        problem = _unreachable(ref)
        if problem:
            raise ModelLoadError(_url_missing(ref, name, cached, f"cannot be downloaded now ({problem})"))
    elif kind == "hf":
        repo = hf_repo(source, override, name=name)
        if isinstance(repo, Path) or hf_cached(repo):
            return
        if offline():
            raise ModelLoadError(_hf_missing(repo, name, "downloads are off"))
        problem = _hub_unreachable(repo)
        if problem:
            raise ModelLoadError(_hf_missing(repo, name, f"cannot be downloaded now ({problem})"))


PROBE_TIMEOUT_S = 5


def _unreachable(url: str) -> str | None:
    """Why ``url`` cannot be fetched now (a HEAD request), or None when it can."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            return None
    except Exception as exc:
        return _reason(exc)


def _hub_unreachable(repo: str) -> str | None:
    """Why the hub repo cannot be downloaded now (missing, gated, no network), or None when it can."""
    try:
        from huggingface_hub import hf_hub_url
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        return None  # the loader reports the missing library
    from huggingface_hub import get_hf_file_metadata

    try:
        get_hf_file_metadata(hf_hub_url(repo, "config.json"), timeout=PROBE_TIMEOUT_S)
    except GatedRepoError:
        return gated(repo)
    except RepositoryNotFoundError:
        return f"no repository {repo} on the hub (or it is private: log in with `hf auth login`)"
    except Exception as exc:
        if "404" in str(exc):  # a repo without config.json at the top (OpenCLIP): it exists
            return None
        return _reason(exc)
    return None


def url_cached(url: str, cache_dir: Path | None = None) -> bool:
    return _cached_file(url, cache_dir).is_file()


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
        cached = _cached_file(ref, torch_hub_dir() if kind == "torch" else None)
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
