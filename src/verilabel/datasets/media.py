"""Media beyond the local disk: samples whose path is a URI (``s3://``, ``gs://``, ``az://``, ``https://``), read
through fsspec and its backends (``pip install 'verilabel[s3]'``, ``[gcs]``, ``[azure]``, ``[remote]`` for https).

- ``list_images(prefix)``: the images under a bucket prefix (``dataset create --from-dir s3://bucket/prefix``).
- ``read_bytes(uri)``: one object, with retries for what passes (throttling, 5xx, timeouts, dropped
  connections: exponential backoff) and a ``SampleError`` naming the problem for what does not (no such object
  or bucket, access denied), which a run records as that sample's failure.
- ``read_head(uri)``: the first bytes of an object (an image's header without the whole object).

Credentials come from each backend's usual places (AWS_* variables and ~/.aws for S3, application default
credentials for GCS, AZURE_STORAGE_* for Azure). ``VERILABEL_S3_ENDPOINT`` points S3 at another endpoint
(MinIO, Ceph, a test server). The concurrency is the caller's: a run's decode threads, the import's probe pool.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cache
from pathlib import PurePosixPath
from typing import Any, TypeVar

from verilabel.errors import DatasetImportError, SampleError

T = TypeVar("T")
REMOTE_SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
REMOTE_SCHEMES |= {"http": "remote", "https": "remote"}  # scheme -> the verilabel extra that installs its backend
ATTEMPTS = 4
BACKOFF_S = 0.25  # then 0.5, 1.0: about two seconds in all before a transient error counts as a failure
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
HEAD_BYTES = 1 << 16


def is_remote(path: str | os.PathLike[str]) -> bool:
    scheme, sep, _ = str(path).partition("://")
    return bool(sep) and scheme.lower() in REMOTE_SCHEMES


def filesystem(uri: str) -> Any:
    """The fsspec filesystem of ``uri``'s scheme (one per scheme, reused); fsspec takes the whole URI as path."""
    return _filesystem(uri.partition("://")[0].lower())


@cache
def _filesystem(scheme: str) -> Any:
    try:
        import fsspec
    except ImportError:
        raise _missing_backend(scheme) from None
    options: dict[str, Any] = {}
    if scheme == "s3" and os.environ.get("VERILABEL_S3_ENDPOINT"):
        options["endpoint_url"] = os.environ["VERILABEL_S3_ENDPOINT"]
    if scheme in ("http", "https"):
        options["client_kwargs"] = {"trust_env": True}
    try:
        return fsspec.filesystem(scheme, **options)
    except (ImportError, ValueError):
        raise _missing_backend(scheme) from None


def _missing_backend(scheme: str) -> DatasetImportError:
    extra = REMOTE_SCHEMES.get(scheme, "remote")
    return DatasetImportError(f"{scheme}:// paths need their fsspec backend: pip install 'verilabel[{extra}]'")


def read_bytes(uri: str) -> bytes:
    """The whole object at ``uri``."""
    fs = filesystem(uri)
    data: bytes = with_retries(uri, lambda: fs.cat_file(uri))
    return data


def read_head(uri: str, size: int = HEAD_BYTES) -> bytes:
    """The first ``size`` bytes of the object (an image's header is in them), or all of a smaller one."""
    fs = filesystem(uri)
    data: bytes = with_retries(uri, lambda: fs.cat_file(uri, start=0, end=size))
    return data


def info(uri: str) -> dict[str, Any]:
    """The object's size and version marks (ETag, modification time) where the backend gives them."""
    fs = filesystem(uri)
    return dict(with_retries(uri, lambda: fs.info(uri)))


def with_retries(uri: str, call: Callable[[], T]) -> T:
    """``call()``, retried with backoff while its error passes; a ``SampleError`` naming the problem otherwise."""
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except Exception as exc:
            permanent = permanent_reason(uri, exc)
            if permanent is not None:
                raise SampleError(permanent) from exc
            if attempt == ATTEMPTS - 1:
                raise SampleError(f"cannot read {uri} after {ATTEMPTS} attempts: {_describe(exc)}") from exc
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def permanent_reason(uri: str, exc: BaseException) -> str | None:
    """Why reading ``uri`` cannot succeed by trying again, or None when the error may pass."""
    status = _status(exc)
    text = str(exc)
    if isinstance(exc, DatasetImportError):
        return str(exc)
    if isinstance(exc, FileNotFoundError) or status == 404 or "NoSuchKey" in text:
        if "NoSuchBucket" in text or "bucket does not exist" in text.lower():
            return f"no such bucket: {bucket_of(uri)} (reading {uri})"
        return f"not found: {uri}"
    if isinstance(exc, PermissionError) or status in (401, 403) or "AccessDenied" in text:
        return f"access denied to {uri}: check the credentials of this machine (and of every worker node)"
    if status is not None and status not in TRANSIENT_STATUS and 400 <= status < 500:
        return f"cannot read {uri}: HTTP {status}"
    if isinstance(exc, IsADirectoryError | ValueError):
        return f"cannot read {uri}: {_describe(exc)}"
    return None


def _status(exc: BaseException) -> int | None:
    for candidate in (exc, exc.__cause__, exc.__context__):
        status = getattr(candidate, "status", None) or getattr(candidate, "status_code", None)
        if isinstance(status, int):
            return status
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):  # botocore's ClientError
            code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if isinstance(code, int):
                return code
    return None


def bucket_of(uri: str) -> str:
    """``s3://bucket/a/b.jpg`` -> ``s3://bucket``."""
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def list_images(prefix: str, extensions: frozenset[str]) -> list[str]:
    """The image objects under ``prefix`` (recursively, hidden names skipped), as full URIs, sorted."""
    scheme = prefix.partition("://")[0].lower()
    if scheme in ("http", "https"):
        raise DatasetImportError(
            f"{prefix}: an https address cannot be listed. Put the images in a bucket, or add them by path"
        )
    fs = filesystem(prefix)
    try:
        found = with_retries(prefix, lambda: fs.find(prefix.rstrip("/") + "/"))
    except SampleError as exc:
        raise DatasetImportError(str(exc)) from None
    uris = []
    for key in found:
        name = PurePosixPath(key)
        if name.suffix.lower() in extensions and not any(part.startswith(".") for part in name.parts):
            uris.append(key if "://" in key else f"{scheme}://{key}")
    if not uris and not with_retries(prefix, lambda: fs.exists(bucket_of(prefix))):
        raise DatasetImportError(f"no such bucket: {bucket_of(prefix)} (listing {prefix})")
    return sorted(uris)
