"""Ranking, regression, validity and uncertainty metrics of a predictor on held-out rows: the one
metrics module (evaluation reports, the models' inner model selection and the neural trainer's
early stopping all score with these).

Pure functions on numpy arrays. Ranking metrics are what matter for NAS (the evolution only
compares candidates), so every one is *direction-aware*: ``direction`` is +1 when higher is
better (average_precision, accuracy) and -1 when lower is better (losses); "top" always means best.
Degenerate inputs (fewer than two rows, a constant vector, a single class) give NaN rather than an
exception, so a small fold never aborts a cross-validation.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from ml.datasets.labels import OBJECTIVES

#: Interval half-width in standard deviations for the 95 % ensemble interval.
Z95 = 1.96


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    return t, p


def _constant(v: np.ndarray) -> bool:
    return v.size < 2 or bool(np.all(v == v[0]))


def kendall_tau_b(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Kendall tau-b (tie-corrected; nas-bench-graph and rounded predictions have ties)."""
    t, p = _pair(y_true, y_pred)
    if _constant(t) or _constant(p):
        return math.nan
    return float(stats.kendalltau(t, p, variant="b")[0])


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Spearman rank correlation."""
    t, p = _pair(y_true, y_pred)
    if _constant(t) or _constant(p):
        return math.nan
    return float(stats.spearmanr(t, p)[0])


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson linear correlation (in original units, so heavy tails dominate it)."""
    t, p = _pair(y_true, y_pred)
    if _constant(t) or _constant(p):
        return math.nan
    return float(stats.pearsonr(t, p)[0])


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error in the metric's original units."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if t.size else math.nan


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error in the metric's original units."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if t.size else math.nan


def _best_first(values: np.ndarray, direction: int) -> np.ndarray:
    """Indices ordered best first; ties keep input order (stable), so results are reproducible."""
    return np.argsort(-direction * values, kind="stable")


def top_k_size(n: int, fraction: float) -> int:
    """``max(1, floor(fraction * n))``: the P@topK ratio convention of GATES / FlowerFormer."""
    return max(1, math.floor(fraction * n))


def precision_at_fraction(y_true: np.ndarray, y_pred: np.ndarray, direction: int = 1,
                          fraction: float = 0.10) -> float:
    """|predicted top-k ∩ true top-k| / k, k = floor(fraction·n): is the region search uses
    right?"""
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return math.nan
    k = top_k_size(t.size, fraction)
    true_top = set(_best_first(t, direction)[:k].tolist())
    pred_top = set(_best_first(p, direction)[:k].tolist())
    return len(true_top & pred_top) / k


def true_ranks(y_true: np.ndarray, direction: int = 1) -> np.ndarray:
    """1-based rank of each row by its true value, best = 1 (ties share the best, 'min' method)."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    return stats.rankdata(-direction * t, method="min").astype(np.int64)


def n_at_k(y_true: np.ndarray, y_pred: np.ndarray, direction: int = 1, k: int = 10) -> int:
    """N@K (GATES): best true rank (1 = best) among the K rows the predictor ranks highest.

    Answers "if I train the predicted top-K, how good is the best of them". K is clipped to n.
    """
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        raise ValueError("n_at_k of an empty set")
    ranks = true_ranks(t, direction)
    chosen = _best_first(p, direction)[:min(k, t.size)]
    return int(ranks[chosen].min())


def weighted_tau(y_true: np.ndarray, y_pred: np.ndarray, direction: int = 1) -> float:
    """scipy's weighted tau (hyperbolic weights on rank) with "best" as the heavily weighted end."""
    t, p = _pair(y_true, y_pred)
    if _constant(t) or _constant(p):
        return math.nan
    return float(stats.weightedtau(direction * t, direction * p)[0])


def validity_auc(failed: np.ndarray, p_fail: np.ndarray) -> float:
    """ROC AUC of the failure probability against the failed flag (NaN with one class only)."""
    f = np.asarray(failed, dtype=np.float64).ravel()
    s = np.asarray(p_fail, dtype=np.float64).ravel()
    keep = np.isfinite(f) & np.isfinite(s)
    f, s = f[keep], s[keep]
    if f.size == 0 or np.unique(f).size < 2:
        return math.nan
    return float(roc_auc_score(f.astype(int), s))


def interval_coverage(y_true: np.ndarray, mean: np.ndarray, std: np.ndarray,
                      z: float = Z95) -> float:
    """Fraction of true values inside mean ± z·std (0.95 is calibrated for z = 1.96)."""
    t, m = _pair(y_true, mean)
    s = np.asarray(std, dtype=np.float64).ravel()
    if t.size == 0:
        return math.nan
    return float(np.mean(np.abs(t - m) <= z * s))


def bounds_coverage(y_true: np.ndarray, bounds: np.ndarray) -> tuple[float, float]:
    """Fraction of true values inside ``bounds`` [n, 2] (lower, upper), and the median width
    (NaN, NaN for no rows)."""
    t = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
    if t.size == 0:
        return math.nan, math.nan
    inside = (t >= b[:, 0]) & (t <= b[:, 1])
    return float(inside.mean()), float(np.median(b[:, 1] - b[:, 0]))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, direction: int,
                       std: np.ndarray | None = None, top_fraction: float = 0.10,
                       k: int = 10, interval: np.ndarray | None = None) -> dict[str, float]:
    """Every per-metric score the reports carry, for one target column."""
    t, p = _pair(y_true, y_pred)
    n = t.size
    out: dict[str, float] = {
        "n": float(n),
        "kendall_tau_b": kendall_tau_b(t, p),
        "spearman": spearman(t, p),
        "pearson": pearson(t, p),
        "weighted_tau": weighted_tau(t, p, direction),
        "mae": mae(t, p),
        "rmse": rmse(t, p),
        "precision_at_10pct": precision_at_fraction(t, p, direction, top_fraction),
    }
    if n:
        best = n_at_k(t, p, direction, k)
        out["n_at_k"] = float(best)
        out["n_at_k_percentile"] = best / n  # comparable across folds of different size
    else:
        out["n_at_k"] = out["n_at_k_percentile"] = math.nan
    out["coverage_95"] = interval_coverage(t, p, std) if std is not None else math.nan
    out["interval_coverage_95"], out["interval_median_width"] = \
        bounds_coverage(t, interval) if interval is not None else (math.nan, math.nan)
    return out


def kendall_per_metric(y: np.ndarray, pred: np.ndarray, failed: np.ndarray,
                       metrics: tuple[str, ...]) -> dict[str, float]:
    """tau-b per metric on non-failed rows with finite labels (NaN with fewer than 3 rows)."""
    out = {}
    for j, m in enumerate(metrics):
        rows = ~failed & np.isfinite(y[:, j]) & np.isfinite(pred[:, j])
        out[m] = kendall_tau_b(y[rows, j], pred[rows, j]) if rows.sum() >= 3 else math.nan
    return out


def objective_tau(taus: dict[str, float]) -> float:
    """Mean tau over the evolution's objectives among ``taus`` (all metrics when none is an
    objective): the neural trainer's early-stopping score."""
    keys = [m for m in taus if m in OBJECTIVES] or list(taus)
    vals = [taus[k] for k in keys if np.isfinite(taus[k])]
    return float(np.mean(vals)) if vals else float("-inf")
