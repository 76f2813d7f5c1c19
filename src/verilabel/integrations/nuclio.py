"""A nuclio function for self-hosted CVAT's Models page, running a verilabel model (``nuctl deploy --path DIR``
or CVAT's ``serverless/deploy_cpu.sh DIR``).

``verilabel cvat nuclio MODEL --out DIR`` writes ``function.yaml`` (CVAT's detector metadata: the label spec)
and a ``main.py`` that only imports ``init_context`` and ``handler`` from here; the model and its settings come
from the function's environment (``VERILABEL_MODEL``, ``VERILABEL_CLASSES``, ``VERILABEL_WEIGHTS``,
``VERILABEL_TASK``, ``VERILABEL_DEVICE``, ``VERILABEL_KEYPOINTS``).

The request is CVAT's: ``{"image": "<base64>", "threshold": 0.5}``. The answer is a list of shapes as CVAT's
serverless detectors give them: ``{"confidence": "0.93", "label": "car", "points": [x1, y1, x2, y2], "type":
"rectangle"}``; masks as ``"type": "mask"`` with ``"mask"``: the box's bitmap, row by row, then ``[xtl, ytl, xbr,
ybr]`` (inclusive), and their outline as ``"points"``; skeletons with their ``"elements"``; tags.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from verilabel.integrations.cvat import CvatModel, Plan, pixel_box, pixel_polygon
from verilabel.labels import Classification, Detection, Label


def model_from_environment() -> CvatModel:
    """The model the function's environment names."""
    settings = {
        "classes": os.environ.get("VERILABEL_CLASSES", ""),
        "weights": os.environ.get("VERILABEL_WEIGHTS") or None,
        "task": os.environ.get("VERILABEL_TASK") or None,
        "device": os.environ.get("VERILABEL_DEVICE", "auto"),
        "keypoints": os.environ.get("VERILABEL_KEYPOINTS", ""),
    }
    return CvatModel(os.environ["VERILABEL_MODEL"], **settings)  # type: ignore[arg-type]


def init_context(context: Any) -> None:
    """Nuclio calls this once per worker: the model is loaded here and kept."""
    context.logger.info("verilabel: loading the model")
    context.user_data.model = model_from_environment()
    context.logger.info("verilabel: the model is ready")


def handler(context: Any, event: Any) -> Any:
    from PIL import Image

    body = event.body if isinstance(event.body, dict) else json.loads(event.body)
    image = Image.open(io.BytesIO(base64.b64decode(body["image"])))
    threshold = body.get("threshold")
    model: CvatModel = context.user_data.model
    labels, width, height = model.predict(image, float(threshold) if threshold is not None else None)
    shapes = [shape for label in labels for shape in [cvat_shape(model, label, width, height)] if shape is not None]
    return context.Response(body=json.dumps(shapes), headers={}, content_type="application/json", status_code=200)


def cvat_shape(model: CvatModel, label: Label, width: int, height: int) -> dict[str, Any] | None:
    """One label as a shape of CVAT's serverless answer (None when it has nothing to draw)."""
    shape: dict[str, Any] = {"label": label.label}
    if label.confidence is not None:
        shape["confidence"] = f"{label.confidence:.4f}"
    if isinstance(label, Classification):
        return shape | {"type": "tag"}
    assert isinstance(label, Detection)
    if model.task == "keypoints":
        return _skeleton(model, label, width, height, shape) if label.keypoints is not None else None
    if model.task == "segmentation" and label.mask is not None:
        from verilabel.formats.shapes import full_image_mask

        x, y, w, h = label.box.to_pixels(width, height)
        bitmap = full_image_mask(label, width, height)[y : y + h, x : x + w]
        if not bitmap.any():
            return None
        return shape | {
            "type": "mask",
            "points": pixel_polygon(label, width, height),
            "mask": [int(v) for v in bitmap.ravel()] + [x, y, x + w - 1, y + h - 1],
        }
    return shape | {"type": "rectangle", "points": pixel_box(label, width, height)}


