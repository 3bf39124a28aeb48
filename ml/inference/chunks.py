"""Predicting a chunk of encoded genomes, item by item safe: one model call in the common case,
and when that raises, item by item so only the culprits fail instead of the whole chunk."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.errors import internal_error

log = logging.getLogger(__name__)


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
    except Exception as exc:
        if len(items) == 1:
            log.exception("%s failed for one genome", stage)
            return [], [], {0: internal_error(stage, exc).to_dict()}
        log.warning("%s failed for a chunk of %d; retrying item by item", stage, len(items))
    kept, outputs, failed = [], [], {}
    for i, item in enumerate(items):
        try:
            outputs.extend(step([item]))
            kept.append(i)
        except Exception as exc:
            log.exception("%s failed for one genome", stage)
            failed[i] = internal_error(stage, exc).to_dict()
    return kept, outputs, failed


def _arrays(model: Any, pred: Any, n: int) -> tuple[np.ndarray, np.ndarray | None,
                                                     np.ndarray, np.ndarray | None]:
    """A prediction of ``n`` items as float64 arrays [n, M], [n, M] | None, [n],
    [n, M, 2] | None."""
    m = len(getattr(model, "metrics", ()))
    std, interval = pred.std, getattr(pred, "interval", None)
    return (np.asarray(pred.mean, dtype=np.float64).reshape(n, m),
            None if std is None else np.asarray(std, dtype=np.float64).reshape(n, m),
            np.asarray(pred.p_fail, dtype=np.float64).reshape(n),
            None if interval is None else np.asarray(interval, dtype=np.float64
                                                     ).reshape(n, m, 2))


def predict_chunk(model: Any, inputs: list[Any], *, rows: bool) -> ChunkResult:
    """Predict a chunk of records (``rows=False``) or feature rows (``rows=True``, for models
    with a ``feature_key``; stacked into one matrix): one call in the common case, item by
    item when that raises."""

    def call(batch: list[Any]) -> Any:
        return model.predict_features(np.stack(batch)) if rows else model.predict(batch)

    if inputs:
        try:
            mean, std, p_fail, interval = _arrays(model, call(inputs), len(inputs))
            return ChunkResult(list(range(len(inputs))), mean, std, p_fail, {}, interval)
        except Exception as exc:
            if len(inputs) == 1:
                log.exception("predicting failed for one genome")
                return _empty(model, {0: internal_error("predicting", exc).to_dict()})
            log.warning("predicting failed for a chunk of %d; retrying item by item",
                        len(inputs))
    kept: list[int] = []
    parts: list[tuple[Any, ...]] = []
    failed: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(inputs):
        try:
            parts.append(_arrays(model, call([item]), 1))
            kept.append(i)
        except Exception as exc:
            log.exception("predicting failed for one genome")
            failed[i] = internal_error("predicting", exc).to_dict()
    if not parts:
        return _empty(model, failed)
    stds, bounds = [p[1] for p in parts], [p[3] for p in parts]
    return ChunkResult(kept, np.concatenate([p[0] for p in parts]),
                       None if any(s is None for s in stds) else np.concatenate(stds),
                       np.concatenate([p[2] for p in parts]), failed,
                       None if any(b is None for b in bounds) else np.concatenate(bounds))


def _empty(model: Any, failed: dict[int, dict[str, Any]]) -> ChunkResult:
    m = len(getattr(model, "metrics", ()))
    return ChunkResult([], np.zeros((0, m)), None, np.zeros(0), failed, None)
