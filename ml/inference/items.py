"""The one predict-item shape, built here for ``nas-surrogate predict`` and ``POST /predict`` so
the two cannot drift::

    {"index", "ok", "error": {code, offset, message} | null, "canonical_hash", "p_fail",
     "predictions": {metric: value} | null, "std": {metric: value} | null}

plus ``"interval": {metric: [lower, upper]}`` where the model has one. Non-finite values are
null (JSON has no NaN).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml.jsonsafe import json_safe


def error_item(index: int, error: dict[str, Any]) -> dict[str, Any]:
    """The item of a genome that failed (``error`` is ``GenomeError.to_dict()``)."""
    return {"index": index, "ok": False, "error": error, "canonical_hash": None,
            "p_fail": None, "predictions": None, "std": None}


def ok_item(index: int, canonical_hash: str, metrics: Sequence[str], mean: np.ndarray,
            std: np.ndarray | None, p_fail: float,
            interval: np.ndarray | None = None) -> dict[str, Any]:
    """The item of a scored genome. ``interval`` [M, 2] (the model's 95 % interval per metric)
    is added as ``{metric: [lower, upper]}`` when the model has one."""
    item = {"index": index, "ok": True, "error": None, "canonical_hash": canonical_hash,
            "p_fail": json_safe(float(p_fail)),
            "predictions": {m: json_safe(float(mean[j])) for j, m in enumerate(metrics)},
            "std": None if std is None else {m: json_safe(float(std[j]))
                                             for j, m in enumerate(metrics)}}
    if interval is not None:
        item["interval"] = {m: [json_safe(float(interval[j, 0])),
                                json_safe(float(interval[j, 1]))] for j, m in enumerate(metrics)}
    return item


def _plain(values: np.ndarray) -> list[Any]:
    """``values`` as nested Python lists of floats, non-finite ones None: one ``tolist`` for
    the whole array, and a per-value check only when something is not finite."""
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    if finite.all():
        return array.tolist()
    boxed = array.astype(object)
    boxed[~finite] = None
    return boxed.tolist()


def batch_items(hashes: Sequence[str | None], errors: Sequence[dict[str, Any] | None],
                metrics: Sequence[str], mean: np.ndarray, std: np.ndarray | None,
                p_fail: np.ndarray, interval: np.ndarray | None = None
                ) -> list[dict[str, Any]]:
    """The items of a whole batch (``ok_item`` / ``error_item`` of each genome, equal to
    them), converting the arrays once instead of value by value: a 2,000-genome answer is
    built in milliseconds. ``errors[i]`` None means genome ``i`` was scored."""
    metrics = list(metrics)
    means, fails = _plain(mean), _plain(p_fail)
    stds = None if std is None else _plain(std)
    bounds = None if interval is None else _plain(interval)
    items: list[dict[str, Any]] = []
    for i, error in enumerate(errors):
        if error is not None:
            items.append(error_item(i, error))
            continue
        item = {"index": i, "ok": True, "error": None, "canonical_hash": hashes[i],
                "p_fail": fails[i], "predictions": dict(zip(metrics, means[i])),
                "std": None if stds is None else dict(zip(metrics, stds[i]))}
        if bounds is not None:
            item["interval"] = dict(zip(metrics, bounds[i]))
        items.append(item)
    return items
