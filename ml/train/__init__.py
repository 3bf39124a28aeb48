"""Training: the epoch loop's parts, model bundles and the ``train``/``predict`` CLI.

Entry points: :func:`fit_predictor`, :func:`save_bundle`, :func:`load_bundle`,
:func:`load_training_records`, :func:`as_records` (see :mod:`ml.models` for the predictor API).
They are imported lazily, so that importing ``ml.train.cli`` (every ``nas-surrogate`` start,
including the dataset build's parent process) does not load torch.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "TrainingCancelled": "ml.models.base", "as_records": "ml.models.base",
    "load_bundle": "ml.train.bundle", "read_bundle_info": "ml.train.bundle",
    "bundle_problem": "ml.train.bundle",
    "save_bundle": "ml.train.bundle", "fit_predictor": "ml.train.trainer",
    "load_training_records": "ml.train.trainer", "records_hash": "ml.train.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ml.train' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
