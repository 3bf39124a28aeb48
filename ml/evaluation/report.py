"""``report.json`` and PNG plots of one cross-validation run (matplotlib Agg, no display needed).

JSON holds no NaN (``allow_nan=False`` elsewhere in the CLI contract): undefined scores are null.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from ml.evaluation.cv import CVResult
from ml.jsonsafe import json_safe
from ml.metrics import kendall_tau_b

REPORT_NAME = "report.json"


def _fold_rows(result: CVResult) -> list[dict[str, Any]]:
    rows = []
    for fold in result.folds:
        row = asdict(fold)
        row.pop("history", None)
        rows.append(row)
    return rows


def _log_axes(values: np.ndarray) -> bool:
    """Log scale for strictly positive heavy-tailed metrics (uw_val spans 4 decades)."""
    v = values[np.isfinite(values)]
    return v.size > 0 and bool(np.all(v > 0)) and v.max() / v.min() > 100


def _points(y: np.ndarray, mean: np.ndarray, failed: np.ndarray, j: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) of metric ``j`` on the rows that did not fail and are finite."""
    rows = (failed == 0) & np.isfinite(y[:, j]) & np.isfinite(mean[:, j])
    return y[rows, j], mean[rows, j]


def _save(fig: Any, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name)
    plt.close(fig)
    return name


def _squeezed(values: np.ndarray) -> bool:
    """Most values in a sliver of the axis (the middle 80 % spans under 1 % of the range) that
    a log axis cannot open (zeros or negative predictions): average_precision, whose bulk lies
    in 1e-6..1e-4 beside a few values near 0.1, would all be drawn at ~0."""
    v = values[np.isfinite(values)]
    if v.size < 5 or v.max() == v.min():
        return False
    q10, q90 = np.quantile(v, [0.1, 0.9])
    return bool((q90 - q10) < 0.01 * (v.max() - v.min()))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks (ties get their mean rank), as Kendall's tau sees the values."""
    from scipy.stats import rankdata
    return rankdata(values)


