"""The evolution's selection operators on rows of objective values, as its trust figures use
them: it selects with DEAP's ``tools.selNSGA2`` and scores a sub-surrogate by the overlap of
``tools.selSPEA2(k = 0.3 n)`` on true and on predicted values. What matters for trust is *which*
individuals get picked, DEAP's tie-breaking included.

SPEA2 is DEAP's own function, called on the rows. NSGA-II is DEAP's algorithm with the
dominance relation computed in numpy row blocks: the search selects parents from broods of
thousands every round, where DEAP's pure-Python pairwise sort costs seconds; the fronts, their
order and the crowding cut are DEAP's
(``tests/ml/evaluation/test_selection_deap.py`` holds DEAP as the oracle):

* dominance on weighted values (``value · weight``; weight -1 minimises, +1 maximises), with
  identical objective vectors grouped as one fitness (DEAP hashes fitnesses by ``wvalues``);
* crowding distance on raw values, objectives sorted in turn on one stable, in-place list, the
  last front cut by a stable descending sort on crowding distance.

Selections are returned as index lists into the input rows.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from functools import cache

import numpy as np
from deap import base, tools

from ml.datasets.labels import OBJECTIVES

#: Weights of the evolution's objective vector, in its order.
OBJECTIVE_NAMES: tuple[str, ...] = tuple(OBJECTIVES)
OBJECTIVE_WEIGHTS: tuple[float, ...] = tuple(float(v) for v in OBJECTIVES.values())
#: The evolution's SPEA2 trust selects this fraction of the validation individuals.
TRUST_FRACTION = 0.3


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


@cache
def _fitness_class(weights: tuple[float, ...]) -> type[base.Fitness]:
    """A DEAP fitness with these weights (one class per weight vector, as ``creator`` would
    make, without registering a global name)."""
    return type("TrustFitness", (base.Fitness,), {"weights": weights})


class _Row:
    """One objective row as DEAP's selections see an individual: its fitness, and its index."""

    __slots__ = ("fitness", "index")

    def __init__(self, index: int, fitness: base.Fitness) -> None:
        self.index, self.fitness = index, fitness


def select_spea2(values: np.ndarray, k: int,
                 weights: Sequence[float] = OBJECTIVE_WEIGHTS) -> list[int]:
    """DEAP ``selSPEA2`` itself, as the evolution scores its sub-surrogates: k row indices
    (the non-dominated archive, then the density fill or the truncation)."""
    vals = np.asarray(values, dtype=np.float64)
    _weighted(vals, weights)  # the shape check
    if len(vals) == 0 or k <= 0:
        return []
    fitness = _fitness_class(tuple(float(w) for w in weights))
    rows = [_Row(i, fitness(tuple(row))) for i, row in enumerate(vals.tolist())]
    return [row.index for row in tools.selSPEA2(rows, k)]


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
    k = math.floor(fraction * len(t))
    if k < 1:
        return math.nan
    select = {"spea2": select_spea2, "nsga2": select_nsga2}[method]
    sel_true = set(select(t, k, weights))
    sel_pred = set(select(p, k, weights))
    return len(sel_true & sel_pred) / len(sel_true)