def _skeleton(model: CvatModel, detection: Detection, width: int, height: int, shape: dict[str, Any]) -> dict[str, Any]:
    elements = [
        {"label": name, "type": "points"}
        | ({"points": [0.0, 0.0], "outside": True} if xy is None else {"points": xy, "occluded": hidden})
        for name, xy, hidden in model.skeleton(detection, width, height)
    ]
    return shape | {"type": "skeleton", "elements": elements}


GPU_IMAGE = "pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime"


def write_function(
    plan: Plan, out: Path, *, weights: str | None = None, gpu: bool = False, name: str | None = None
) -> list[Path]:
    """Write a nuclio function for ``plan``'s model under ``out``: ``function.yaml`` (or ``function-gpu.yaml``)
    and ``main.py``; a local weights file is copied beside them (the function's image holds it). Returns the
    files written."""
    from verilabel import __version__

    out.mkdir(parents=True, exist_ok=True)
    function = name or "verilabel-" + re.sub(r"[^a-z0-9-]+", "-", plan.model.lower()).strip("-")
    env = {"VERILABEL_MODEL": plan.model, "VERILABEL_TASK": plan.task, "VERILABEL_CLASSES": ",".join(plan.classes)}
    env["VERILABEL_DEVICE"] = "cuda" if gpu else "cpu"
    if plan.task == "keypoints":
        env["VERILABEL_KEYPOINTS"] = ",".join(plan.keypoint_names)
    written = []
    if weights is not None and Path(weights).is_file():
        shutil.copyfile(weights, out / Path(weights).name)
        env["VERILABEL_WEIGHTS"] = f"/opt/nuclio/{Path(weights).name}"
        written.append(out / Path(weights).name)
    elif weights is not None:
        env["VERILABEL_WEIGHTS"] = weights  # a hub id: fetched when the function starts
    spec = [
        {"id": label.id, "name": label.name, "type": label.type}
        | (
            {"sublabels": [{"id": j, "name": k, "type": "points"} for j, k in enumerate(label.keypoints)]}
            if label.type == "skeleton"
            else {}
        )
        for label in plan.labels
    ]
    extra = ",".join(filter(None, [plan.extra]))
    package = f"verilabel[{extra}]=={__version__}" if extra else f"verilabel=={__version__}"
    q = json.dumps  # JSON strings are YAML double-quoted scalars
    lines = [
        "metadata:",
        f"  name: {q(function)}",
        "  namespace: cvat",
        "  annotations:",
        f"    name: {q(f'verilabel {plan.model}')}",
        "    type: detector",
        "    framework: pytorch",
        f"    spec: {q(json.dumps(spec))}",
        "spec:",
        f"  description: {q(f'{plan.model} ({plan.task}) through verilabel')}",
        "  runtime: 'python:3.11'",
        "  handler: main:handler",
        "  eventTimeout: 30s",
        "  env:",
        *[f"    - name: {key}\n      value: {q(value)}" for key, value in env.items()],
        "  build:",
        f"    image: {q('cvat.' + function)}",
        f"    baseImage: {q(GPU_IMAGE if gpu else 'python:3.11-slim')}",
        "    directives:",
        "      preCopy:",
        "        - kind: RUN",
        f"          value: {q(f'pip install --no-cache-dir {package!r}')}",
        "        - kind: WORKDIR",
        "          value: /opt/nuclio",
        "  triggers:",
        "    myHttpTrigger:",
        "      maxWorkers: 2",
        "      kind: 'http'",
        "      workerAvailabilityTimeoutMilliseconds: 10000",
        "      attributes:",
        "        maxRequestBodySize: 33554432 # 32MB",
        *(["  resources:", "    limits:", "      nvidia.com/gpu: 1"] if gpu else []),
        "  platform:",
        "    attributes:",
        "      restartPolicy:",
        "        name: always",
        "        maximumRetryCount: 3",
        "      mountMode: volume",
    ]
    yaml_file = out / ("function-gpu.yaml" if gpu else "function.yaml")
    yaml_file.write_text("\n".join(lines) + "\n")
    main = out / "main.py"
    main.write_text(
        '"""CVAT nuclio function: verilabel runs the model; function.yaml says which."""\n\n'
        "from verilabel.integrations.nuclio import handler, init_context  # noqa: F401\n"
    )
    return [yaml_file, main, *written]
