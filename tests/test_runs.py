"""The run engine end to end: real worker processes, a real (user-plugin) model, a real database."""

import contextlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.runs_helpers import BLOBS, blob_dataset, label_snapshot, request, status_changing
from tests.support.blob_model import COLOURS
from tests.support.images import blob_image
from verilabel.datasets import service as ds
from verilabel.errors import ConfigError, ConflictError, NotFoundError
from verilabel.runs import service as runs
from verilabel.store import Store
from verilabel.store.schema import (
    RunClassCountRow,
    RunLabelRow,
    RunProgressRow,
    RunRow,
    RunSampleRow,
    RunWorkerRow,
)

pytestmark = pytest.mark.slow


def expected_blobs(index: int) -> set[str]:
    image = blob_image(index)
    return {name for name, rgb in COLOURS.items() if (np.abs(image.astype(int) - rgb).max(axis=2) < 40).sum() >= 16}


def test_run_returns_at_once_and_generates_in_the_background(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 12)
    started = time.monotonic()
    info = runs.create_run(store, request("blobs"))
    assert time.monotonic() - started < 5
    assert info.status in ("queued", "generating") and info.total == 12
    info = runs.wait_run(store, info.id, timeout=120)
    assert info.status == "in_review", info.to_json()
    assert (info.done, info.failed, info.pending) == (12, 0, 0)
    found: dict[int, set[str]] = {}
    for sample_id, label, *_ in label_snapshot(store, info.id):
        found.setdefault(sample_id, set()).add(label)
    samples = ds.samples(store, "d", limit=100)
    for sample in samples:
        index = int(Path(sample.path).stem.split("_")[1])
        assert found.get(sample.id, set()) == expected_blobs(index)
    assert set(info.timings) >= {"decode", "model", "write", "wait_decode", "load_model"}
    assert info.model_info["name"] == "blobs"
    # the field is reserved: a second run cannot take it
    assert ds.dataset_info(store, "d").fields["blobs"]["run"] == info.id


def test_per_sample_failures_are_recorded_and_the_run_goes_on(store: Store, tmp_path: Path):
    root = tmp_path / "imgs"
    blob_dataset(store, root, 4)
    (root / "missing.png").write_bytes((root / "img_00000.png").read_bytes())
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    full = (root / "img_00001.png").read_bytes()
    Image.fromarray(blob_image(7, 400, 300)).save(root / "truncated.jpg")
    (root / "truncated.jpg").write_bytes((root / "truncated.jpg").read_bytes()[:1500])
    (root / "notimage.png").write_text("hello, I am text")
    Image.fromarray(blob_image(8, 600, 500)).save(root / "huge.png")
    assert full
    ds.add_images(store, "d", root)
    (root / "missing.png").unlink()
    info = runs.create_run(store, request("blobs", max_image_pixels=200_000))
    info = runs.wait_run(store, info.id, timeout=120)
    assert info.status == "in_review", info.to_json()
    assert (info.done, info.failed) == (4, 5)
    errors = {Path(p).name: e for p, e in _failure_paths(store, info)}
    assert errors["missing.png"].startswith("file not found")
    assert "corrupt or truncated" in errors["truncated.jpg"]
    assert errors["corrupt.jpg"].startswith(("corrupt", "not an image"))
    assert errors["notimage.png"].startswith("not an image")
    assert "decompression-bomb guard" in errors["huge.png"] and "max_image_pixels" in errors["huge.png"]


def _failure_paths(store: Store, info: runs.RunInfo) -> list[tuple[str, str]]:
    by_id = {s.id: s.path for s in ds.samples(store, "d", limit=1000)}
    return [(by_id[f["sample_id"]], f["error"]) for f in info.failures]


