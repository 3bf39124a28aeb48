"""Predictions of a chosen ranking quality: what τ the trust figure asks of a model.

Trust (the evolution's top-30 % SPEA2 / NSGA-II selection overlap, :mod:`ml.evaluation.cv`)
depends on how well the three objectives are ranked at once, on ~40 genomes a fold. To say what
per-objective Kendall τ a trust bar needs, this builds stand-in predictions whose τ against the
truth is set: for a bivariate normal with correlation ρ, Kendall's τ = (2/π)·arcsin ρ, so the
truth's normal scores mixed with independent noise at ρ = sin(π τ / 2) have τ ≈ ``tau`` in
expectation. Each column is then mapped back through the truth's own sorted values (a
rank-preserving map), so the stand-ins have the truth's marginal distribution and the selections'
distances (SPEA2 density, NSGA-II crowding) see the same scales as with the real values.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from ml.evaluation.cv import trust_overlaps
from ml.metrics import kendall_tau_b
from ml.models.targets import normal_scores


def _row_normal_scores(values: np.ndarray) -> np.ndarray:
    """Each value's normal score (of its mid-rank), as the models' ``rank`` targets use them."""
    v = np.asarray(values, dtype=np.float64)
    knots, scores = normal_scores(v)
    return scores[np.searchsorted(knots, v)]


def predictions_with_tau(y: np.ndarray, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Stand-in predictions of ``y`` ([n, m]) whose per-column Kendall τ is ``tau`` on average."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1], got {tau}")
    y = np.asarray(y, dtype=np.float64)
    rho = math.sin(math.pi * tau / 2.0)
    out = np.empty_like(y)
    for j in range(y.shape[1]):
        noisy = rho * _row_normal_scores(y[:, j]) + math.sqrt(max(0.0, 1.0 - rho * rho)) \
            * rng.standard_normal(len(y))
        order = rankdata(noisy, method="ordinal").astype(np.int64) - 1
        out[:, j] = np.sort(y[:, j])[order]
    return out


def trust_at_tau(y: np.ndarray, failed: np.ndarray, keys: Sequence[str],
                 metrics: Sequence[str], tau: float, draws: int,
                 rng: np.random.Generator) -> dict[str, float]:
    """Mean SPEA2 / NSGA-II overlap (and the τ reached) of ``draws`` stand-ins on one test fold.

    Only the non-failed rows with finite labels take part, as in the trust figure itself.
    """
    y = np.asarray(y, dtype=np.float64)
    ok = (np.asarray(failed) == 0) & np.all(np.isfinite(y), axis=1)
    y_ok, keys_ok = y[ok], [k for k, keep in zip(keys, ok) if keep]
    spea2, nsga2, taus = [], [], []
    for _ in range(draws):
        pred = predictions_with_tau(y_ok, tau, rng)
        s, n = trust_overlaps(y_ok, pred, np.zeros(len(y_ok)), keys_ok, metrics)
        spea2.append(s)
        nsga2.append(n)
        taus.append(np.mean([kendall_tau_b(y_ok[:, j], pred[:, j]) for j in range(y.shape[1])]))
    return {"spea2": float(np.nanmean(spea2)), "nsga2": float(np.nanmean(nsga2)),
            "tau": float(np.mean(taus))}
