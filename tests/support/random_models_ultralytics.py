"""Random-weight ultralytics models saved the way ultralytics saves them, offline, for tests and GPU benchmarks.

``save_yolo(folder, kind, size)`` writes a ``.pt`` checkpoint and returns what to pass as ``--weights``;
``save_onnx(folder, size)`` exports a detector to ONNX with ultralytics' own exporter (needs the ``onnx``
package). ``tiny`` is the smallest real architecture (nano scale, or small where the family has no nano) for
tests; ``full`` the medium scale (YOLOv8m-size) for benchmarks. YOLO-World and YOLOE need text embeddings to
predict: ``fixed_text_embeddings`` gives deterministic ones, and ``save_text_encoders`` writes tiny random text
encoders in the file formats the adapter reads by default (OpenAI CLIP checkpoint, MobileCLIP TorchScript).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# kind -> (ultralytics model class, config file by size)
ARCHITECTURES: dict[str, tuple[str, dict[str, str]]] = {
    "detect": ("DetectionModel", {"tiny": "yolo11n.yaml", "full": "yolov8m.yaml"}),
    "detect-v8": ("DetectionModel", {"tiny": "yolov8n.yaml", "full": "yolov8m.yaml"}),
    "detect-v10": ("DetectionModel", {"tiny": "yolov10n.yaml", "full": "yolov10m.yaml"}),
    "segment": ("SegmentationModel", {"tiny": "yolo11n-seg.yaml", "full": "yolov8m-seg.yaml"}),
    "pose": ("PoseModel", {"tiny": "yolo11n-pose.yaml", "full": "yolov8m-pose.yaml"}),
    "world": ("WorldModel", {"tiny": "yolov8s-worldv2.yaml", "full": "yolov8m-worldv2.yaml"}),
    "yoloe": ("YOLOESegModel", {"tiny": "yoloe-11s-seg.yaml", "full": "yoloe-11m-seg.yaml"}),
    # YOLO26: dual heads (one-to-many and the NMS-free one-to-one), as released
    "detect-26": ("DetectionModel", {"tiny": "yolo26n.yaml", "full": "yolo26m.yaml"}),
    "segment-26": ("SegmentationModel", {"tiny": "yolo26n-seg.yaml", "full": "yolo26m-seg.yaml"}),
    "pose-26": ("PoseModel", {"tiny": "yolo26n-pose.yaml", "full": "yolo26m-pose.yaml"}),
    "classify-26": ("ClassificationModel", {"tiny": "yolo26n-cls.yaml", "full": "yolo26m-cls.yaml"}),
    "yoloe-26": ("YOLOESegModel", {"tiny": "yoloe-26n-seg.yaml", "full": "yoloe-26m-seg.yaml"}),
}
EMBED_DIM = 512


def build_yolo(
    kind: str,
    size: str = "tiny",
    names: tuple[str, ...] | None = None,
    seed: int = 0,
    scores: tuple[float, float] = (-3.0, 3.0),
) -> Any:
    """The ``nn.Module`` of a random-weight YOLO (eval mode), with class names (COCO-80 by default) and class
    logits ~ N(``scores``) on noise images (mean, spread; a narrower spread keeps scores off saturation)."""
    from verilabel.models.adapters.ultralytics_yolo import _import_ultralytics

    _import_ultralytics()  # offline, quiet, as the adapter imports it
    import torch
    from ultralytics.nn import tasks

    from verilabel.models.catalogue import vocabulary_file

    cls_name, configs = ARCHITECTURES[kind]
    family = kind.split("-")[0]  # "pose-26" is a pose model, "yoloe-26" a YOLOE
    names = names or (("person",) if family == "pose" else vocabulary_file("coco-80"))
    torch.manual_seed(seed)
    net = getattr(tasks, cls_name)(configs[size], nc=len(names), verbose=False)
    net.names = dict(enumerate(names))
    if kind == "world":
        net.txt_feats = fixed_text_embeddings(names).reshape(1, len(names), -1)
    if kind == "detect-v10":
        net.end2end = True  # the released YOLOv10 weights use the one-to-one (NMS-free) head
    _calibrate_batch_norm(net)
    if family not in ("world", "yoloe", "classify"):  # text embeddings score their classes; a classifier has no cv3
        _spread_class_scores(net, *scores)
    if kind == "yoloe-26":
        _spread_prompt_scores(net, names, *scores)
    return net.eval()


def _calibrate_batch_norm(net: Any) -> None:
    """Batch-norm statistics from a few random images: fresh ones (mean 0, variance 1) leave every anchor with
    the same features, so all boxes would score alike and tests could not tell right from wrong."""
    import torch

    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    net.train()
    with torch.no_grad():
        net(_calibration_images())
    net.eval()


def _spread_class_scores(net: Any, mean: float = -3.0, spread: float = 3.0) -> None:
    """Rescale each class-logit convolution to logits ~ N(mean, spread) on random images: scores then range from
    near 0 to near 1 with few exact ties (saturated scores would make NMS pick among equals arbitrarily)."""
    import torch

    head = net.model[-1]
    convs = [branch[-1] for name in ("cv3", "one2one_cv3") for branch in (getattr(head, name, None) or [])]
    stats: dict[int, tuple[float, float]] = {}
    hooks = [
        conv.register_forward_hook(lambda m, _, out: stats.__setitem__(id(m), (out.mean().item(), out.std().item())))
        for conv in convs
    ]
    with torch.no_grad():
        net(_calibration_images())
        for hook in hooks:
            hook.remove()
        for conv in convs:
            centre, scale = stats[id(conv)]
            gain = spread / max(scale, 1e-6)
            conv.weight.mul_(gain)
            conv.bias.copy_((conv.bias - centre) * gain + mean)


def _spread_prompt_scores(net: Any, names: tuple[str, ...], mean: float = -3.0, spread: float = 3.0) -> None:
    """``_spread_class_scores`` for YOLOE: each contrastive head's logit scale and bias set so that its logits are
    ~ N(mean, spread) for ``fixed_text_embeddings(names)`` on random images (fresh heads score every box near
    0.001, where ties and the 0.0 floor make two predictors' box lists hard to compare)."""
    import math

    import torch

    head = net.model[-1]
    contrastive = [module for name in ("cv4", "one2one_cv4") for module in (getattr(head, name, None) or [])]
    stats: dict[int, tuple[float, float]] = {}
    hooks = [
        module.register_forward_hook(lambda m, _, out: stats.__setitem__(id(m), (out.mean().item(), out.std().item())))
        for module in contrastive
    ]
    with torch.no_grad():
        net.pe = head.get_tpe(fixed_text_embeddings(names).reshape(1, len(names), -1))
        net(_calibration_images())
        del net.pe  # prompts are the predictor's to set
        for hook in hooks:
            hook.remove()
        for module in contrastive:  # logits = similarity * exp(logit_scale) + bias: a linear map of them
            centre, scale = stats[id(module)]
            gain = spread / max(scale, 1e-6)
            module.logit_scale.add_(math.log(gain))
            module.bias.copy_((module.bias - centre) * gain + mean)


def _calibration_images(size: int = 320) -> Any:
    """Noise photos of a few shapes, letterboxed as the adapter does (the kind of input the tests feed)."""
    import numpy as np
    import torch

    from verilabel.models.preprocess import letterbox

    rng = np.random.default_rng(0)
    shapes = [(240, 320), (300, 200), (237, 311), (500, 300)]
    images = [letterbox(rng.integers(0, 255, (h, w, 3), np.uint8), size) for h, w in shapes]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def save_yolo(
    folder: Path,
    kind: str = "detect",
    size: str = "tiny",
    names: tuple[str, ...] | None = None,
    seed: int = 0,
    scores: tuple[float, float] = (-3.0, 3.0),
) -> Path:
    """A ``.pt`` checkpoint like ultralytics writes (``{"model": half-precision module, "train_args": ...}``)."""
    import torch

    net = build_yolo(kind, size, names, seed, scores)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{size}-random.pt"
    family = kind.split("-")[0]
    task = {"world": "detect", "yoloe": "segment"}.get(family, family)
    checkpoint = {"model": net.half(), "train_args": {"imgsz": 640, "task": task}, "date": None, "version": "random"}
    torch.save(checkpoint, path)
    return path


def save_onnx(
    folder: Path, size: str = "tiny", names: tuple[str, ...] | None = None, imgsz: int = 640, dynamic: bool = True
) -> Path:
    """A YOLO11 detector exported with ultralytics' ONNX exporter (names in the file's metadata); the ``.pt`` it
    was exported from lies beside it."""
    import warnings

    from ultralytics import YOLO

    checkpoint = save_yolo(folder, "detect", size, names)
    with warnings.catch_warnings():  # torch's legacy ONNX exporter and its tracer complain, harmlessly
        warnings.simplefilter("ignore")
        exported = YOLO(str(checkpoint)).export(
            format="onnx", imgsz=imgsz, dynamic=dynamic, simplify=False, verbose=False
        )
    return Path(exported)


def fixed_text_embeddings(classes: tuple[str, ...] | list[str], dim: int = EMBED_DIM) -> Any:
    """Deterministic unit-norm "text embeddings": the same prompt always gets the same vector."""
    import zlib

    import torch

    rows = []
    for text in classes:
        generator = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        rows.append(torch.randn(dim, generator=generator))
    stacked = torch.stack(rows)
    return stacked / stacked.norm(dim=-1, keepdim=True)


def save_text_encoders(folder: Path) -> dict[str, Path]:
    """Tiny random text encoders in the two formats the adapter loads: an OpenAI-style CLIP checkpoint (YOLO-World,
    rebuilt by open_clip) and a MobileCLIP-style TorchScript module over CLIP tokens (YOLOE)."""
    import warnings

    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    clip = open_clip.model.CLIP(
        embed_dim=EMBED_DIM,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=1, width=64, patch_size=16, image_size=32),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
        quick_gelu=True,
    )
    clip_path = folder / "clip-vit-b32-random.pt"
    torch.save(clip.state_dict(), clip_path)

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(49408, EMBED_DIM)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            pooled = self.embed(tokens).mean(dim=1)
            return torch.nn.functional.normalize(pooled, dim=-1)

    mobileclip_path = folder / "mobileclip-random.ts"
    with warnings.catch_warnings():  # torch.jit is deprecated; MobileCLIP still ships as TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(TextTower()).save(str(mobileclip_path))
    return {"clip": clip_path, "mobileclip": mobileclip_path}
