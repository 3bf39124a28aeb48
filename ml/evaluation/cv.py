"""Grouped k-fold cross-validation of a predictor, repeated over seeds.

Folds are grouped by ``canonical_hash`` (:mod:`ml.datasets.splits`) so a genome and its
duplicates are never on both sides of a split (otherwise memorised duplicates inflate every
ranking metric). Each seed reshuffles which
groups go to which fold. Failed evaluations count only for the validity AUC; regression and
ranking metrics use the non-failed test rows with a finite label. A further grouped slice of each
training fold is handed to the predictor as its validation set (early stopping, model selection).
``train_fraction`` < 1 keeps only a grouped random fraction of each training fold (a learning
curve on the same test folds; the smaller fractions' groups are subsets of the larger ones').
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch_geometric.data import Data

from ml.datasets.records import failed_flags, mean_repeats, targets
from ml.datasets.splits import grouped_fold_ids, grouped_holdout, groups
from ml.evaluation.selection import OBJECTIVE_NAMES, OBJECTIVE_WEIGHTS, selection_overlap
from ml.metrics import regression_metrics, validity_auc
from ml.models.base import Prediction, Predictor

#: ``factory(seed) -> fresh predictor``; called once per fold.
PredictorFactory = Callable[[int], Predictor]


@dataclass
class FoldResult:
    """Scores of one (seed, fold): per-metric dicts, validity AUC, trust overlaps, timings."""

    seed: int
    fold: int
    n_train: int
    n_val: int
    n_test: int
    per_metric: dict[str, dict[str, float]]
    validity_auc: float
    trust_spea2: float
    trust_nsga2: float
    fit_seconds: float
    predict_seconds: float
    history: Any = None


@dataclass
class CVResult:
    """All folds, plus out-of-fold predictions per seed (for plots and pooled metrics)."""

    metrics: tuple[str, ...]
    directions: tuple[int, ...]
    folds: list[FoldResult] = field(default_factory=list)
    oof: dict[int, Prediction] = field(default_factory=dict)
    y: np.ndarray | None = None
    failed: np.ndarray | None = None
    fold_ids: dict[int, np.ndarray] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)


def _dedup_by_group(keys: Sequence[str]) -> np.ndarray:
    """Mask keeping the first row of each group (the evolution's trust deduplicates by hash)."""
    seen: set[str] = set()
    keep = np.zeros(len(keys), dtype=bool)
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            keep[i] = True
    return keep


def trust_overlaps(y: np.ndarray, pred: np.ndarray, failed: np.ndarray, keys: Sequence[str],
                   metrics: Sequence[str]) -> tuple[float, float]:
    """SPEA2 and NSGA-II top-30 % overlap of predicted vs true objective vectors (non-failed rows).

    NaN when the metrics do not include all three objectives or fewer than 4 rows qualify.
    """
    try:
        cols = [list(metrics).index(name) for name in OBJECTIVE_NAMES]
    except ValueError:
        return math.nan, math.nan
    t, p = y[:, cols], pred[:, cols]
    ok = (failed == 0) & np.all(np.isfinite(t), axis=1) & np.all(np.isfinite(p), axis=1)
    ok &= _dedup_by_group(keys)
    if ok.sum() < 4:
        return math.nan, math.nan
    return (selection_overlap(t[ok], p[ok], "spea2", weights=OBJECTIVE_WEIGHTS),
            selection_overlap(t[ok], p[ok], "nsga2", weights=OBJECTIVE_WEIGHTS))


def score_predictions(y: np.ndarray, failed: np.ndarray, pred: Prediction, keys: Sequence[str],
                      metrics: Sequence[str], directions: Sequence[int],
                      k: int = 10) -> tuple[dict[str, dict[str, float]], float, float, float]:
    """Per-metric scores on non-failed finite rows, validity AUC on all, trust overlaps."""
    per_metric: dict[str, dict[str, float]] = {}
    for m, (metric, direction) in enumerate(zip(metrics, directions)):
        rows = (failed == 0) & np.isfinite(y[:, m]) & np.isfinite(pred.mean[:, m])
        std = pred.std[rows, m] if pred.std is not None else None
        bounds = pred.interval[rows, m] if pred.interval is not None else None
        per_metric[metric] = regression_metrics(y[rows, m], pred.mean[rows, m], direction, std,
                                                k=k, interval=bounds)
    auc = validity_auc(failed, pred.p_fail)
    spea2, nsga2 = trust_overlaps(y, pred.mean, failed, keys, metrics)
    return per_metric, auc, spea2, nsga2


def _subsample_groups(keys: Sequence[str], mask: np.ndarray, fraction: float,
                      seed: int) -> np.ndarray:
    """``mask`` reduced to a grouped random ``fraction`` of its groups (at least one).

    One seeded permutation of the groups, cut at a length that grows with ``fraction``, so the
    groups kept at a smaller fraction are among those kept at a larger one.
    """
    rows = np.flatnonzero(mask)
    kept = grouped_holdout([keys[i] for i in rows], fraction, seed + 7919, at_least_one=True)
    out = np.zeros_like(mask)
    out[rows[kept]] = True
    return out


def _take(records: Sequence[Data], mask: np.ndarray) -> list[Data]:
    return [r for r, keep in zip(records, mask) if keep]


def _history_of(predictor: Any, returned: Any) -> Any:
    """The fit history: what ``fit`` returned when it is a dict/list, else ``predictor.history``."""
    if isinstance(returned, (dict, list)):
        return returned or None
    return getattr(predictor, "history", None) or None


def cross_validate(records: Sequence[Data], factory: PredictorFactory, metrics: Sequence[str],
                   directions: Sequence[int], n_folds: int = 5, seeds: Sequence[int] = range(5),
                   val_fraction: float = 0.15, config: dict | None = None, k: int = 10,
                   log: Callable[[str], None] | None = None,
                   train_fraction: float = 1.0) -> CVResult:
    """Run grouped k-fold CV for every seed; returns per-fold scores and out-of-fold predictions."""
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
    keys = groups(records)
    y = targets(records, len(metrics))
    failed = failed_flags(records)
    result = CVResult(tuple(metrics), tuple(directions), y=y, failed=failed, keys=keys)
    for seed in seeds:
        fold_ids = grouped_fold_ids(keys, n_folds, seed)
        result.fold_ids[seed] = fold_ids
        oof_mean = np.full_like(y, np.nan)
        oof_std: np.ndarray | None = np.full_like(y, np.nan)
        oof_fail = np.full(len(records), np.nan)
        for fold in range(n_folds):
            test = fold_ids == fold
            train_all = ~test
            if train_fraction < 1.0:
                train_all = _subsample_groups(keys, train_all, train_fraction, seed * 1000 + fold)
            train_keys = [k_ for k_, t in zip(keys, train_all) if t]
            hold = grouped_holdout(train_keys, val_fraction, seed * 1000 + fold)
            train_idx = np.flatnonzero(train_all)
            # One record per genome for fitting (repeats averaged), as ml.train.fit_predictor.
            train = mean_repeats(_take([records[i] for i in train_idx], ~hold))
            val = mean_repeats(_take([records[i] for i in train_idx], hold))
            test_records = _take(records, test)
            predictor = factory(seed * 1000 + fold)
            start = time.perf_counter()
            returned = predictor.fit(train, val, config, None)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            pred = predictor.predict(test_records)
            predict_s = time.perf_counter() - start
            pred = Prediction(np.asarray(pred.mean, dtype=np.float64),
                              None if pred.std is None else np.asarray(pred.std, np.float64),
                              np.asarray(pred.p_fail, dtype=np.float64).reshape(-1),
                              interval=None if pred.interval is None else
                              np.asarray(pred.interval, np.float64))
            oof_mean[test] = pred.mean
            oof_fail[test] = pred.p_fail
            if pred.std is None:
                oof_std = None
            elif oof_std is not None:
                oof_std[test] = pred.std
            test_keys = [k_ for k_, t in zip(keys, test) if t]
            per_metric, auc, spea2, nsga2 = score_predictions(
                y[test], failed[test], pred, test_keys, metrics, directions, k)
            result.folds.append(FoldResult(seed, fold, len(train), len(val), int(test.sum()),
                                           per_metric, auc, spea2, nsga2, fit_s, predict_s,
                                           _history_of(predictor, returned)))
            if log is not None:
                taus = ", ".join(f"{m}={per_metric[m]['kendall_tau_b']:.3f}" for m in metrics)
                log(f"seed {seed} fold {fold}: tau-b {taus}; auc={auc:.3f} "
                    f"({fit_s:.1f}s fit)")
        result.oof[seed] = Prediction(oof_mean, oof_std, oof_fail)
    return result


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std, median and count of the finite values (None and NaN skipped)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "std": math.nan, "median": math.nan, "count": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "median": float(np.median(v)), "count": int(v.size)}


