"""Scoring a batch of encoded genomes, item by item safe: the one predict-item shape, and chunk
prediction that isolates a failing item instead of losing the chunk.

``nas-surrogate predict`` and the service's ``POST /predict`` both build their items here, so
the two cannot drift::

    {"index", "ok", "error": {code, offset, message} | null, "canonical_hash", "p_fail",
     "predictions": {metric: value} | null, "std": {metric: value} | null}
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ml.errors import internal_error
from ml.jsonsafe import json_safe

log = logging.getLogger(__name__)


def error_item(index: int, error: dict[str, Any]) -> dict[str, Any]:
    """The item of a genome that failed (``error`` is ``GenomeError.to_dict()``)."""
    return {"index": index, "ok": False, "error": error, "canonical_hash": None,
            "p_fail": None, "predictions": None, "std": None}


def ok_item(index: int, canonical_hash: str, metrics: Sequence[str], mean: np.ndarray,
            std: np.ndarray | None, p_fail: float,
            interval: np.ndarray | None = None) -> dict[str, Any]:
    """The item of a scored genome; non-finite values become null. ``interval`` [M, 2] (the
    model's 95 % interval per metric) is added as ``{metric: [lower, upper]}`` when the model
    has one."""
    item = {"index": index, "ok": True, "error": None, "canonical_hash": canonical_hash,
            "p_fail": json_safe(float(p_fail)),
            "predictions": {m: json_safe(float(mean[j])) for j, m in enumerate(metrics)},
            "std": None if std is None else {m: json_safe(float(std[j]))
                                             for j, m in enumerate(metrics)}}
    if interval is not None:
        item["interval"] = {m: [json_safe(float(interval[j, 0])),
                                json_safe(float(interval[j, 1]))] for j, m in enumerate(metrics)}
    return item


@dataclass
class ChunkResult:
    """Predictions for the items of a chunk that survived; ``failed`` maps the position of each
    item that raised to its ``INTERNAL_ERROR`` dict."""

    kept: list[int]
    mean: np.ndarray
    std: np.ndarray | None
    p_fail: np.ndarray
    failed: dict[int, dict[str, Any]]
    #: [kept, M, 2] or None (the model gives no interval)
    interval: np.ndarray | None = None


def run_isolated(step: Callable[[list[Any]], Any], items: list[Any], stage: str
                 ) -> tuple[list[int], list[Any], dict[int, dict[str, Any]]]:
    """``step(items)`` returns one output per item; when it raises, retry item by item so only
    the culprits fail. Returns (kept positions, their outputs, failures by position)."""
    try:
        return list(range(len(items))), list(step(items)), {}
    except Exception as exc:  # noqa: BLE001 - find the culprit instead of losing the chunk
        if len(items) == 1:
            log.exception("%s failed for one genome", stage)
            return [], [], {0: internal_error(stage, exc).to_dict()}
        log.warning("%s failed for a chunk of %d; retrying item by item", stage, len(items))
    kept, outputs, failed = [], [], {}
    for i, item in enumerate(items):
        try:
            outputs.extend(step([item]))
            kept.append(i)
        except Exception as exc:  # noqa: BLE001
            log.exception("%s failed for one genome", stage)
            failed[i] = internal_error(stage, exc).to_dict()
    return kept, outputs, failed


def predict_chunk(model: Any, inputs: list[Any], *, rows: bool) -> ChunkResult:
    """Predict a chunk of records (``rows=False``) or feature rows (``rows=True``, for models
    with a ``feature_key``): one call in the common case, item by item when that raises."""

    def step(batch: list[Any]) -> list[tuple[Any, ...]]:
        pred = model.predict_features(np.stack(batch)) if rows else model.predict(batch)
        std, interval = pred.std, getattr(pred, "interval", None)
        return [(pred.mean[i], None if std is None else std[i], float(pred.p_fail[i]),
                 None if interval is None else interval[i]) for i in range(len(batch))]

    kept, outputs, failed = run_isolated(step, inputs, "predicting")
    m = len(getattr(model, "metrics", ()))
    mean = np.array([o[0] for o in outputs], dtype=np.float64).reshape(len(outputs), m)
    stds = [o[1] for o in outputs]
    std = None if any(s is None for s in stds) or not stds else np.array(stds, dtype=np.float64)
    p_fail = np.array([o[2] for o in outputs], dtype=np.float64)
    bounds = [o[3] for o in outputs]
    interval = None if any(b is None for b in bounds) or not bounds else \
        np.array(bounds, dtype=np.float64).reshape(len(outputs), m, 2)
    return ChunkResult(kept, mean, std, p_fail, failed, interval)
