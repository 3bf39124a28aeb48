"""How far issue 13's bars on the real genomes are in data: a learning curve and a trust ceiling.

(1) Learning curve. Grouped k-fold CV × seeds on ``surrogate_evolution_train.csv`` (the folds of
    ``benchmarks/predictors.py``), each training fold cut to a grouped random fraction of itself
    (``cross_validate(train_fraction=)``; the smaller fractions' genomes are subsets of the
    larger ones', the test folds never change). Per model and fraction: τ-b on the three
    objectives and the SPEA2 / NSGA-II top-30 % overlap (mean over seeds × folds). A least-squares
    line of each figure on log2(training genomes) through the fractions says how many genomes
    the τ and trust bars would take at that slope.
(2) Trust ceiling. On the same test folds, stand-in predictions whose τ-b against the truth is set
    on all three objectives at once (``ml.evaluation.ceiling``: the truth's normal scores plus
    noise, mapped back onto the truth's values). Their overlap is what a model ranking that well
    would score; the τ where it crosses the trust bar (the floor's overlap + 0.10) is what the
    bar asks.
(3) Where a model's trust goes. With all the genomes, each model's out-of-fold predictions with
    one objective replaced by a stand-in of the τ-b the model reached on it in that fold (and
    with all three replaced): when an independent stand-in of the same τ selects better, the
    model's errors on that objective are aligned with its errors on the others, which costs the
    Pareto selection more than the τ shows.

    python benchmarks/learning_curve.py [--models rf_counts,auto] [--fractions 0.25,0.5,0.75,1]
        [--cv-seeds 5] [--folds 5] [--taus 0.5,0.6,0.7,0.8,0.9] [--draws 20] [--json FILE]

Prints one JSON line per measurement and the tables (means; medians in the JSON).
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
TRAIN_CSV = DATA / "surrogate_evolution_train.csv"

# Issue 13's bars and the log line, as benchmarks/predictors.py (this folder) states them.
from predictors import TAU_BARS, TRUST_MARGIN, log  # noqa: E402

from ml.datasets.labels import DEFAULT_METRICS, DIRECTIONS  # noqa: E402
from ml.datasets.splits import grouped_fold_ids  # noqa: E402
from ml.evaluation.ceiling import trust_at_tau  # noqa: E402
from ml.evaluation.cv import cross_validate, mean_std  # noqa: E402
from ml.evaluation.predictors import make_factory  # noqa: E402
from ml.evaluation.selection import OBJECTIVE_NAMES  # noqa: E402


def swapped_trust(result: Any, draws: int, rng: np.random.Generator) -> dict[str, Any]:
    """SPEA2 / NSGA-II overlap per test fold of the model's out-of-fold predictions, and of the
    same with objective j (or all three) replaced by stand-ins of the model's own τ-b there."""
    from ml.evaluation.ceiling import predictions_with_tau
    from ml.evaluation.cv import trust_overlaps
    from ml.metrics import kendall_tau_b

    cols = [list(result.metrics).index(m) for m in OBJECTIVE_NAMES]
    y = result.y[:, cols]
    usable = (result.failed == 0) & np.all(np.isfinite(y), axis=1)
    figures: dict[str, list[tuple[float, float]]] = {"model": [], "all three": []}
    for seed, pred in result.oof.items():
        p = pred.mean[:, cols]
        for fold in range(int(result.fold_ids[seed].max()) + 1):
            rows = (result.fold_ids[seed] == fold) & usable
            yt, pt = y[rows], p[rows]
            keys = [k for k, keep in zip(result.keys, rows) if keep]
            none_failed = np.zeros(len(yt))
            figures["model"].append(trust_overlaps(yt, pt, none_failed, keys, OBJECTIVE_NAMES))
            taus = [max(0.0, kendall_tau_b(yt[:, j], pt[:, j])) for j in range(len(cols))]
            draws_of: dict[str, list[tuple[float, float]]] = {}
            for _ in range(draws):
                stand_in = np.column_stack([predictions_with_tau(yt[:, [j]], taus[j], rng)[:, 0]
                                            for j in range(len(cols))])
                draws_of.setdefault("all three", []).append(
                    trust_overlaps(yt, stand_in, none_failed, keys, OBJECTIVE_NAMES))
                for j, name in enumerate(OBJECTIVE_NAMES):
                    mixed = pt.copy()
                    mixed[:, j] = stand_in[:, j]
                    draws_of.setdefault(name, []).append(
                        trust_overlaps(yt, mixed, none_failed, keys, OBJECTIVE_NAMES))
            for name, values in draws_of.items():
                figures.setdefault(name, []).append(tuple(np.nanmean(values, axis=0)))
    return {name: {"spea2": mean_std([v[0] for v in values]),
                   "nsga2": mean_std([v[1] for v in values])}
            for name, values in figures.items()}


