"""Captions as sample metadata (``verilabel dataset caption``): a captioning model (Florence-2) writes one caption
per sample under ``metadata[KEY]``, searchable and visible beside the labels.

Samples are captioned in id order, a batch at a time, each batch committed in one transaction: an interrupted run
loses at most its open batch, and the next run skips the samples that already have a caption (``--overwrite``
redoes them). An image that cannot be decoded is counted and named, never captioned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from verilabel.datasets.images import decode_sized
from verilabel.datasets.service import dataset_row
from verilabel.errors import ConfigError, NotFoundError
from verilabel.models import registry
from verilabel.models.interface import ImageItem, LoadRequest
from verilabel.store import Store
from verilabel.store.schema import SampleRow

PAGE = 512


@dataclass
class CaptionSummary:
    captioned: int = 0
    skipped: int = 0  # already captioned under the key
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def to_json(self) -> dict[str, Any]:
        return {
            "captioned": self.captioned,
            "skipped": self.skipped,
            "failed": [{"path": p, "error": e} for p, e in self.failed],
        }


def captioning_models() -> list[str]:
    return [e.name for e in registry.catalogue() if e.family == "florence-2"]


def caption_dataset(
    store: Store,
    dataset: str,
    model: str,
    *,
    key: str = "caption",
    detail: str = "caption",
    weights: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    batch_size: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> CaptionSummary:
    """Caption every sample of ``dataset`` lacking ``metadata[key]`` (all of them with ``overwrite``)."""
    if not key.strip() or key != key.strip():
        raise ConfigError("key", f"{key!r}: name the metadata key, e.g. caption")
    with store.read() as session:
        try:
            dataset_id = dataset_row(session, dataset).id
        except NotFoundError as exc:
            raise ConfigError("dataset", str(exc)) from None
    ref = registry.resolve(model, weights)
    registry.check_obtainable(ref, weights)
    built = registry.load(ref, LoadRequest(weights=weights, device=device))
    caption = getattr(built, "caption", None)
    if caption is None:
        raise ConfigError("model", f"{model!r} does not write captions; use one of {', '.join(captioning_models())}")
    size = batch_size or built.spec.batch_size
    summary = CaptionSummary()
    batch: list[tuple[int, ImageItem]] = []
    for sample_id, path, meta in _samples(store, dataset_id):
        if key in meta and not overwrite:
            summary.skipped += 1
            continue
        try:
            array, full = decode_sized(path, draft_size=built.spec.input_size)
        except Exception as exc:  # unreadable, missing, too large: the reason names the problem
            summary.failed.append((path, str(exc) or type(exc).__name__))
            continue
        batch.append((sample_id, ImageItem(sample_id, path, array, full_size=full)))
        if len(batch) >= size:
            _write(store, batch, caption([item for _, item in batch], detail), key, summary, on_batch)
            batch = []
    if batch:
        _write(store, batch, caption([item for _, item in batch], detail), key, summary, on_batch)
    return summary


def _samples(store: Store, dataset_id: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
    last = -1
    while True:
        with store.read() as session:
            page = session.execute(
                select(SampleRow.id, SampleRow.path, SampleRow.meta)
                .where(SampleRow.dataset_id == dataset_id, SampleRow.id > last)
                .order_by(SampleRow.id)
                .limit(PAGE)
            ).all()
        if not page:
            return
        for sample_id, path, meta in page:
            yield sample_id, path, dict(meta or {})
        last = page[-1][0]


def _write(
    store: Store,
    batch: Sequence[tuple[int, ImageItem]],
    captions: Sequence[str],
    key: str,
    summary: CaptionSummary,
    on_batch: Callable[[int], None] | None,
) -> None:
    """One transaction: each sample's metadata as it is now, plus its caption (a rival edit is not lost)."""
    ids = [sample_id for sample_id, _ in batch]
    with store.write() as session:
        found = session.execute(select(SampleRow.id, SampleRow.meta).where(SampleRow.id.in_(ids))).all()
        current: dict[int, dict[str, Any]] = {row[0]: row[1] for row in found}
        rows = [
            {"id": sample_id, "meta": {**(current.get(sample_id) or {}), key: text}}
            for sample_id, text in zip(ids, captions, strict=True)
            if sample_id in current  # deleted meanwhile: nothing to caption
        ]
        if rows:
            session.execute(update(SampleRow), rows)
    summary.captioned += len(rows)
    if on_batch is not None:
        on_batch(len(batch))