def test_sigkill_mid_run_then_resume_gives_exactly_the_uninterrupted_labels(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    blob_dataset(store, tmp_path / "imgs", 120)
    reference = runs.wait_run(store, runs.create_run(store, request("reference")).id, timeout=180)
    assert reference.status == "in_review"

    monkeypatch.setenv("BLOB_MODEL_DELAY", "0.15")  # ~40 ms per image: the kill lands mid-run
    info = runs.create_run(store, request("killed"))
    deadline = time.monotonic() + 120
    while (current := runs.get_run(store, info.id)).done < 30:
        assert time.monotonic() < deadline and current.status in ("queued", "generating"), current.error
        time.sleep(0.05)
    pid = current.workers[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _reap(pid)
    stalled = runs.wait_run(store, info.id, timeout=60)
    assert stalled.stalled and stalled.resumable and stalled.status == "generating"
    assert 30 <= stalled.done < 120

    monkeypatch.setenv("BLOB_MODEL_DELAY", "0")
    resumed = runs.wait_run(store, runs.resume_run(store, info.id).id, timeout=180)
    assert resumed.status == "in_review" and (resumed.done, resumed.failed) == (120, 0)
    assert label_snapshot(store, info.id) == label_snapshot(store, reference.id)
    assert resumed.labels == reference.labels


def _reap(pid: int) -> None:
    """Wait for a killed worker, so that it leaves no zombie behind (a WNOHANG probe first would race: it reaps the
    worker when the kill has already landed, and the wait after it then finds no child)."""
    with contextlib.suppress(ChildProcessError):  # not this process's child
        os.waitpid(pid, 0)


def test_two_workers_on_disjoint_shards_produce_each_label_once(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 40)
    single = runs.wait_run(store, runs.create_run(store, request("one")).id, timeout=180)
    double = runs.wait_run(store, runs.create_run(store, request("two", workers=2)).id, timeout=180)
    assert double.status == "in_review", double.to_json()
    assert len(double.workers) == 2 and {w.shard for w in double.workers} == {0, 1}
    assert all(w.processed > 0 for w in double.workers)
    assert label_snapshot(store, double.id) == label_snapshot(store, single.id)


def test_cancel_then_resume_finishes_without_duplicates(store: Store, tmp_path: Path, monkeypatch):
    blob_dataset(store, tmp_path / "imgs", 60)
    reference = runs.wait_run(store, runs.create_run(store, request("reference")).id, timeout=180)
    monkeypatch.setenv("BLOB_MODEL_DELAY", "0.3")  # 15 batches: several seconds, the cancel lands mid-run
    info = runs.create_run(store, request("cancelled"))
    while runs.get_run(store, info.id).done < 8:
        time.sleep(0.05)
    runs.cancel_run(store, info.id)
    cancelled = runs.wait_run(store, info.id, timeout=60)
    assert cancelled.status == "cancelled" and cancelled.done < 60 and cancelled.resumable
    with pytest.raises(ConflictError, match="cancelled"):
        runs.cancel_run(store, info.id)
    monkeypatch.setenv("BLOB_MODEL_DELAY", "0")
    done = runs.wait_run(store, runs.resume_run(store, info.id).id, timeout=180)
    assert done.status == "in_review", done.to_json()
    assert label_snapshot(store, info.id) == label_snapshot(store, reference.id)


def test_a_cancel_racing_the_last_worker_waits_for_it_and_never_overwrites_its_outcome(store: Store, tmp_path: Path):
    """The last worker settles the run (here: in_review) while a cancel arrives. The cancel must see the
    settled state, not overwrite it: on PostgreSQL it waits for the worker's row lock, then reads afresh."""
    blob_dataset(store, tmp_path / "imgs", 3)
    info = runs.create_run(store, request("settling"), start=False)
    with status_changing(store, info.id, "in_review"), pytest.raises(ConflictError, match="is in_review"):
        runs.cancel_run(store, info.id)
    assert runs.get_run(store, info.id).status == "in_review"


def test_a_model_that_cannot_load_puts_the_run_in_error_and_resume_retries(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 3)
    info = runs.create_run(store, request("broken", model="python:tests.support.blob_model:broken"))
    info = runs.wait_run(store, info.id, timeout=60)
    assert info.status == "error" and "weights file /nowhere/blob.pth is missing" in info.error
    assert info.resumable and info.done == 0
    with pytest.raises(ConflictError, match="in_review"):
        runs.resume_run(store, runs.wait_run(store, runs.create_run(store, request("ok")).id, timeout=60).id)


def test_a_model_breaking_its_contract_fails_the_run_with_one_precise_error(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 5)
    info = runs.wait_run(
        store, runs.create_run(store, request("liar", model="python:tests.support.blob_model:liar")).id, timeout=60
    )
    assert info.status == "error"
    assert "one label list per image: 4 images in, 3 results out" in info.error


def test_segmentation_masks_are_written_under_the_mask_location(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 4)
    info = runs.create_run(
        store,
        request(
            "masks",
            task="segmentation",
            model="python:tests.support.blob_model:segmenter",
            mask_dir=str(tmp_path / "masks"),
        ),
    )
    info = runs.wait_run(store, info.id, timeout=60)
    assert info.status == "in_review", info.to_json()
    files = sorted((tmp_path / "masks" / info.id).glob("*.png"))
    assert len(files) == info.labels > 0
    mask = np.asarray(Image.open(files[0])) > 127
    assert mask.all()  # the blob fills its own box


def test_resume_removes_masks_that_no_label_references(store: Store, tmp_path: Path, monkeypatch):
    blob_dataset(store, tmp_path / "imgs", 40)
    monkeypatch.setenv("BLOB_MODEL_DELAY", "0.5")
    info = runs.create_run(
        store,
        request(
            "masks",
            task="segmentation",
            model="python:tests.support.blob_model:segmenter",
            mask_dir=str(tmp_path / "masks"),
        ),
    )
    while runs.get_run(store, info.id).done < 4:
        time.sleep(0.05)
    runs.cancel_run(store, info.id)
    assert runs.wait_run(store, info.id, timeout=60).status == "cancelled"
    orphan = tmp_path / "masks" / info.id / "left-by-a-killed-worker.png"
    Image.new("L", (4, 4)).save(orphan)
    monkeypatch.setenv("BLOB_MODEL_DELAY", "0")
    done = runs.wait_run(store, runs.resume_run(store, info.id).id, timeout=120)
    assert done.status == "in_review" and not orphan.exists()
    assert len(list((tmp_path / "masks" / info.id).glob("*.png"))) == done.labels


def test_classification_and_zero_shot_runs(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 6)
    cls = runs.create_run(store, request("colour", task="classification", classes=["red", "blue"]))
    zs = runs.create_run(
        store,
        request(
            "zs", model="python:tests.support.blob_model:zero_shot", classes=["green"], aliases=["primary=red,blue"]
        ),
    )
    cls, zs = runs.wait_run(store, cls.id, timeout=60), runs.wait_run(store, zs.id, timeout=60)
    assert cls.status == zs.status == "in_review"
    classes = {row[1] for row in label_snapshot(store, cls.id)}
    assert classes <= {"red", "blue"}
    per_sample: dict[int, int] = {}
    for row in label_snapshot(store, cls.id):
        per_sample[row[0]] = per_sample.get(row[0], 0) + 1
    assert set(per_sample.values()) == {1}
    assert {row[1] for row in label_snapshot(store, zs.id)} <= {"green", "primary"}
    assert "primary" in {row[1] for row in label_snapshot(store, zs.id)}


def test_synonyms_merge_into_one_box_and_negatives_suppress_look_alikes(store: Store, tmp_path: Path):
    """--alias red=red,crimson,scarlet prompts three words that each find every red blob: one label per blob
    stays, the surest. --negative 'painted blue' finds the blue blobs more surely than 'blue' does: none stay."""
    blob_dataset(store, tmp_path / "imgs", 6)
    words = "python:tests.support.blob_model:colour_words"
    plain = runs.create_run(store, request("plain", model=words, classes=["red", "blue"], min_confidence=0.0))
    merged = runs.create_run(
        store,
        request(
            "merged",
            model=words,
            classes=["blue", "green"],
            aliases=["red=red,crimson,scarlet"],
            negatives=["painted blue"],
            min_confidence=0.0,
        ),
    )
    plain, merged = runs.wait_run(store, plain.id, timeout=60), runs.wait_run(store, merged.id, timeout=60)
    assert plain.status == merged.status == "in_review"
    before, after = label_snapshot(store, plain.id), label_snapshot(store, merged.id)
    assert {row[1] for row in after} <= {"red", "green"}  # blue all suppressed; the negative never stored
    assert [row for row in after if row[1] == "red"] == [row for row in before if row[1] == "red"]
    assert any(row[1] == "blue" for row in before) and any(row[1] == "red" for row in after)
    stored = runs.get_run(store, merged.id).config
    assert stored["negative_classes"] == ["painted blue"] and "painted blue" in stored["model_classes"]
    assert runs.get_run(store, merged.id).to_json()["score"] == "model"


def test_a_negative_that_is_also_a_class_is_refused(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 1)
    with pytest.raises(ConfigError, match="both as a class and as a negative") as caught:
        runs.create_run(
            store, request("x", model="python:tests.support.blob_model:zero_shot", classes=["red"], negatives=["red"])
        )
    assert caught.value.field == "negatives"


def test_min_confidence_drops_weaker_labels(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 10)
    low = runs.wait_run(store, runs.create_run(store, request("low", min_confidence=0.0)).id, timeout=60)
    high = runs.wait_run(store, runs.create_run(store, request("high", min_confidence=0.5)).id, timeout=60)
    expected = [row for row in label_snapshot(store, low.id) if row[2] >= 0.5]
    assert label_snapshot(store, high.id) == expected and len(expected) < low.labels


def test_max_labels_keeps_the_most_confident_per_image(store: Store, tmp_path: Path):
    blob_dataset(store, tmp_path / "imgs", 10)
    every = runs.wait_run(store, runs.create_run(store, request("every")).id, timeout=60)
    one = runs.wait_run(store, runs.create_run(store, request("one", max_labels=1)).id, timeout=60)
    best: dict[int, tuple] = {}
    for row in label_snapshot(store, every.id):
        if row[0] not in best or row[2] > best[row[0]][2]:
            best[row[0]] = row
    assert label_snapshot(store, one.id) == sorted(best.values()) and one.labels < every.labels
    with pytest.raises(ConfigError, match="max_labels"):
        runs.create_run(store, request("none", max_labels=0))


def test_delete_stops_the_workers_and_frees_the_field_leaving_nothing(store: Store, tmp_path: Path, monkeypatch):
    blob_dataset(store, tmp_path / "imgs", 40)
    monkeypatch.setenv("BLOB_MODEL_DELAY", "0.5")  # it is still generating when deleted
    info = runs.create_run(
        store,
        request(
            "masks", task="segmentation", model=BLOBS.replace("detector", "segmenter"), mask_dir=str(tmp_path / "m")
        ),
    )
    while (current := runs.get_run(store, info.id)).done < 4:
        time.sleep(0.05)
    pid = current.workers[0].pid
    result = runs.delete_run(store, "masks")
    assert result.field_freed == "masks" and result.labels > 0 and result.masks > 0
    assert not _process_exists(pid)
    assert not (tmp_path / "m" / info.id).exists()
    with pytest.raises(NotFoundError):
        runs.get_run(store, info.id)
    with store.read() as session:
        for table in (RunLabelRow, RunSampleRow, RunWorkerRow, RunClassCountRow, RunProgressRow):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table.__name__
    assert "masks" not in ds.dataset_info(store, "d").fields and ds.dataset_info(store, "d").samples == 40
    # the field name is free again
    monkeypatch.setenv("BLOB_MODEL_DELAY", "0")
    again = runs.wait_run(store, runs.create_run(store, request("masks")).id, timeout=120)
    assert again.status == "in_review" and again.name == "masks"


def _process_exists(pid: int | None) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_approved_runs_are_not_deleted_and_an_analysis_leaves_its_field(store: Store, tmp_path: Path):
    from verilabel.review import service as review

    blob_dataset(store, tmp_path / "imgs", 4)
    info = runs.wait_run(store, runs.create_run(store, request("blobs")).id, timeout=60)
    review.promote(store, info.id)
    review.approve(store, info.id)
    with pytest.raises(ConflictError, match="is approved: its labels are field 'blobs' of the dataset now"):
        runs.delete_run(store, "blobs")
    analysis = review.analyze_field(store, "d", "blobs")
    assert runs.get_run(store, analysis).name == "analyze-blobs"
    assert runs.delete_run(store, analysis).field_freed is None
    assert ds.dataset_info(store, "d").fields["blobs"]["labels"] == info.labels  # the dataset's labels stay


def test_resume_is_refused_while_old_workers_still_run(store: Store, tmp_path: Path):
    """An errored run whose other workers have not stopped yet: new workers beside them would do samples twice."""
    import socket

    blob_dataset(store, tmp_path / "imgs", 3)
    info = runs.create_run(store, request("busy"), start=False)
    with store.write() as session:
        session.add(
            RunWorkerRow(
                run_id=info.id,
                shard=0,
                pid=os.getpid(),  # a live process on this host
                hostname=socket.gethostname(),
                state="running",
                processed=0,
                started_at=runs.now(),
                heartbeat_at=runs.now(),
                timings={},
            )
        )
        row = session.get(RunRow, info.id)
        assert row is not None
        row.status, row.error = "error", "worker 1 crashed"
    with pytest.raises(ConflictError, match=rf"cannot be resumed yet: 1 of its workers still run \(pid {os.getpid()}"):
        runs.resume_run(store, "busy", start=False)


def test_masks_from_a_detection_run_are_kept_inline(store: Store, tmp_path: Path):
    """A user model that returns masks in a detection run (no mask location): kept as RLE, not a crash."""
    from verilabel.datasets.export import export_field
    from verilabel.review import service as review

    blob_dataset(store, tmp_path / "imgs", 3)
    info = runs.create_run(store, request("with-masks", model=BLOBS.replace("detector", "masked_detector")))
    info = runs.wait_run(store, info.id, timeout=60)
    assert info.status == "in_review", info.error
    labels = [label for _, label in review.list_labels(store, info.id, limit=50)]
    assert labels and all(label.mask is not None and label.mask.rle is not None for label in labels)
    assert all(label.mask.load().all() for label in labels)  # the blob fills its box
    review.promote(store, info.id)
    review.approve(store, info.id)
    assert export_field(store, "d", "with-masks", "coco", tmp_path / "out").labels == len(labels)


def test_an_oversized_image_fails_its_sample_and_a_raised_limit_lets_the_decoder_try(store: Store, tmp_path: Path):
    """PIL's own limit used to stop a raised ``max_image_pixels`` from reaching non-JPEG files."""
    from tests.support.images import header_only_png

    blob_dataset(store, tmp_path / "imgs", 2)
    (tmp_path / "more").mkdir()
    header_only_png(tmp_path / "more" / "huge.png", 20000, 10000)
    ds.add_images(store, "d", tmp_path / "more")
    guarded = runs.wait_run(store, runs.create_run(store, request("guarded")).id, timeout=60)
    (failure,) = guarded.failures
    assert guarded.status == "in_review" and "20000x10000 = 200 Mpx, above the limit of 179 Mpx" in failure["error"]
    raised = runs.wait_run(
        store, runs.create_run(store, request("raised", max_image_pixels=300_000_000)).id, timeout=60
    )
    (failure,) = raised.failures  # past the size check, the decoder finds no pixel data: a different error
    assert "corrupt or truncated image" in failure["error"] and "Mpx" not in failure["error"]


def test_masks_of_jpegs_decoded_smaller_are_stored_at_the_full_size(store: Store, tmp_path: Path):
    """640x480 JPEGs decoded at 1/4 for a model with a 100 px input, which returns masks in the decode's pixels:
    the stored masks cover their boxes in the photos' own pixels."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(blob_image(i, 640, 480)).save(folder / f"photo_{i}.jpg", quality=95)
    ds.add_images(store, "d", folder, create=True)
    info = runs.create_run(
        store,
        request(
            "masks",
            task="segmentation",
            model=BLOBS.replace("detector", "draft_segmenter"),
            mask_dir=str(tmp_path / "m"),
        ),
    )
    info = runs.wait_run(store, info.id, timeout=60)
    assert info.status == "in_review" and info.labels > 0, info.error
    from verilabel.review import service as review

    for _, label in review.list_labels(store, info.id, limit=100):
        _, _, w, h = label.box.to_pixels(640, 480)
        assert label.mask is not None and label.mask.load().shape == (h, w)
        _, _, small_w, small_h = label.box.to_pixels(160, 120)  # in the decode: four times smaller
        assert abs(w - 4 * small_w) <= 4 and abs(h - 4 * small_h) <= 4