def curve_point(records: list, model: str, fraction: float, folds: int,
                seeds: int, draws: int = 0) -> dict[str, Any]:
    directions = tuple(DIRECTIONS[m] for m in DEFAULT_METRICS)
    start = time.perf_counter()
    result = cross_validate(records, make_factory(model, DEFAULT_METRICS), DEFAULT_METRICS,
                            directions, folds, range(seeds), train_fraction=fraction)
    point: dict[str, Any] = {
        "part": "curve", "model": model, "fraction": fraction,
        "train_genomes": mean_std([float(f.n_train + f.n_val) for f in result.folds]),
        "tau": {m: mean_std([f.per_metric[m]["kendall_tau_b"] for f in result.folds])
                for m in OBJECTIVE_NAMES},
        "spea2": mean_std([f.trust_spea2 for f in result.folds]),
        "nsga2": mean_std([f.trust_nsga2 for f in result.folds]),
        "seconds": round(time.perf_counter() - start, 1)}
    if draws:
        point["swapped"] = swapped_trust(result, draws, np.random.default_rng(7))
    print(json.dumps(point), flush=True)
    return point


def slope_and_need(points: list[dict[str, Any]], figure: str, bar: float) -> dict[str, float]:
    """A figure's gain per doubling of the training genomes (least squares on log2 genomes),
    and the genomes that slope needs for ``bar``. ``figure``: a metric (its τ-b), "spea2" or
    "nsga2"."""
    def value(p: dict[str, Any]) -> float:
        return p[figure]["mean"] if figure in ("spea2", "nsga2") else p["tau"][figure]["mean"]

    n = np.log2([p["train_genomes"]["mean"] for p in points])
    v = np.asarray([value(p) for p in points])
    slope, intercept = np.polyfit(n, v, 1)
    need = 2 ** ((bar - intercept) / slope) if slope > 0 else math.inf
    return {"per_doubling": float(slope), "genomes_for_bar": float(need),
            "at_full": float(v[-1])}


def ceiling(records: list, taus: list[float], folds: int, seeds: int,
            draws: int) -> list[dict[str, Any]]:
    """Mean overlap of stand-in predictions at each τ over the same test folds."""
    from ml.datasets.records import failed_flags, targets
    from ml.datasets.splits import groups

    keys = groups(records)
    y = targets(records, len(DEFAULT_METRICS))
    failed = failed_flags(records)
    cols = [list(DEFAULT_METRICS).index(m) for m in OBJECTIVE_NAMES]
    rng = np.random.default_rng(2026)
    out = []
    for tau in taus:
        per_fold = []
        for seed in range(seeds):
            ids = grouped_fold_ids(keys, folds, seed)
            for fold in range(folds):
                test = ids == fold
                per_fold.append(trust_at_tau(y[test][:, cols], failed[test],
                                             [k for k, t in zip(keys, test) if t],
                                             OBJECTIVE_NAMES, tau, draws, rng))
        row = {"part": "ceiling", "tau": tau,
               "tau_reached": mean_std([f["tau"] for f in per_fold]),
               "spea2": mean_std([f["spea2"] for f in per_fold]),
               "nsga2": mean_std([f["nsga2"] for f in per_fold])}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def tau_for(rows: list[dict[str, Any]], selector: str, bar: float) -> float:
    """The τ reached where the ceiling's overlap first reaches ``bar`` (linear in between)."""
    pts = [(r["tau_reached"]["mean"], r[selector]["mean"]) for r in rows]
    for (t0, s0), (t1, s1) in itertools.pairwise(pts):
        if s0 < bar <= s1:
            return t0 + (bar - s0) * (t1 - t0) / (s1 - s0)
    return pts[0][0] if pts and pts[0][1] >= bar else math.inf


