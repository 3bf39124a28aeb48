"""Grouped splits: a genome and its duplicates (the same ``canonical_hash``) are never on both
sides of a split, or memorised duplicates inflate every ranking metric. The one splitter of the
project: cross-validation folds, the trainers' validation holdout and the stack's inner folds
all use these."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def groups(records: Sequence[Any]) -> list[str]:
    """Grouping key per record: its ``canonical_hash`` (``row-<i>`` when it has none)."""
    keys = []
    for i, r in enumerate(records):
        key = getattr(r, "canonical_hash", None)
        keys.append(str(key) if key is not None else f"row-{i}")
    return keys


def grouped_fold_ids(keys: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """Fold index per row; all rows of a group share one fold, folds balanced by row count.

    Groups are shuffled with ``seed`` and each goes to the currently smallest fold (largest groups
    first, so one big duplicate family cannot unbalance the folds).
    """
    unique, inverse, sizes = np.unique(np.asarray(keys, dtype=object).astype(str),
                                       return_inverse=True, return_counts=True)
    if len(unique) < n_folds:
        raise ValueError(f"{len(unique)} groups cannot fill {n_folds} folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(n_folds, dtype=np.int64)
    group_fold = np.empty(len(unique), dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        group_fold[g] = f
        load[f] += sizes[g]
    return group_fold[inverse]


def grouped_holdout(keys: Sequence[str], fraction: float, seed: int,
                    at_least_one: bool = False) -> np.ndarray:
    """Boolean mask of a grouped random ``fraction`` of rows (a validation set).
    ``at_least_one`` holds out one group even when the fraction rounds to none."""
    unique, inverse = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    n_hold = round(fraction * len(unique))
    if at_least_one:
        n_hold = max(1, n_hold)
    held = np.zeros(len(unique), dtype=bool)
    held[rng.permutation(len(unique))[:n_hold]] = True
    return held[inverse]


def grouped_split(records: Sequence[Any], fraction: float, seed: int
                  ) -> tuple[list[Any], list[Any]]:
    """(train, validation) records: :func:`grouped_holdout` of at least one group."""
    held = grouped_holdout(groups(records), fraction, seed, at_least_one=True)
    return ([r for r, h in zip(records, held) if not h], [r for r, h in zip(records, held) if h])
