"""The trust figure's selections against DEAP itself (the evolution's library) as the oracle, on
individuals made as the evolution makes them (``creator`` classes): ``select_nsga2`` computes
DEAP's ``selNSGA2`` with a vectorised dominance relation and must pick the same rows in the
same order; ``select_spea2`` calls ``selSPEA2`` on rows of values, and must pick what it picks
on the evolution's individuals (weights, order, ties and duplicates included)."""
from __future__ import annotations

import numpy as np
import pytest
from deap import base, creator, tools

from ml.evaluation.selection import OBJECTIVE_WEIGHTS, select_nsga2, select_spea2, selection_overlap

if not hasattr(creator, "FitnessTrust"):
    creator.create("FitnessTrust", base.Fitness, weights=OBJECTIVE_WEIGHTS)
    creator.create("TrustIndividual", list, fitness=creator.FitnessTrust)


def _population(values: np.ndarray) -> list:
    population = []
    for i, row in enumerate(values):
        ind = creator.TrustIndividual([i])
        ind.fitness.values = tuple(float(v) for v in row)
        population.append(ind)
    return population


def _values(seed: int, n: int, ties: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: equal objective vectors and equal coordinates
        return rng.integers(0, 5, size=(n, 3)).astype(float)
    return np.column_stack([rng.lognormal(2, 1, n), rng.uniform(0, 3, n), rng.uniform(0, 1, n)])


@pytest.mark.parametrize(("ours_select", "deap_select"),
                         [(select_spea2, tools.selSPEA2), (select_nsga2, tools.selNSGA2)],
                         ids=["spea2", "nsga2"])
@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
def test_selection_picks_what_deap_picks(ours_select, deap_select, seed, ties):
    values = _values(seed, 12 + 7 * seed, ties)
    for k in (1, int(0.3 * len(values)), len(values) // 2):
        ours = ours_select(values, k, OBJECTIVE_WEIGHTS)
        theirs = [ind[0] for ind in deap_select(_population(values), k)]
        assert ours == theirs, (seed, ties, k)


def test_trust_overlap_with_deap_selections():
    """reg_trust as the evolution computes it: |SPEA2(true) ∩ SPEA2(pred)| / |SPEA2(true)|."""
    rng = np.random.default_rng(3)
    true = _values(3, 40, False)
    pred = true * rng.uniform(0.7, 1.3, size=true.shape)
    k = int(0.3 * len(true))
    sel_true = {ind[0] for ind in tools.selSPEA2(_population(true), k)}
    sel_pred = {ind[0] for ind in tools.selSPEA2(_population(pred), k)}
    assert selection_overlap(true, pred, "spea2") == len(sel_true & sel_pred) / len(sel_true)


def test_nsga2_trust_overlap_with_deap_selections():
    """cls_trust's NSGA-II variant, with DEAP's selNSGA2 as the evolution calls it."""
    rng = np.random.default_rng(5)
    true = _values(5, 60, True)
    pred = true + rng.integers(-1, 2, size=true.shape)
    k = int(0.3 * len(true))
    sel_true = {ind[0] for ind in tools.selNSGA2(_population(true), k)}
    sel_pred = {ind[0] for ind in tools.selNSGA2(_population(pred), k)}
    assert selection_overlap(true, pred, "nsga2") == len(sel_true & sel_pred) / len(sel_true)
