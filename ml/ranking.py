"""Rank a batch of predicted candidates the way the search loop selects them.

Two modes:

* one metric with its direction (``min`` or ``max``);
* ``nsga2``: NSGA-II non-dominated front, then crowding distance (descending), over the
  evolution's objectives (minimise ``uw_val_epoch_loss`` and ``ciou_loss``, maximise
  ``average_precision``), as DEAP's ``selNSGA2`` orders a population.

Candidates predicted to fail (``p_fail >= fail_threshold``) come after every other candidate,
ordered by ``p_fail`` ascending; remaining ties break by input index, so the ranking is a
deterministic permutation. The dominance computation is vectorised (O(n²) time in numpy, a few
ms for 2,000 rows) instead of DEAP's pure-Python loops, in row blocks with the relation kept as
bits, so memory is O(n²/8 + block·n) rather than n×n×objectives booleans.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ml.datasets.labels import OBJECTIVES

FAIL_THRESHOLD = 0.5


def ranking_objectives(metrics: Sequence[str]) -> dict[str, int]:
    """The evolution's objectives (name -> +1 maximise / -1 minimise) among ``metrics``:
    ``nsga2`` ranks on those a model predicts (all three for the default metrics)."""
    return {m: w for m, w in OBJECTIVES.items() if m in metrics}


#: Rows of the dominance relation computed per numpy pass: transient memory is a few
#: ``BLOCK x n`` boolean planes whatever ``n`` is (~6 MB at n = 5,000).
BLOCK = 256


def _dominance_bits(w: np.ndarray) -> np.ndarray:
    """[n, ceil(n/8)] uint8: bit j of row i says row i dominates row j (n²/8 bytes: 3 MB at
    n = 5,000, where a dense n x n x 3 comparison would take 75 MB)."""
    n = len(w)
    packed = np.empty((n, (n + 7) // 8), dtype=np.uint8)
    columns = [np.ascontiguousarray(w[:, k]) for k in range(w.shape[1])]
    for start in range(0, n, BLOCK):
        # One 2-D comparison per objective: ~15x faster than reducing an [b, n, k] cube.
        no_worse = np.ones((min(BLOCK, n - start), n), dtype=bool)
        better = np.zeros_like(no_worse)
        for col in columns:
            a, b = col[start:start + BLOCK, None], col[None, :]
            no_worse &= a >= b
            better |= a > b
        packed[start:start + BLOCK] = np.packbits(no_worse & better, axis=1)
    return packed


def _dominated_counts(packed: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """For each column j, how many of ``rows`` dominate j (unpacked a block at a time)."""
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, len(rows), BLOCK):
        bits = np.unpackbits(packed[rows[start:start + BLOCK]], axis=1, count=n)
        counts += bits.sum(axis=0, dtype=np.int64)
    return counts


def nondominated_fronts(values: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Front number (0 = Pareto front) of each row; ``weights`` +1 maximises, -1 minimises."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    w = np.asarray(values, dtype=np.float64) * np.asarray(weights, dtype=np.float64)
    packed = _dominance_bits(w)
    remaining = _dominated_counts(packed, np.arange(n), n)   # how many rows dominate j
    front = np.full(n, -1, dtype=np.int64)
    current = np.flatnonzero(remaining == 0)
    level = 0
    while current.size:
        front[current] = level
        remaining = remaining - _dominated_counts(packed, current, n)
        remaining[front >= 0] = -1
        current = np.flatnonzero(remaining == 0)
        level += 1
    return front


def crowding(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of ``members`` (row indices) within their front."""
    m = len(members)
    dist = np.zeros(m)
    if m == 0:
        return dist
    v = np.asarray(values, dtype=np.float64)[members]
    nobj = v.shape[1]
    for k in range(nobj):
        order = np.argsort(v[:, k], kind="stable")
        col = v[order, k]
        dist[order[0]] = dist[order[-1]] = np.inf
        span = col[-1] - col[0]
        if m > 2 and span > 0:
            dist[order[1:-1]] += (col[2:] - col[:-2]) / (nobj * span)
    return dist


def rank_candidates(mean: np.ndarray, p_fail: np.ndarray, metrics: Sequence[str],
                    rank_by: str = "nsga2", direction: str | None = None,
                    fail_threshold: float = FAIL_THRESHOLD) -> np.ndarray:
    """Row indices of ``mean`` [n, M], best first."""
    n = len(mean)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    p = np.nan_to_num(np.asarray(p_fail, dtype=np.float64), nan=1.0)
    failing = p >= fail_threshold
    index = np.arange(n)
    keys: list[np.ndarray]
    if rank_by == "nsga2":
        objectives = ranking_objectives(metrics)
        if not objectives:
            raise ValueError(f"none of the objectives {list(OBJECTIVES)} is among {metrics}")
        cols = [list(metrics).index(m) for m in objectives]
        values = np.nan_to_num(mean[:, cols].astype(np.float64), nan=np.inf, posinf=np.inf)
        weights = list(objectives.values())
        values = np.where(np.isfinite(values), values, -np.asarray(weights) * 1e300)
        ok = np.flatnonzero(~failing)
        front = np.zeros(n, dtype=np.int64)
        crowd = np.zeros(n)
        front[ok] = nondominated_fronts(values[ok], weights)
        for level in np.unique(front[ok]):
            members = ok[front[ok] == level]
            crowd[members] = crowding(values, members)
        keys = [index, -crowd, front.astype(np.float64)]
    else:
        col = list(metrics).index(rank_by)
        sign = -1.0 if direction == "max" else 1.0
        score = np.nan_to_num(sign * mean[:, col].astype(np.float64), nan=np.inf)
        keys = [index, score]
    fail_key = np.where(failing, p, -np.inf)
    # np.lexsort sorts by the last key first.
    return np.lexsort(keys + [fail_key, failing.astype(np.int64)])
