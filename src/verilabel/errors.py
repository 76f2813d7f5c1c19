"""verilabel's exceptions: one hierarchy, each message names the problem and the fix.

VerilabelError
├── ConfigError             a run configuration or CLI option is invalid (``field`` names it)
├── NotFoundError           a dataset, run, sample or model name does not exist
├── ConflictError           the request clashes with existing state (name taken, field exists, wrong status)
├── DatasetImportError      a dataset source (folder, COCO, YOLO) cannot be read
├── ModelLoadError          a model cannot be built: weights missing, dependency missing (fatal for a run)
├── ModelOutputError        a model returned something that breaks its contract (fatal for a run)
├── SampleError             one sample cannot be processed (missing, corrupt, too large); the run goes on
└── StoreError              the database is unreachable or its schema is out of date
"""

from __future__ import annotations


class VerilabelError(Exception):
    """Base class of every error verilabel raises on purpose."""


class ConfigError(VerilabelError):
    """An invalid setting. ``field`` is the name of the offending option."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class NotFoundError(VerilabelError):
    pass


class ConflictError(VerilabelError):
    pass


class DatasetImportError(VerilabelError):
    pass


class ModelLoadError(VerilabelError):
    pass


class ModelOutputError(VerilabelError):
    pass


class SampleError(VerilabelError):
    pass


class StoreError(VerilabelError):
    pass
