"""Runs: generate labels in the background (validate, reserve the field, start workers), follow, cancel,
resume and delete them.

The functions live in ``service`` and ``config``; this package re-exports them (loaded on first use)::

    run = vl.runs.create_run(store, vl.RunRequest(dataset="pets", task="detection", model="mediapipe-face",
                                                  field="faces"))
    vl.runs.wait_run(store, run.id)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from verilabel._lazy import lazy_exports

_SERVICE = "verilabel.runs.service"
_EXPORTS = {
    **dict.fromkeys(
        (
            "DeleteResult",
            "RunInfo",
            "cancel_run",
            "create_run",
            "delete_run",
            "get_run",
            "list_runs",
            "resume_run",
            "wait_run",
        ),
        _SERVICE,
    ),
    "RunRequest": "verilabel.runs.config",
}
__all__ = [  # tests/test_public_api.py checks it against _EXPORTS
    "DeleteResult",
    "RunInfo",
    "RunRequest",
    "cancel_run",
    "create_run",
    "delete_run",
    "get_run",
    "list_runs",
    "resume_run",
    "wait_run",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from verilabel.runs.config import RunRequest
    from verilabel.runs.service import (
        DeleteResult,
        RunInfo,
        cancel_run,
        create_run,
        delete_run,
        get_run,
        list_runs,
        resume_run,
        wait_run,
    )
