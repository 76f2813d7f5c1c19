"""The few calls of Label Studio's REST API that bulk push and pull need, with errors that say what to fix.

Authentication is Label Studio's access token (``Authorization: Token ...``; Account & Settings > Access Token).
Tasks are listed a page at a time (``fields=task_only``: no annotations or predictions in the listing),
predictions are created in bulk through ``POST /api/projects/ID/import/predictions`` (not limited by the 100 s
timeout of an ML backend's ``/predict``), and annotations come back through the project's JSON export.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from verilabel.errors import ConfigError, VerilabelError

TIMEOUT = 300.0  # an import of a few thousand predictions or a large export takes a while on a small server
PAGE = 1000


@dataclass(frozen=True)
class TaskRef:
    """A task of a project: its id and its image reference (``data`` field of the labeling config's image)."""

    id: int
    image: str | None
    data: dict[str, Any]


class LabelStudioError(VerilabelError):
    """Label Studio answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioClient:
    def __init__(self, url: str, token: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError("url", f"{url!r} is not Label Studio's address: pass it as http(s)://HOST:PORT")
        if not token:
            raise ConfigError(
                "token", "no access token: pass --token (Label Studio: Account & Settings > Access Token)"
            )
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """A JSON request; the JSON answer."""
        payload = self._send(method, path, None if body is None else json.dumps(body).encode())
        return json.loads(payload) if payload else None

    def _send(self, method: str, path: str, data: bytes | None = None) -> bytes:
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:400].decode(errors="replace")
            if exc.code in (401, 403):
                raise ConfigError(
                    "token",
                    f"Label Studio refused the token ({exc.code}): pass the Access Token of a user of this project "
                    "(Account & Settings > Access Token; with a personal access token, enable legacy tokens)",
                ) from None
            if exc.code == 404 and path.startswith("/api/projects/"):
                project = path.split("/")[3]
                raise ConfigError("project", f"Label Studio has no project {project} (its id is in its URL)") from None
            raise LabelStudioError(exc.code, f"Label Studio answered {exc.code} to {method} {path}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise VerilabelError(f"cannot reach Label Studio at {self.url} ({reason}): check --url") from None

    def project(self, project: int) -> dict[str, Any]:
        return dict(self.call("GET", f"/api/projects/{project}"))

    def tasks(self, project: int, image_key: str | None = None) -> Iterator[TaskRef]:
        """Every task of the project, a page at a time; ``image_key``: its data field of the image (else the
        first string field)."""
        page = 1
        while True:
            try:
                answer = self.call("GET", f"/api/tasks?project={project}&page={page}&page_size={PAGE}&fields=task_only")
            except LabelStudioError as exc:
                if exc.status == 404 and page > 1:  # past the last page
                    return
                raise
            tasks = answer.get("tasks", []) if isinstance(answer, dict) else answer
            for task in tasks:
                data = task.get("data") or {}
                image = (
                    data.get(image_key) if image_key else next((v for v in data.values() if isinstance(v, str)), None)
                )
                yield TaskRef(int(task["id"]), image if isinstance(image, str) else None, data)
            total = answer.get("total") if isinstance(answer, dict) else None
            if not tasks or len(tasks) < PAGE or (total is not None and page * PAGE >= total):
                return
            page += 1

    def import_predictions(self, project: int, predictions: list[dict[str, Any]]) -> int:
        answer = self.call("POST", f"/api/projects/{project}/import/predictions", predictions)
        return int((answer or {}).get("created", len(predictions)))

    def model_versions(self, task: int) -> list[str]:
        """The model versions of a task's predictions (a push checks the chunk it may have sent before a crash)."""
        return [str(p.get("model_version")) for p in self.call("GET", f"/api/predictions?task={task}") or []]

    def export(self, project: int) -> bytes:
        """The project's JSON export (every task, with its annotations)."""
        return self._send("GET", f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=true")
