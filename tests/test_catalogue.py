"""The catalogue as data: every entry is complete, loadable by name and listed by the CLI."""

import importlib

import pytest

from verilabel.models import registry, weights
from verilabel.models.catalogue import builtin_catalogue
from verilabel.models.interface import TASKS

ENTRIES = builtin_catalogue()
FAMILIES_ASKED_FOR = {  # issue 4's list, by catalogue family
    "clip", "openclip", "siglip", "resnet", "vit", "yolo", "yolo-world", "owlvit", "owlv2", "grounding-dino",
    "omdet-turbo", "faster-rcnn", "yoloe", "mask-rcnn", "sam", "sam2", "sam2.1", "deeplabv3", "fcn", "onnx-yolo",
}  # fmt: skip


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_every_entry_is_complete(entry):
    assert entry.tasks and set(entry.tasks) <= set(TASKS)
    assert entry.size in {"nano", "small", "medium", "large", "xlarge", "any"}
    assert 1 <= entry.speed <= 3 and 1 <= entry.accuracy <= 3
    assert 0 <= entry.default_confidence <= 1
    assert entry.description and entry.author and entry.licence and entry.link.startswith("https://")
    assert entry.weights.split(":")[0] in {"hf", "url", "torch", "package", "user"}
    if entry.zero_shot:
        assert entry.vocabulary == ()
    elif entry.vocabulary_source != "weights":
        assert len(entry.vocabulary) >= 1 and len(set(entry.vocabulary)) == len(entry.vocabulary)
    module, _, function = entry.loader.partition(":")
    assert callable(getattr(importlib.import_module(module), function))  # adapters import their libraries lazily
    assert entry.extra


FAMILIES_OF_2025_26 = {  # issue 12's list
    "sam3", "rf-detr", "mm-grounding-dino", "llmdet", "florence-2", "qwen2.5-vl", "qwen3-vl",
}  # fmt: skip


def test_the_models_of_2025_26_are_there_and_say_what_their_scores_are():
    assert {e.family for e in ENTRIES} >= FAMILIES_OF_2025_26
    names = {e.name for e in ENTRIES}
    assert {"yolo26n-coco", "yolo26x-seg-coco", "yolo26m-pose-coco", "yoloe-26s-seg", "sam3-tracker"} <= names
    generative = {e.name for e in ENTRIES if e.family in {"florence-2", "qwen2.5-vl", "qwen3-vl"}}
    assert generative and all(e.score == "token-probability" for e in ENTRIES if e.name in generative)
    assert all(e.score == "model" for e in ENTRIES if e.name not in generative)
    assert registry.score_kind("florence-2-base") == "token-probability"
    assert registry.score_kind("florence-2-base+sam3-tracker") == "token-probability"
    assert registry.score_kind("python:x.y:z") == "model"


def test_the_families_of_the_issue_are_all_there():
    assert {e.family for e in ENTRIES} >= FAMILIES_ASKED_FOR
    sizes = {e.size for e in ENTRIES if e.family == "yolo"}
    assert {"nano", "small", "medium", "large", "xlarge"} <= sizes
    coco = [e for e in ENTRIES if e.vocabulary_source == "file:coco-80"]
    assert all(len(e.vocabulary) == 80 and e.vocabulary[0] == "person" for e in coco)
    oiv7 = next(e for e in ENTRIES if e.name == "yolov8m-oiv7")
    assert len(oiv7.vocabulary) == 601


def test_hub_weights_are_not_available_offline_and_packaged_ones_are(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert not weights.cached("hf:google/owlv2-base-patch16-ensemble")
    assert not weights.cached("url:https://github.com/ultralytics/assets/releases/download/v8.3.0/yolov8m.pt")
    assert weights.cached("package:rapidocr")
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth").write_bytes(b"x")
    entry = next(e for e in ENTRIES if e.name == "faster-rcnn-resnet50-fpn-coco")
    assert registry.is_available(entry)


def test_models_cli_filters_by_task_and_zero_shot(capsys):
    import json

    from verilabel.cli import main

    assert main(["models", "--task", "segmentation", "--zero-shot", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {"sam-vit-base", "sam2.1-hiera-small", "yoloe-11s-seg"} <= names
    assert all(r["zero_shot"] and "segmentation" in r["tasks"] for r in rows)
    assert all({"name", "family", "tasks", "zero_shot", "available", "prompted"} <= r.keys() for r in rows)
    assert main(["models", "--task", "keypoints", "--json"]) == 0
    assert "yolo11m-pose-coco" in {r["name"] for r in json.loads(capsys.readouterr().out)}
