"""The vectorised ranking of ``/predict`` against DEAP itself (the evolution's library) as the
oracle: its ``sortNondominated`` fronts and ``assignCrowdingDist`` distances."""
from __future__ import annotations

import numpy as np
import pytest
from deap import base, tools

from ml.evaluation.selection import OBJECTIVE_WEIGHTS
from ml.ranking import crowding, nondominated_fronts, rank_candidates

METRICS = ("uw_val_epoch_loss", "ciou_loss", "average_precision", "iou_loss")


class _Fitness(base.Fitness):
    weights = OBJECTIVE_WEIGHTS


class _Individual(list):
    """A row as DEAP sees an individual: ``[index]`` with its fitness."""

    def __init__(self, index: int, values: np.ndarray) -> None:
        super().__init__([index])
        self.fitness = _Fitness(tuple(float(v) for v in values))


def _population(values: np.ndarray) -> list[_Individual]:
    return [_Individual(i, row) for i, row in enumerate(values)]


@pytest.mark.parametrize("seed", range(5))
def test_fronts_match_deap_sort(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=(120, 3)).astype(float)  # many ties and duplicates
    fronts = tools.sortNondominated(_population(values), len(values))
    expected = np.empty(len(values), dtype=int)
    for level, front in enumerate(fronts):
        expected[[ind[0] for ind in front]] = level
    assert np.array_equal(nondominated_fronts(values, OBJECTIVE_WEIGHTS), expected)


def test_crowding_matches_deap():
    rng = np.random.default_rng(7)
    values = rng.normal(size=(40, 3))
    members = np.arange(40)
    ours = crowding(values, members)
    population = _population(values)
    tools.emo.assignCrowdingDist(population)
    theirs = np.array([ind.fitness.crowding_dist for ind in population])
    assert np.allclose(ours, theirs)


def test_rank_is_a_permutation_with_failures_last():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(500, len(METRICS)))
    p_fail = rng.uniform(size=500)
    for mode, direction in (("nsga2", None), ("ciou_loss", "min"), ("average_precision", "max")):
        order = rank_candidates(mean, p_fail, METRICS, mode, direction)
        assert sorted(order.tolist()) == list(range(500))
        failing = p_fail[order] >= 0.5
        assert not np.any(failing[:-1] & ~failing[1:])        # no ok row after a failing one
        tail = p_fail[order][failing]
        assert np.all(np.diff(tail) >= 0)                     # failures by p_fail ascending
    order = rank_candidates(mean, np.zeros(500), METRICS, "ciou_loss", "min")
    assert np.all(np.diff(mean[order, 1]) >= 0)


def test_nsga2_orders_fronts_then_crowding():
    mean = np.array([[1.0, 1.0, 0.9, 0], [2.0, 2.0, 0.1, 0], [1.0, 2.0, 0.95, 0],
                     [0.5, 3.0, 0.5, 0]])
    order = rank_candidates(mean, np.zeros(4), METRICS).tolist()
    assert order[-1] == 1  # the only dominated row
    assert set(order[:3]) == {0, 2, 3}
