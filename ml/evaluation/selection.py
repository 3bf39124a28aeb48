"""The evolution's selection operators, reimplemented so the trust figure needs no DEAP.

The evolution selects with DEAP's ``tools.selNSGA2`` and scores sub-surrogates with
``tools.selSPEA2(k = 0.3 n)`` overlap (surrogate-usage.md §4). What matters for trust is *which*
individuals get picked, so these functions follow DEAP 1.4 step by step, tie-breaking included:

* dominance on weighted values (``value · weight``; weight -1 minimises, +1 maximises), with
  identical objective vectors grouped as one fitness (DEAP hashes fitnesses by ``wvalues``);
* NSGA-II crowding distance on raw values, objectives sorted in turn on one stable, in-place list,
  the last front cut by a stable descending sort on crowding distance;
* SPEA2 raw fitness = sum of dominators' strengths; when the non-dominated archive is too small,
  density ``1/(d_k + 2)`` with DEAP's quirk of only filling distances to *later* individuals (the
  rest stay 0) and ``d_k`` = element ``floor(sqrt(N))`` of that list in ascending order (what
  ``_randomizedSelect`` returns for a non-integer rank); when it is too large, DEAP's iterative
  nearest-neighbour truncation, loop for loop.

Selections are returned as index lists into the input rows.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from ml.datasets.labels import OBJECTIVES

#: Weights of the evolution's objective vector, in its order.
OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVES)
OBJECTIVE_WEIGHTS: tuple[float, ...] = tuple(float(v) for v in OBJECTIVES.values())
#: The evolution's SPEA2 trust selects this fraction of the validation individuals.
TRUST_FRACTION = 0.3


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """DEAP ``Fitness.dominates`` on weighted values: no worse everywhere, better somewhere."""
    not_equal = False
    for x, y in zip(a, b):
        if x > y:
            not_equal = True
        elif x < y:
            return False
    return not_equal


def _weighted(values: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != len(weights):
        raise ValueError(f"objective matrix must be [n, {len(weights)}], got {v.shape}")
    return v * np.asarray(weights, dtype=np.float64)


def sort_nondominated(values: np.ndarray, k: int,
                      weights: Sequence[float] = OBJECTIVE_WEIGHTS) -> list[list[int]]:
    """DEAP ``sortNondominated``: Pareto fronts (row indices) until at least k rows are sorted."""
    if k == 0:
        return []
    wv = _weighted(values, weights)
    groups: dict[tuple[float, ...], list[int]] = defaultdict(list)
    for i, row in enumerate(map(tuple, wv)):
        groups[row].append(i)
    fits = list(groups)
    # DEAP compares every pair of distinct fitnesses in Python; the relation is computed here
    # with numpy in row blocks and read back in DEAP's order: fitness i's "dominated" list is
    # every fitness it dominates in index order (DEAP appends the earlier ones while their rows
    # are processed, the later ones in its own row), "dominating" counts its dominators.
    unique = np.array(fits, dtype=np.float64).reshape(len(fits), wv.shape[1])
    dominating = defaultdict(int)   # how many fitnesses dominate this one
    dominated: dict[tuple, list[tuple]] = defaultdict(list)  # which fitnesses this one dominates
    counts = np.zeros(len(fits), dtype=np.int64)
    block = max(1, 2 ** 22 // max(1, len(fits) * unique.shape[1]))
    for start in range(0, len(fits), block):
        rows = unique[start:start + block, None, :]
        relation = (rows >= unique[None, :, :]).all(axis=2) & \
            (rows > unique[None, :, :]).any(axis=2)
        counts += relation.sum(axis=0)
        for offset in np.flatnonzero(relation.any(axis=1)):
            dominated[fits[start + offset]] = [fits[j] for j in np.flatnonzero(relation[offset])]
    for fit, count in zip(fits, counts.tolist()):
        if count:
            dominating[fit] = count
    current: list[tuple] = [fit for fit, count in zip(fits, counts.tolist()) if count == 0]
    fronts: list[list[int]] = [[]]
    for fit in current:
        fronts[-1].extend(groups[fit])
    sorted_count = len(fronts[-1])
    limit = min(len(wv), k)
    while sorted_count < limit:
        fronts.append([])
        following: list[tuple] = []
        for fp in current:
            for fd in dominated[fp]:
                dominating[fd] -= 1
                if dominating[fd] == 0:
                    following.append(fd)
                    sorted_count += len(groups[fd])
                    fronts[-1].extend(groups[fd])
        current = following
    return fronts


def crowding_distance(values: np.ndarray, front: Sequence[int]) -> list[float]:
    """DEAP ``assignCrowdingDist`` for the rows in ``front`` (returned in front order)."""
    if not front:
        return []
    vals = np.asarray(values, dtype=np.float64)
    distances = [0.0] * len(front)
    crowd = [(tuple(vals[i]), pos) for pos, i in enumerate(front)]
    nobj = vals.shape[1]
    for m in range(nobj):
        crowd.sort(key=lambda element: element[0][m])
        distances[crowd[0][1]] = math.inf
        distances[crowd[-1][1]] = math.inf
        if crowd[-1][0][m] == crowd[0][0][m]:
            continue
        norm = nobj * float(crowd[-1][0][m] - crowd[0][0][m])
        for prev, cur, nxt in zip(crowd[:-2], crowd[1:-1], crowd[2:]):
            distances[cur[1]] += (nxt[0][m] - prev[0][m]) / norm
    return distances


def select_nsga2(values: np.ndarray, k: int,
                 weights: Sequence[float] = OBJECTIVE_WEIGHTS) -> list[int]:
    """DEAP ``selNSGA2`` (standard sort): k row indices, whole fronts first, then by crowding."""
    fronts = sort_nondominated(values, k, weights)
    if not fronts:
        return []
    chosen = [i for front in fronts[:-1] for i in front]
    remaining = k - len(chosen)
    if remaining > 0:
        last = fronts[-1]
        dist = crowding_distance(values, last)
        order = sorted(range(len(last)), key=lambda pos: dist[pos], reverse=True)
        chosen.extend(last[pos] for pos in order[:remaining])
    return chosen


def _sq_dist(vals: np.ndarray, i: int, j: int) -> float:
    d = vals[i] - vals[j]
    return float(np.dot(d, d))


def select_spea2(values: np.ndarray, k: int,
                 weights: Sequence[float] = OBJECTIVE_WEIGHTS) -> list[int]:
    """DEAP ``selSPEA2``: k row indices (non-dominated archive, then density fill or truncation)."""
    vals = np.asarray(values, dtype=np.float64)
    wv = _weighted(vals, weights)
    n = len(vals)
    if n == 0 or k <= 0:
        return []
    strength = [0] * n
    fits: list[float] = [0.0] * n
    dominators: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if _dominates(wv[i], wv[j]):
                strength[i] += 1
                dominators[j].append(i)
            elif _dominates(wv[j], wv[i]):
                strength[j] += 1
                dominators[i].append(j)
    for i in range(n):
        fits[i] += sum(strength[j] for j in dominators[i])
    chosen = [i for i in range(n) if fits[i] < 1]

    if len(chosen) < k:
        kth = min(int(math.floor(math.sqrt(n))), n - 1)
        for i in range(n):
            distances = [0.0] * (i + 1) + [_sq_dist(vals, i, j) for j in range(i + 1, n)]
            fits[i] += 1.0 / (sorted(distances)[kth] + 2.0)
        chosen_set = set(chosen)
        rest = sorted((fits[i], i) for i in range(n) if i not in chosen_set)
        chosen += [i for _, i in rest[:k - len(chosen)]]
    elif len(chosen) > k:
        chosen = _spea2_truncate(vals, chosen, k)
    return chosen


def _spea2_truncate(vals: np.ndarray, chosen: list[int], k: int) -> list[int]:
    """DEAP's archive truncation: repeatedly drop the member closest to its nearest neighbours."""
    m = len(chosen)
    dist = [[0.0] * m for _ in range(m)]
    for i in range(m):
        for j in range(i + 1, m):
            d = _sq_dist(vals, chosen[i], chosen[j])
            dist[i][j] = d
            dist[j][i] = d
        dist[i][i] = -1.0
    order = [list(np.argsort(np.asarray(dist[i]), kind="stable")) for i in range(m)]
    size = m
    removed: list[int] = []
    while size > k:
        min_pos = 0
        for i in range(1, m):
            for j in range(1, size):
                di = dist[i][order[i][j]]
                dmin = dist[min_pos][order[min_pos][j]]
                if di < dmin:
                    min_pos = i
                    break
                if di > dmin:
                    break
        for i in range(m):
            dist[i][min_pos] = math.inf
            dist[min_pos][i] = math.inf
            for j in range(1, size - 1):
                if order[i][j] == min_pos:
                    order[i][j] = order[i][j + 1]
                    order[i][j + 1] = min_pos
        removed.append(min_pos)
        size -= 1
    drop = set(removed)
    return [c for pos, c in enumerate(chosen) if pos not in drop]


def selection_overlap(true_values: np.ndarray, pred_values: np.ndarray, method: str = "spea2",
                      fraction: float = TRUST_FRACTION,
                      weights: Sequence[float] = OBJECTIVE_WEIGHTS) -> float:
    """The evolution's trust: |sel(true) ∩ sel(pred)| / |sel(true)| with k = floor(fraction·n).

    DEAP is called with ``k = 0.3 * n``; a float k cannot slice, so the floor is used here.
    """
    t = np.asarray(true_values, dtype=np.float64)
    p = np.asarray(pred_values, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    k = int(math.floor(fraction * len(t)))
    if k < 1:
        return math.nan
    select = {"spea2": select_spea2, "nsga2": select_nsga2}[method]
    sel_true = set(select(t, k, weights))
    sel_pred = set(select(p, k, weights))
    return len(sel_true & sel_pred) / len(sel_true)
