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
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ml.evaluation.cv import CVResult  # noqa: E402
from ml.jsonsafe import json_safe  # noqa: E402
from ml.metrics import kendall_tau_b  # noqa: E402

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


def plot_predicted_vs_true(result: CVResult, out_dir: Path, seed: int | None = None) -> list[str]:
    """One scatter per metric: out-of-fold prediction vs truth on the non-failed rows."""
    seed = next(iter(result.oof)) if seed is None else seed
    pred = result.oof[seed]
    names = []
    for m, metric in enumerate(result.metrics):
        rows = (result.failed == 0) & np.isfinite(result.y[:, m]) & np.isfinite(pred.mean[:, m])
        t, p = result.y[rows, m], pred.mean[rows, m]
        fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
        ax.scatter(t, p, s=14, alpha=0.7, edgecolors="none")
        if t.size:
            lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle="--")
        if _log_axes(np.concatenate([t, p])):
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel(f"true {metric}")
        ax.set_ylabel(f"predicted {metric} (out of fold)")
        ax.set_title(f"{metric}: Kendall tau-b {kendall_tau_b(t, p):.3f} (n={t.size}, seed {seed})",
                     fontsize=9)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = f"pred_vs_true_{metric}.png"
        fig.savefig(out_dir / name)
        plt.close(fig)
        names.append(name)
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
    fig.tight_layout()
    name = "learning_curves.png"
    fig.savefig(out_dir / name)
    plt.close(fig)
    return [name]


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
