"""A real Label Studio server on loopback, offline, in a folder of its own (tests and benchmarks start one)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError

TOKEN = "verilabel-test-token"


@dataclass
class LabelStudio:
    url: str
    media: Path  # its LOCAL_FILES_DOCUMENT_ROOT

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                payload = response.read()
        except HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None
        content_type = response.headers.get("Content-Type", "")
        return json.loads(payload or b"null") if "json" in content_type else payload


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def label_studio_server(executable: str, base: Path) -> Iterator[LabelStudio]:
    """Label Studio started from ``executable`` with its data, home and media under ``base``; stopped after."""
    media = base / "media"
    media.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HOME": str(base / "home"),
        "LABEL_STUDIO_BASE_DATA_DIR": str(base / "data"),
        "LABEL_STUDIO_USERNAME": "admin@example.com",
        "LABEL_STUDIO_PASSWORD": "verilabel-test-password",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false",
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(media),
        # an ML backend on 127.0.0.1, which Label Studio refuses to call by default
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
    }
    env.pop("PYTHONPATH", None)  # its virtualenv, not ours
    log = base / "label-studio.log"
    command = [executable, "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port)]
    command += ["--host", url, "--data-dir", str(base / "data")]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # first start: its migrations take about a minute on 2 cores
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=5):
                    break
            except (URLError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"Label Studio did not start:\n{tail}") from None
                time.sleep(2)
        yield LabelStudio(url, media)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextmanager
def media_server(folder: Path, token: str) -> Iterator[str]:
    """Files of ``folder`` over HTTP as Label Studio serves uploads: ``/data/upload/1/NAME`` wants ``Token
    TOKEN`` (401 without), other paths are open. Yields the server's URL."""
    import http.server
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self) -> None:
            if self.path.startswith("/data/upload/") and self.headers.get("Authorization") != f"Token {token}":
                self.send_error(401)
                return
            self.path = self.path.removeprefix("/data/upload/1")
            super().do_GET()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
