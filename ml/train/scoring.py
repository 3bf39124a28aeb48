"""Validation score used for early stopping: mean Kendall tau-b over the objectives."""
from __future__ import annotations

import numpy as np
from scipy.stats import kendalltau

from ml.datasets.labels import OBJECTIVES


def kendall_per_metric(y: np.ndarray, pred: np.ndarray, failed: np.ndarray,
                       metrics: tuple[str, ...]) -> dict[str, float]:
    """tau-b per metric on non-failed rows with finite labels (NaN when undefined)."""
    out = {}
    for j, m in enumerate(metrics):
        rows = ~failed & np.isfinite(y[:, j]) & np.isfinite(pred[:, j])
        tau = kendalltau(y[rows, j], pred[rows, j])[0] if rows.sum() >= 3 else np.nan
        out[m] = float(tau) if np.isfinite(tau) else float("nan")
    return out


def objective_tau(taus: dict[str, float]) -> float:
    """Mean tau over the selected objectives (all metrics when none is an objective)."""
    keys = [m for m in taus if m in OBJECTIVES] or list(taus)
    vals = [taus[k] for k in keys if np.isfinite(taus[k])]
    return float(np.mean(vals)) if vals else float("-inf")
