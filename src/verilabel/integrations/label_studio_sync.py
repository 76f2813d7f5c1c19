"""Bulk exchange with a Label Studio project through its API: push labels as predictions, pull annotations back.

``push`` uploads a run's labels (under review: all of them, for people to correct; approved: its field) or a
dataset field's labels as predictions of the project's tasks, matched to samples by their image files, in chunks
through ``/api/projects/ID/import/predictions`` (no 100 s limit: a million labels go through). Regions use the
controls the project's labeling config declares. It resumes: each chunk is written to a journal under
``VERILABEL_HOME/labelstudio/`` before it is sent and marked done after; a push started again skips the tasks
done, and asks Label Studio about the chunk that was in flight when it stopped, so no prediction is lost or
doubled.

``pull`` reads the project's JSON export and imports the annotations (who and when as label attributes) into a
new field of the dataset: people's corrections come back as ground truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from verilabel.datasets import service
from verilabel.datasets.export import ExportSource, field_source, run_source
from verilabel.datasets.service import ImportSummary
from verilabel.formats import label_studio
from verilabel.integrations.label_studio_api import LabelStudioClient
from verilabel.settings import Settings
from verilabel.store import Store
from verilabel.store.schema import DatasetRow, SampleRow

CHUNK = 5000  # Label Studio does work proportional to the project per request: few large ones (docs/performance.md)
Progress = Callable[[int, int], None]  # (samples done, samples in all)


@dataclass
class PushSummary:
    project: int
    model_version: str
    tasks: int = 0  # tasks in the project
    predictions: int = 0  # created by this push
    already: int = 0  # sent by an earlier push of the same labels (a resumed push)
    regions: int = 0  # regions in the predictions created
    unmatched: list[str] = field(default_factory=list)  # files of samples with labels and no task
    sizeless: int = 0  # samples with labels whose image size is unknown (unreadable at import)
    journal: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "model_version": self.model_version,
            "tasks": self.tasks,
            "predictions": self.predictions,
            "already": self.already,
            "regions": self.regions,
            "unmatched": self.unmatched,
            "sizeless": self.sizeless,
            "journal": self.journal,
        }


def push_source(
    store: Store, *, run: str | None = None, dataset: str | None = None, field_name: str | None = None
) -> tuple[ExportSource, str]:
    """What a push sends, and its default model version: a run's labels, or a dataset field's."""
    if run is not None:
        source = run_source(store, run)
        with store.read() as session:
            from verilabel.runs.service import run_row

            row = run_row(session, run)
            return source, f"verilabel:{row.model} ({_dataset_name(store, source.dataset_id)}/{row.name})"
    if dataset is None or field_name is None:
        raise ValueError("push a run, or a dataset and its field")
    return field_source(store, dataset, field_name), f"verilabel:{dataset}/{field_name}"


def _dataset_name(store: Store, dataset_id: int) -> str:
    with store.read() as session:
        row = session.get(DatasetRow, dataset_id)
        assert row is not None
        return row.name


class Journal:
    """The tasks a push has sent, one JSON line per chunk: ``{"sending": [ids]}`` before it goes, ``{"sent":
    [ids]}`` once Label Studio took it (append-only, flushed to disk: a kill -9 loses at most the last line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent: set[int] = set()
        self.in_flight: list[int] = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut short by a crash: its chunk is checked again below
                    continue
                if "sending" in entry:
                    self.in_flight = [int(i) for i in entry["sending"]]
                else:
                    self.sent.update(int(i) for i in entry.get("sent", []))
                    self.in_flight = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a")

    def write(self, key: str, tasks: list[int]) -> None:
        self._file.write(json.dumps({key: tasks}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        if key == "sent":
            self.sent.update(tasks)

    def close(self) -> None:
        self._file.close()


def journal_path(url: str, project: int, model_version: str) -> Path:
    key = hashlib.sha256(f"{url.rstrip('/')}|{project}|{model_version}".encode()).hexdigest()[:16]
    return Settings.from_env().home / "labelstudio" / f"push-{project}-{key}.jsonl"


def push(
    store: Store,
    client: LabelStudioClient,
    project: int,
    source: ExportSource,
    model_version: str,
    *,
    chunk: int = CHUNK,
    progress: Progress | None = None,
) -> PushSummary:
    """Send the source's labels as predictions of the project's tasks (see the module's docstring)."""
    config = client.project(project).get("label_config") or "<View/>"
    layout = label_studio.layout_of(config)
    with store.read() as session:
        paths = dict(
            session.execute(select(SampleRow.id, SampleRow.path).where(SampleRow.dataset_id == source.dataset_id)).all()
        )
    matcher = label_studio.SampleMatcher(paths)
    task_of: dict[int, int] = {}  # sample -> its task (the first, where several tasks show one image)
    summary = PushSummary(project, model_version)
    for ref in client.tasks(project, layout.data_key):
        summary.tasks += 1
        found = matcher.match(ref.image) if ref.image else None
        if found is not None:
            task_of.setdefault(found, ref.id)
    path = journal_path(client.url, project, model_version)
    journal = Journal(path)
    summary.journal = str(path)
    try:
        if journal.in_flight:  # the chunk in flight when the last push stopped: did Label Studio take it?
            taken = [t for t in journal.in_flight if model_version in client.model_versions(t)]
            journal.write("sent", taken)
        pending: list[dict[str, Any]] = []

        def send() -> None:
            tasks = [p["task"] for p in pending]
            journal.write("sending", tasks)
            summary.predictions += client.import_predictions(project, pending)
            journal.write("sent", tasks)
            summary.regions += sum(len(p["result"]) for p in pending)
            pending.clear()

        done = 0
        total = len(paths)
        for sample in source.samples():
            done += 1
            if sample.labels:
                task = task_of.get(sample.sample_id)
                if task is None:
                    summary.unmatched.append(sample.path)
                elif task in journal.sent:
                    summary.already += 1
                elif not (sample.width and sample.height):
                    summary.sizeless += 1  # unreadable at import: no size for percent coordinates
                else:
                    results = label_studio.to_results(sample.labels, sample.width, sample.height, layout)
                    scores = [label.confidence for label in sample.labels if label.confidence is not None]
                    pending.append(
                        {
                            "task": task,
                            "result": results,
                            "score": round(sum(scores) / len(scores), 4) if scores else None,
                            "model_version": model_version,
                        }
                    )
                    if len(pending) >= chunk:
                        send()
            if progress is not None and done % 1000 == 0:
                progress(done, total)
        if pending:
            send()
        if progress is not None:
            progress(done, total)
    finally:
        journal.close()
    return summary


def pull(store: Store, client: LabelStudioClient, project: int, dataset: str, field_name: str) -> ImportSummary:
    """The project's annotations into a new field of the dataset (see the module's docstring)."""
    with tempfile.TemporaryDirectory(prefix="verilabel-ls-pull-") as folder:
        export = Path(folder) / "export.json"
        export.write_bytes(client.export(project))
        tasks = label_studio.read_export(export)
    return service.import_label_studio_tasks(store, dataset, field_name, tasks)