def tables(curve: dict[str, list[dict[str, Any]]], ceil: list[dict[str, Any]]) -> list[str]:
    lines = ["| model | fraction | training genomes | τ-b uw_val_epoch_loss | τ-b ciou_loss | "
             "τ-b average_precision | SPEA2 overlap | NSGA-II overlap | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, points in curve.items():
        for p in points:
            taus = " | ".join(f"{p['tau'][m]['mean']:.3f}" for m in OBJECTIVE_NAMES)
            lines.append(f"| {model} | {p['fraction']:g} | {p['train_genomes']['mean']:.0f} | "
                         f"{taus} | {p['spea2']['mean']:.3f} | {p['nsga2']['mean']:.3f} | "
                         f"{p['seconds']:.0f} |")
    bars: dict[str, float] = dict(TAU_BARS)
    floor = curve.get("rf_counts")
    if floor:  # the trust bars: the floor's overlap with all genomes + 0.10
        bars.update({s: floor[-1][s]["mean"] + TRUST_MARGIN for s in ("spea2", "nsga2")})
    extrapolated = [(model, points) for model, points in curve.items()
                    if len(points) >= 2 and model != "rf_counts"]
    if extrapolated:
        lines += ["", "| model | figure | at all genomes | gain per doubling | genomes the bar "
                  "needs at that slope |", "|---|---|---|---|---|"]
    for model, points in extrapolated:
        for figure, bar in bars.items():
            s = slope_and_need(points, figure, bar)
            name = {"spea2": "SPEA2 overlap", "nsga2": "NSGA-II overlap"}.get(
                figure, f"τ-b {figure}")
            lines.append(f"| {model} | {name} (bar {bar:.3f}) | {s['at_full']:.3f} | "
                         f"{s['per_doubling']:+.3f} | {s['genomes_for_bar']:,.0f} |")
    swapped = [(model, points[-1]["swapped"]) for model, points in curve.items()
               if "swapped" in points[-1]]
    if swapped:
        names = ["model", *OBJECTIVE_NAMES, "all three"]
        lines += ["", "With all the genomes, SPEA2 / NSGA-II overlap of the model's predictions, "
                  "and with stand-ins of the model's own τ-b in place of:", "",
                  "| model | " + " | ".join(names[1:]).join(["(none) | ", ""]) + " |",
                  "|---|" + "---|" * len(names)]
        for model, figures in swapped:
            lines.append(f"| {model} | " + " | ".join(
                f"{figures[n]['spea2']['mean']:.3f} / {figures[n]['nsga2']['mean']:.3f}"
                for n in names) + " |")
    if ceil:
        lines += ["", "| τ-b asked on all three objectives | τ-b reached | SPEA2 overlap | "
                  "NSGA-II overlap |", "|---|---|---|---|"]
        for r in ceil:
            lines.append(f"| {r['tau']:.2f} | {r['tau_reached']['mean']:.3f} | "
                         f"{r['spea2']['mean']:.3f} | {r['nsga2']['mean']:.3f} |")
        if floor:
            full = floor[-1]
            lowest, highest = ceil[0]["tau_reached"]["mean"], ceil[-1]["tau_reached"]["mean"]
            for selector in ("spea2", "nsga2"):
                bar = full[selector]["mean"] + TRUST_MARGIN
                tau = tau_for(ceil, selector, bar)
                where = (f"not reached up to τ-b {highest:.2f}" if math.isinf(tau) else
                         f"reached at τ-b ≤ {lowest:.2f}" if tau == lowest else
                         f"reached at τ-b ≈ {tau:.2f}")
                lines.append(f"\n{selector} bar (rf_counts {full[selector]['mean']:.3f} + "
                             f"{TRUST_MARGIN}) = {bar:.3f}: {where} on every objective")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="rf_counts,auto")
    parser.add_argument("--fractions", default="0.25,0.5,0.75,1")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cv-seeds", type=int, default=5)
    parser.add_argument("--taus", default="0.5,0.6,0.7,0.8,0.9")
    parser.add_argument("--draws", type=int, default=20, help="stand-ins per fold and τ")
    parser.add_argument("--json", default=None, help="also dump the raw results here")
    args = parser.parse_args(argv)
    from ml.datasets.records import load_csv_records

    records, _ = load_csv_records(TRAIN_CSV, DEFAULT_METRICS)
    log(f"{len(records)} records")
    fractions = sorted(float(f) for f in args.fractions.split(","))
    taus = [float(t) for t in args.taus.split(",") if t]
    ceil = ceiling(records, taus, args.folds, args.cv_seeds, args.draws) if taus else []
    curve: dict[str, list[dict[str, Any]]] = {}
    for model in [m for m in args.models.split(",") if m]:
        for fraction in fractions:
            curve.setdefault(model, []).append(
                curve_point(records, model, fraction, args.folds, args.cv_seeds,
                            args.draws if fraction == fractions[-1] else 0))
            log(f"{model} at {fraction:g}: {curve[model][-1]['seconds']:.0f}s")
    print("\n".join(tables(curve, ceil)))
    if args.json:
        Path(args.json).write_text(json.dumps({"curve": curve, "ceiling": ceil}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