def summarize(result: CVResult, k: int = 10) -> dict[str, Any]:
    """Mean ± std over seeds×folds (``per_fold``) and over seeds of pooled out-of-fold scores."""
    keys = result.keys
    per_fold: dict[str, dict[str, dict[str, float]]] = {}
    for metric in result.metrics:
        names = result.folds[0].per_metric[metric].keys()
        per_fold[metric] = {name: mean_std([f.per_metric[metric][name] for f in result.folds])
                            for name in names}
    pooled_runs = [score_predictions(result.y, result.failed, pred, keys, result.metrics,
                                     result.directions, k) for pred in result.oof.values()]
    pooled: dict[str, dict[str, dict[str, float]]] = {}
    for metric in result.metrics:
        names = pooled_runs[0][0][metric].keys()
        pooled[metric] = {name: mean_std([run[0][metric][name] for run in pooled_runs])
                          for name in names}
    return {
        "per_fold": per_fold,
        "pooled_oof": pooled,
        "validity_auc": {"per_fold": mean_std([f.validity_auc for f in result.folds]),
                         "pooled_oof": mean_std([run[1] for run in pooled_runs])},
        "trust_spea2_top30": {"per_fold": mean_std([f.trust_spea2 for f in result.folds]),
                              "pooled_oof": mean_std([run[2] for run in pooled_runs])},
        "trust_nsga2_top30": {"per_fold": mean_std([f.trust_nsga2 for f in result.folds]),
                              "pooled_oof": mean_std([run[3] for run in pooled_runs])},
        "timings_s": {"fit": mean_std([f.fit_seconds for f in result.folds]),
                      "predict": mean_std([f.predict_seconds for f in result.folds])},
    }