def _scatter(ax: Any, t: np.ndarray, p: np.ndarray, metric: str, ylabel: str,
             title: str) -> None:
    """Predicted against true values with the diagonal: log axes for heavy tails, rank axes
    where the values crowd a sliver a log axis cannot open (tau is a rank figure, so the rank
    plot shows exactly what it measures)."""
    both = np.concatenate([t, p])
    rank = not _log_axes(both) and _squeezed(both)
    if rank:
        t, p = _ranks(t), _ranks(p)
    ax.scatter(t, p, s=14, alpha=0.7, edgecolors="none")
    if t.size:
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle="--")
    if not rank and _log_axes(both):
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"rank of true {metric} (1 = lowest)" if rank else f"true {metric}")
    ax.set_ylabel(f"rank of {ylabel} (1 = lowest)" if rank else ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def plot_predicted_vs_true(result: CVResult, out_dir: Path, seed: int | None = None) -> list[str]:
    """One scatter per metric: out-of-fold prediction vs truth on the non-failed rows."""
    seed = next(iter(result.oof)) if seed is None else seed
    pred = result.oof[seed]
    seeds = len(result.oof)
    folds = len({f.fold for f in result.folds})
    names = []
    for m, metric in enumerate(result.metrics):
        t, p = _points(result.y, pred.mean, result.failed, m)
        per_fold = [f.per_metric[metric]["kendall_tau_b"] for f in result.folds]
        per_fold = [x for x in per_fold if x is not None and np.isfinite(x)]
        mean = float(np.mean(per_fold)) if per_fold else float("nan")
        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        # Two taus, named: the report's table is the mean over folds (and seeds); the points
        # drawn are one seed's out-of-fold predictions pooled, whose tau differs from it.
        _scatter(ax, t, p, metric, f"predicted {metric} (out of fold)",
                 f"{metric}: tau-b {mean:.3f} = the table's (mean of "
                 f"{folds} folds{f' x {seeds} seeds' if seeds > 1 else ''})\n"
                 f"tau-b {kendall_tau_b(t, p):.3f} of these points (seed {seed}, pooled, "
                 f"n={t.size})")
        names.append(_save(fig, out_dir, f"pred_vs_true_{metric}.png"))
    return names


def _epochs(history: Any) -> Any:
    """Per-epoch entries of a fit history: a list, ``{"epochs": [...]}`` or, for ensembles,
    ``{"members": [[...], ...]}`` (the first member is plotted)."""
    if isinstance(history, dict):
        members = history.get("members")
        if isinstance(members, list) and members and isinstance(members[0], list):
            return members[0]
        return history.get("epochs")
    return history


def _curves(history: Any) -> dict[str, list[float]]:
    """Numeric per-epoch series (every finite number but the epoch index) from a fit history."""
    epochs = _epochs(history)
    if not isinstance(epochs, list):
        return {}
    curves: dict[str, list[float]] = {}
    for entry in epochs:
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                curves.setdefault(key, []).append(float(value))
    return curves


def plot_learning_curves(result: CVResult, out_dir: Path) -> list[str]:
    """Per-epoch fit history of the first seed's folds; nothing when the model has no epochs."""
    first_seed = result.folds[0].seed if result.folds else None
    folds = [f for f in result.folds if f.seed == first_seed and f.history]
    series = [(f.fold, _curves(f.history)) for f in folds]
    keys = sorted({k for _, c in series for k in c})
    if not keys:
        return []
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 2.4 * len(keys)), dpi=100, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        for fold, curves in series:
            if key in curves:
                ax.plot(curves[key], label=f"fold {fold}", linewidth=1)
        ax.set_ylabel(key, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("epoch")
    axes[0, 0].legend(fontsize=7)
    return [_save(fig, out_dir, "learning_curves.png")]


def write_report(out_dir: str | Path, config: dict[str, Any], dataset: dict[str, Any],
                 result: CVResult, summary: dict[str, Any], seconds: float) -> Path:
    """Write ``report.json`` and the plots into ``out_dir``; returns the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_predicted_vs_true(result, out) + plot_learning_curves(result, out)
    report = {
        "config": config,
        "dataset": dataset,
        "metrics": list(result.metrics),
        "directions": list(result.directions),
        "summary": summary,
        "folds": _fold_rows(result),
        "timings": {"total_s": seconds, **summary.get("timings_s", {})},
        "plots": plots,
    }
    path = out / REPORT_NAME
    path.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    return path


def plot_generation(result: dict[str, Any], out_dir: Path) -> list[str]:
    """Generation-forward plots: the trust curve (SPEA2 / NSGA-II top-30 % overlap and the
    objectives' tau-b per scored generation) and, per generation, predicted vs true for each
    objective on its non-failed rows."""
    from ml.evaluation.selection import OBJECTIVE_NAMES

    rows = result["generations"]
    gens = [r["generation"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for key, label in (("trust_spea2_top30", "SPEA2 top-30 % overlap"),
                       ("trust_nsga2_top30", "NSGA-II top-30 % overlap")):
        ax.plot(gens, [r[key] for r in rows], marker="o", linewidth=2, label=label)
    # The evolution's three objectives when the model predicts them, else every metric it has.
    objectives = [m for m in OBJECTIVE_NAMES if m in result["metrics"]] or list(result["metrics"])
    for metric in objectives:
        ax.plot(gens, [r["per_metric"][metric]["kendall_tau_b"] for r in rows], marker=".",
                linestyle="--", label=f"tau-b {metric}")
    ax.set_xlabel("scored generation (trained on every earlier one)")
    ax.set_ylabel("overlap / Kendall tau-b")
    ax.set_ylim(-0.4, 1.0)
    ax.set_xticks(gens)
    ax.set_title(f"{result['model']}: generation-forward trust", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    names = [_save(fig, out_dir, "trust_by_generation.png")]
    for row in rows:
        fig, axes = plt.subplots(1, len(objectives), figsize=(4 * len(objectives), 4), dpi=90,
                                 squeeze=False)
        for ax, metric in zip(axes[0], objectives):
            j = result["metrics"].index(metric)
            t, p = _points(row["y"], row["prediction"].mean, row["failed"], j)
            tau = row["per_metric"][metric]["kendall_tau_b"]
            _scatter(ax, t, p, metric, f"predicted {metric}", f"tau-b {tau:.3f} (n={t.size})")
        fig.suptitle(f"generation {row['generation']:g}: trained on {row['n_train']} earlier "
                     "rows", fontsize=10)
        names.append(_save(fig, out_dir, f"generation_{int(row['generation']):03d}.png"))
    return names
