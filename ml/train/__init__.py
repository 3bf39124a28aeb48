"""Training a registered predictor (:mod:`ml.models.registry`) on a dataset, model bundles,
pre-training of the graph encoder and the ``train``/``predict`` CLI. The predictors themselves,
the neural ones' epoch loop included, are :mod:`ml.models`.

Entry points: :func:`fit_predictor`, :func:`save_bundle`, :func:`load_bundle`,
:func:`load_training_records` (see :mod:`ml.models` for the predictor contract). They are
imported on first use, not at package import, only so that importing ``ml.train.cli`` (every
``nas-surrogate`` start, including the dataset build's torch-free parent process) stays cheap;
no import cycle hides behind it.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "load_bundle": "ml.train.bundle", "read_bundle_info": "ml.train.bundle",
    "bundle_problem": "ml.train.bundle", "save_bundle": "ml.train.bundle",
    "fit_predictor": "ml.train.trainer", "load_training_records": "ml.train.trainer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ml.train' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
