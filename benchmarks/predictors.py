"""All predictors side by side; regenerates docs/results.md from what this run measured.

(a) the real evaluated genomes: grouped k-fold CV (by canonical_hash) × seeds, per-fold scores;
(a') the real evaluated genomes under the generation-forward protocol (how the evolution judges a
    surrogate: train on every generation before g, score g; plus its own split, the last five
    generations held out together);
(b) nas-bench-graph (default arxiv; ``--nb-dataset all`` = the 9 datasets the package ships): N
    training architectures drawn per seed from the pool left after a fixed 5,000-architecture
    test set (drawn once with ``--test-seed``; half the space for proteins' 2,021), Kendall
    tau-b etc. on that test set;
(b') with ``--flowerformer``, FlowerFormer's protocol on the same datasets (1 % of half the
    space trains, 40 validate, the other half tests), beside its published tau.

    python benchmarks/predictors.py [--models auto,gbt,rf_counts,ridge_onehot] [--seeds 10]
        [--cv-seeds 5] [--folds 5] [--sizes 50,100,200,400] [--nb-dataset arxiv|all|a,b]
        [--flowerformer] [--ff-seeds 10] [--skip-real] [--skip-generation] [--generations 9]
        [--skip-nasbench] [--quick] [--embedding FILE] [--out docs/results.md] [--append]

The closing lines state issue 13's bars for ``auto`` (run it with ``rf_counts``: the trust bars
are the floor's overlaps on the same folds + 0.10).

``--embedding FILE`` (an embedder of ``nas-surrogate pretrain``) adds ``NAME+embedding`` for every
tree model in ``--models`` (real data only: the embedder reads the genomes' graphs).

Floors apply where their features exist: ``rf_counts`` needs genome strings (real data only),
``ridge_onehot`` needs ``op_onehot`` (nas-bench-graph only). ``--quick`` = 2 CV seeds, 3 folds,
3 nas-bench-graph seeds, sizes 50,100. The results file says exactly what ran.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("NAS_SURROGATE_DATA_DIR", REPO.parent / "shared" / "data"))
TRAIN_CSV = DATA / "surrogate_evolution_train.csv"

from ml.datasets.labels import DEFAULT_METRICS, DIRECTIONS  # noqa: E402
from ml.datasets.records import targets  # noqa: E402
from ml.evaluation.cv import cross_validate, mean_std, summarize  # noqa: E402
from ml.evaluation.predictors import available_predictors, make_factory  # noqa: E402
from ml.metrics import regression_metrics  # noqa: E402

REAL_ONLY = {"rf_counts"}
#: Set by ``--embedding``: the embedder file the ``NAME+embedding`` variants fit with.
EMBEDDING_SUFFIX = "+embedding"
#: ``blend:stack+hierarchical_gnn``: the blend composite over the named members.
BLEND_PREFIX = "blend:"
#: The cross-validation results of this run by model label (their out-of-fold predictions
#: feed the GNN + trees comparison).
CV_RESULTS: dict[str, Any] = {}
embedding_file: str | None = None


def model_and_config(label: str) -> tuple[str, dict[str, Any] | None]:
    """``stack+embedding`` -> ("stack", {"embedding": FILE}); ``blend:a+b`` -> ("blend",
    {"members": [a, b]}) (weights chosen on the blend's own inner validation genomes); any
    other label is a model name."""
    if label.endswith(EMBEDDING_SUFFIX):
        return label[:-len(EMBEDDING_SUFFIX)], {"embedding": embedding_file}
    if label.startswith(BLEND_PREFIX):
        return "blend", {"members": label[len(BLEND_PREFIX):].split("+"), "member_configs": {}}
    return label, None


def with_embedding_variants(models: list[str]) -> list[str]:
    from ml.models.registry import model_class

    out = list(models)
    for name in models:
        cls = model_class(name)
        if cls is not None and "embedding" in cls.hyperparameters:
            out.append(name + EMBEDDING_SUFFIX)
    return out
NASBENCH_ONLY = {"ridge_onehot"}
NB_TEST_SIZE = 5000


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def fmt(stats: dict[str, float] | None, spec: str | int = 3) -> str:
    """``mean ± std``; an int is decimals, a string a format spec (``".3g"`` for errors)."""
    if not stats or stats.get("mean") is None or not math.isfinite(stats["mean"]):
        return "n/a"
    spec = f".{spec}f" if isinstance(spec, int) else spec
    return f"{stats['mean']:{spec}} ± {stats['std']:{spec}}"


# ---------------------------------------------------------------- (a) real genomes

def run_real(models: list[str], folds: int, seeds: int) -> dict[str, Any]:
    from ml.datasets.records import load_csv_records

    start = time.perf_counter()
    records, build = load_csv_records(TRAIN_CSV, DEFAULT_METRICS)
    log(f"real: {len(records)} records encoded in {time.perf_counter() - start:.0f}s")
    directions = tuple(DIRECTIONS[m] for m in DEFAULT_METRICS)
    out: dict[str, Any] = {"records": len(records), "failed": build["failed_evaluation"],
                           "folds": folds, "seeds": seeds, "models": {}}
    for name in models:
        if name in NASBENCH_ONLY:
            continue
        start = time.perf_counter()
        model, config = model_and_config(name)
        factory = make_factory(model, DEFAULT_METRICS, config)
        parts: list[list[Any]] = []
        if name.startswith(BLEND_PREFIX):
            factory = recording_parts(factory, parts)
        result = cross_validate(records, factory, DEFAULT_METRICS,
                                directions, folds, range(seeds))
        CV_RESULTS[name] = result
        if parts:
            for part, part_result in member_results(result, parts).items():
                CV_RESULTS.setdefault(part, part_result)
                if part not in out["models"]:
                    out["models"][part] = {**summarize(part_result), "seconds": math.nan,
                                           "as_blend_member": name}
        summary = summarize(result)
        summary["seconds"] = time.perf_counter() - start
        out["models"][name] = summary
        taus = ", ".join(f"{m} {fmt(summary['per_fold'][m]['kendall_tau_b'])}"
                         for m in DEFAULT_METRICS)
        log(f"real {name}: tau-b {taus}; AUC {fmt(summary['validity_auc']['per_fold'])}; "
            f"{summary['seconds']:.0f}s")
    return out


def recording_parts(factory: Any, parts: list[list[Any]]) -> Any:
    """A blend factory whose predictors also keep each member's own test predictions (per fold,
    in cross-validation order). A blend's members are exactly the single predictors fitted on
    the same records with the same seed, so one blend run also scores its members on the same
    folds, without fitting them twice."""
    def make(seed: int) -> Any:
        blend = factory(seed)
        predict = blend.predict

        def predict_and_record(records: Any) -> Any:
            out = predict(records)
            parts.append([(n, p.predict(records))
                          for n, p in zip(blend.config["members"], blend.parts)])
            return out
        blend.predict = predict_and_record
        return blend
    return make


def member_results(blend: Any, parts: list[list[Any]]) -> dict[str, Any]:
    """Per member, a CVResult built from the recorded predictions on the blend's folds."""
    from ml.evaluation.cv import CVResult, FoldResult, score_predictions
    from ml.models.base import Prediction

    out: dict[str, Any] = {}
    names = [n for n, _ in parts[0]]
    for j, name in enumerate(names):
        result = CVResult(blend.metrics, blend.directions, y=blend.y, failed=blend.failed,
                          keys=blend.keys, fold_ids=blend.fold_ids)
        i = 0
        for seed, fold_ids in blend.fold_ids.items():
            mean = np.full_like(blend.y, np.nan)
            fail = np.full(len(blend.y), np.nan)
            for fold in range(int(fold_ids.max()) + 1):
                test = fold_ids == fold
                pred = parts[i][j][1]
                pred = Prediction(np.asarray(pred.mean, np.float64), None,
                                  np.asarray(pred.p_fail, np.float64).reshape(-1))
                mean[test], fail[test] = pred.mean, pred.p_fail
                keys = [k for k, t in zip(blend.keys, test) if t]
                per_metric, auc, spea2, nsga2 = score_predictions(
                    blend.y[test], blend.failed[test], pred, keys, blend.metrics,
                    blend.directions, 10)
                f = blend.folds[i]
                result.folds.append(FoldResult(seed, fold, f.n_train, f.n_val, f.n_test,
                                               per_metric, auc, spea2, nsga2, math.nan,
                                               math.nan))
                i += 1
            result.oof[seed] = Prediction(mean, None, fail)
        out[name] = result
    return out


# ---------------------------------------------------------------- (b) nas-bench-graph

def run_generation(models: list[str], generations: int) -> dict[str, Any]:
    """(a'): the generation-forward protocol for every model with real-data features."""
    from ml.datasets.records import load_csv_records
    from ml.evaluation.protocols import generation_forward

    records, _ = load_csv_records(TRAIN_CSV, DEFAULT_METRICS)
    out: dict[str, Any] = {"generations": generations, "models": {}}
    for name in (m for m in models if m not in NASBENCH_ONLY):
        log(f"generation-forward {name}")
        started = time.perf_counter()
        model, config = model_and_config(name)
        result = generation_forward(records, model, DEFAULT_METRICS, config=config,
                                    generations=generations)
        strip = ("prediction", "y", "failed")
        out["models"][name] = {
            "summary": result["summary"], "seconds": time.perf_counter() - started,
            "rows": [{k: v for k, v in r.items() if k not in strip}
                     for r in result["generations"]],
            "evolution_split": {k: v for k, v in result["evolution_split"].items()
                                if k not in strip}}
    return out


def generation_table(gen: dict[str, Any]) -> list[str]:
    objectives = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
    lines = ["| model | split | SPEA2 top-30% overlap | NSGA-II top-30% overlap | "
             + " | ".join(f"τ-b {m}" for m in objectives)
             + " | validity AUC | failure-filter precision | time (s) |",
             "|---|---|---|---|" + "---|" * len(objectives) + "---|---|---|"]
    for name, res in gen["models"].items():
        s = res["summary"]
        cells = [fmt(s["trust_spea2_top30"]), fmt(s["trust_nsga2_top30"])]
        cells += [fmt(s[f"kendall_tau_b_{m}"]) for m in objectives]
        cells += [fmt(s["validity_auc"]), fmt(s["failure_filter_precision"])]
        lines.append(f"| {name} | each of the last {gen['generations']} generations | "
                     + " | ".join(cells) + f" | {res['seconds']:.0f} |")
        e = res["evolution_split"]

        def one(value: float) -> str:
            return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"
        cells = [one(e["trust_spea2_top30"]), one(e["trust_nsga2_top30"])]
        cells += [one(e["per_metric"][m]["kendall_tau_b"]) for m in objectives]
        cells += [one(e["validity_auc"]), one(e["failure_filter_precision"])]
        lines.append(f"| {name} | evolution's split (train gens "
                     f"{int(e['train_generations'][0])}-{int(e['train_generations'][-1])}, "
                     f"test {int(e['test_generations'][0])}-{int(e['test_generations'][-1])}) | "
                     + " | ".join(cells) + " | |")
    lines += ["", "Per scored generation (SPEA2 overlap / τ-b ciou_loss):", "",
              "| model | " + " | ".join(f"g{int(r['generation'])}"
                                         for r in next(iter(gen["models"].values()))["rows"])
              + " |", "|---|" + "---|" * len(next(iter(gen["models"].values()))["rows"])]
    for name, res in gen["models"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{r['trust_spea2_top30']:.2f} / {r['per_metric']['ciou_loss']['kendall_tau_b']:.2f}"
            if math.isfinite(r["trust_spea2_top30"]) else "n/a" for r in res["rows"]) + " |")
    return lines


def _nb_split(n: int, test_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed test set (``NB_TEST_SIZE``, or half the space when it is smaller: proteins has
    2,021 architectures) and the pool the training draws come from."""
    order = np.random.default_rng(test_seed).permutation(n)
    size = min(NB_TEST_SIZE, n // 2)
    return order[:size], order[size:]


def _nb_fit_predict(name: str, train: list, val: list | None, test: list,
                    seed: int) -> tuple[np.ndarray, float]:
    """Fit ``name`` (a fresh one, ``seed``) and predict ``test``; validation architectures go
    only to the neural models, which early-stop on them (row models would train on them)."""
    from ml.evaluation import nasbench_graph as nb
    from ml.models.neural.predictor import NeuralPredictor

    t0 = time.perf_counter()
    model = make_factory(name, nb.METRICS)(seed)
    model.fit(train, val if isinstance(model, NeuralPredictor) else None, None, None)
    pred = np.asarray(model.predict(test).mean)[:, 0]
    return pred, time.perf_counter() - t0


NB_KEYS = ("kendall_tau_b", "spearman", "weighted_tau", "precision_at_10pct", "n_at_k", "mae")


def run_nasbench(models: list[str], dataset: str, sizes: list[int], seeds: int,
                 test_seed: int) -> dict[str, Any]:
    from ml.evaluation import nasbench_graph as nb

    start = time.perf_counter()
    records = nb.load_benchmark(dataset)
    log(f"nas-bench-graph/{dataset}: {len(records)} archs in {time.perf_counter() - start:.0f}s")
    test_idx, pool_idx = _nb_split(len(records), test_seed)
    test = [records[i] for i in test_idx]
    y_test = targets(test, 1)[:, 0]
    valid_test = np.array([r.valid_perf for r in test])
    from ml.metrics import kendall_tau_b

    out: dict[str, Any] = {"dataset": dataset, "archs": len(records), "test_size": len(test),
                           "test_seed": test_seed, "sizes": sizes, "seeds": seeds,
                           "valid_vs_test_tau": kendall_tau_b(y_test, valid_test), "models": {}}
    for name in models:
        if name in REAL_ONLY or name.endswith(EMBEDDING_SUFFIX):
            continue
        per_size: dict[str, Any] = {}
        for n in (n for n in sizes if n <= len(pool_idx)):
            runs: list[dict[str, float]] = []
            seconds = []
            for seed in range(seeds):
                rng = np.random.default_rng(10_000 + seed)
                train = [records[i] for i in rng.choice(pool_idx, size=n, replace=False)]
                pred, took = _nb_fit_predict(name, train, None, test, seed)
                seconds.append(took)
                runs.append(regression_metrics(y_test, pred, +1))
            per_size[str(n)] = {k: mean_std([r[k] for r in runs]) for k in NB_KEYS}
            per_size[str(n)]["seconds_per_run"] = float(np.mean(seconds))
            log(f"nb/{dataset} {name} N={n}: tau-b {fmt(per_size[str(n)]['kendall_tau_b'])} "
                f"(median {per_size[str(n)]['kendall_tau_b']['median']:.3f}, "
                f"{np.mean(seconds):.1f}s/run)")
        out["models"][name] = per_size
    return out


#: FlowerFormer's protocol (CVPR 2024; its ``experiments.py`` / ``utils.get_data``): half the
#: space is the training pool, the first ``ratio`` of it trains, the next 40 architectures
#: validate, the rest of the space is the test set. Its published tau at 1 % (as issue 13
#: quotes it; the released config's data file, ``nbgraph.pt``, does not name the dataset).
FLOWERFORMER_RATIO, FLOWERFORMER_VAL, FLOWERFORMER_TAU = 0.01, 40, 0.495


def run_flowerformer(models: list[str], dataset: str, seeds: int) -> dict[str, Any]:
    """FlowerFormer's split on one dataset, one random permutation per seed."""
    from ml.evaluation import nasbench_graph as nb

    records = nb.load_benchmark(dataset)
    half = len(records) // 2
    n_train = int(half * FLOWERFORMER_RATIO)
    out: dict[str, Any] = {"dataset": dataset, "archs": len(records), "pool": half,
                           "train": n_train, "val": FLOWERFORMER_VAL,
                           "test": len(records) - half - FLOWERFORMER_VAL, "seeds": seeds,
                           "models": {}}
    for name in models:
        if name in REAL_ONLY or name.endswith(EMBEDDING_SUFFIX):
            continue
        runs, seconds = [], []
        for seed in range(seeds):
            perm = np.random.default_rng(20_000 + seed).permutation(len(records))
            train = [records[i] for i in perm[:n_train]]
            rest = perm[half:]
            val = [records[i] for i in rest[:FLOWERFORMER_VAL]]
            test = [records[i] for i in rest[FLOWERFORMER_VAL:]]
            pred, took = _nb_fit_predict(name, train, val, test, seed)
            seconds.append(took)
            runs.append(regression_metrics(targets(test, 1)[:, 0], pred, +1))
        out["models"][name] = {k: mean_std([r[k] for r in runs]) for k in NB_KEYS}
        out["models"][name]["seconds_per_run"] = float(np.mean(seconds))
        log(f"flowerformer/{dataset} {name}: tau-b {fmt(out['models'][name]['kendall_tau_b'])}")
    return out


# ---------------------------------------------------------------- results.md

def real_table(real: dict[str, Any]) -> list[str]:
    metrics = list(DEFAULT_METRICS)
    lines = ["| model | " + " | ".join(f"τ-b {m}" for m in metrics)
             + " | validity AUC | SPEA2 top-30% overlap | NSGA-II top-30% overlap | "
               "time (s) |",
             "|---" * (len(metrics) + 5) + "|"]
    for name, s in real["models"].items():
        cells = [fmt(s["per_fold"][m]["kendall_tau_b"]) for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {fmt(s['validity_auc']['per_fold'])}"
                     + f" | {fmt(s['trust_spea2_top30']['per_fold'])}"
                     + f" | {fmt(s['trust_nsga2_top30']['per_fold'])}"
                     + f" | {s['seconds']:.0f} |")
    lines += ["", "Other per-fold scores (mean ± std over seeds × folds):", "",
              "| model | metric | Spearman | MAE | RMSE | precision@10% | N@10 | weighted τ | "
              "coverage of mean ± 1.96 std | coverage of the 95 % interval | its median width |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in real["models"].items():
        for m in metrics:
            pm = s["per_fold"][m]
            lines.append(f"| {name} | {m} | {fmt(pm['spearman'])} | {fmt(pm['mae'], '.3g')} | "
                         f"{fmt(pm['rmse'], '.3g')} | {fmt(pm['precision_at_10pct'], 2)} | "
                         f"{fmt(pm['n_at_k'], 1)} | {fmt(pm['weighted_tau'])} | "
                         f"{fmt(pm.get('coverage_95'), 2)} | "
                         f"{fmt(pm.get('interval_coverage_95'), 2)} | "
                         f"{fmt(pm.get('interval_median_width'), '.3g')} |")
    return lines


def nasbench_table(nb: dict[str, Any]) -> list[str]:
    sizes = [str(n) for n in nb["sizes"]]
    lines = ["| model | " + " | ".join(f"N={n}" for n in sizes) + " |",
             "|---" * (len(sizes) + 1) + "|"]
    for name, per_size in nb["models"].items():
        cells = [f"{fmt(per_size[n]['kendall_tau_b'])} (median "
                 f"{per_size[n]['kendall_tau_b']['median']:.3f})" for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Other scores on the test set (mean ± std over seeds):", "",
              "| model | N | Spearman | weighted τ | precision@10% | N@10 (of 5,000) | "
              "MAE (acc) | s/run |", "|---|---|---|---|---|---|---|---|"]
    for name, per_size in nb["models"].items():
        for n in sizes:
            s = per_size[n]
            lines.append(f"| {name} | {n} | {fmt(s['spearman'])} | {fmt(s['weighted_tau'])} | "
                         f"{fmt(s['precision_at_10pct'], 2)} | {fmt(s['n_at_k'], 1)} | "
                         f"{fmt(s['mae'], 4)} | {s['seconds_per_run']:.1f} |")
    return lines


def nasbench_summary(nbs: list[dict[str, Any]]) -> list[str]:
    """One line per dataset and model: mean τ-b at each N (the per-dataset sections above
    have the spreads and the other scores)."""
    sizes = sorted({int(n) for one in nbs for per in one["models"].values() for n in per})
    lines = ["#### nas-bench-graph, every dataset: mean τ-b on the fixed test set", "",
             "| dataset | archs | valid-vs-test τ-b | model | "
             + " | ".join(f"N={n}" for n in sizes) + " |",
             "|---|---|---|---|" + "---|" * len(sizes)]
    for one in nbs:
        for name, per_size in one["models"].items():
            cells = [f"{per_size[str(n)]['kendall_tau_b']['mean']:.3f}"
                     if str(n) in per_size else "n/a" for n in sizes]
            lines.append(f"| {one['dataset']} | {one['archs']} | "
                         f"{one['valid_vs_test_tau']:.3f} | {name} | " + " | ".join(cells) + " |")
    return lines


def flowerformer_table(ff: list[dict[str, Any]]) -> list[str]:
    lines = ["### nas-bench-graph, FlowerFormer's protocol (1 % of half the space)", "",
             "Per seed, a random permutation of the space: its first half is the training pool, "
             f"the first {FLOWERFORMER_RATIO:.0%} of the pool trains, the next "
             f"{FLOWERFORMER_VAL} architectures of the other half validate (only the neural "
             "models use them, to stop early; row models never select on a validation set), "
             "the rest of that half is the test set (FlowerFormer's `utils.get_data`). "
             f"Published anchor: FlowerFormer τ ≈ {FLOWERFORMER_TAU} at 1 % (issue 13's figure; "
             "its released config does not name the dataset).", "",
             "| dataset | train / val / test | model | τ-b | Spearman | precision@10% | "
             "s/run |", "|---|---|---|---|---|---|---|"]
    for one in ff:
        for name, s in one["models"].items():
            lines.append(f"| {one['dataset']} | {one['train']} / {one['val']} / {one['test']} "
                         f"| {name} | {fmt(s['kendall_tau_b'])} | {fmt(s['spearman'])} | "
                         f"{fmt(s['precision_at_10pct'], 2)} | {s['seconds_per_run']:.1f} |")
    return lines


#: Issue 13's bars for the default (``auto``): trust overlaps at least the floor's (``rf_counts``
#: measured on the same folds) + 0.10, tau-b per objective, failure AUC, nas-bench-graph/arxiv.
TRUST_MARGIN = 0.10
TAU_BARS = {"uw_val_epoch_loss": 0.60, "ciou_loss": 0.58}
BAR_AUC = 0.97
NB_BAR = ("arxiv", "100", 0.65)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def real_bars(real: dict[str, Any]) -> list[str]:
    """Issue 13's grouped-CV bars for ``auto`` (the trust bars need ``rf_counts`` in the run)."""
    auto, floor = real["models"].get("auto"), real["models"].get("rf_counts")
    if auto is None:
        return []
    lines = []
    for key, label in (("trust_spea2_top30", "SPEA2"), ("trust_nsga2_top30", "NSGA-II")):
        value = auto[key]["per_fold"]["mean"]
        if floor is None:
            lines.append(f"- {label} top-30 % overlap: `auto` {value:.3f} (no `rf_counts` in "
                         "this run to compare with)")
            continue
        bar = floor[key]["per_fold"]["mean"] + TRUST_MARGIN
        lines.append(f"- {label} top-30 % overlap: `auto` {value:.3f}; bar {bar:.3f} "
                     f"(`rf_counts` on these folds + {TRUST_MARGIN:.2f}): {_verdict(value >= bar)}")
    for metric, bar in TAU_BARS.items():
        tau = auto["per_fold"][metric]["kendall_tau_b"]["mean"]
        lines.append(f"- τ-b {metric}: `auto` {tau:.3f}; bar {bar:.2f}: {_verdict(tau >= bar)}")
    auc = auto["validity_auc"]["per_fold"]["mean"]
    lines.append(f"- validity AUC: `auto` {auc:.3f}; bar {BAR_AUC:.2f}: {_verdict(auc >= BAR_AUC)}")
    return ["Bars (issue 13, grouped CV):", ""] + lines + [""]


def partial_correlation(x: np.ndarray, y: np.ndarray, given: np.ndarray) -> float:
    """Spearman partial correlation of ``x`` and ``y`` given ``given``: how alike two models'
    errors are once the truth is accounted for (1: the same errors; 0: unrelated errors)."""
    from scipy.stats import rankdata

    r = np.corrcoef(np.stack([rankdata(x), rankdata(y), rankdata(given)]))
    rxy, rxz, ryz = r[0, 1], r[0, 2], r[1, 2]
    denominator = math.sqrt(max((1 - rxz ** 2) * (1 - ryz ** 2), 1e-12))
    return float((rxy - rxz * ryz) / denominator)


def combination_table(gnn: str = "hierarchical_gnn") -> list[str]:
    """Issue 33's GNN + trees question from this run's out-of-fold predictions (same folds for
    every model: fold ids depend on the seed only): per objective, the partial correlation of
    the GNN's and the default's predictions given the truth, mean over CV seeds, beside each
    one's pooled out-of-fold tau-b (and the failure probabilities' correlation given the label).
    """
    default = "auto" if "auto" in CV_RESULTS else "stack"
    if default not in CV_RESULTS or gnn not in CV_RESULTS:
        return []
    from ml.metrics import kendall_tau_b

    a, b = CV_RESULTS[default], CV_RESULTS[gnn]
    lines = [f"#### GNN + trees: out-of-fold errors of `{gnn}` against `{default}`", "",
             "Spearman partial correlation of the two models' out-of-fold predictions given the "
             "truth (non-failed genomes; equal to that of their errors given the truth), mean ± "
             "std over CV seeds; pooled out-of-fold τ-b of each beside it. Below 1, the GNN's "
             "errors are not the trees' errors: information a combination can use.", "",
             f"| target | partial correlation | pooled τ-b `{default}` | pooled τ-b `{gnn}` |",
             "|---|---|---|---|"]
    for j, metric in enumerate(a.metrics):
        ok = (a.failed != 1.0) & np.isfinite(a.y[:, j])
        partial, tau_a, tau_b = [], [], []
        for seed in a.oof:
            x, y = a.oof[seed].mean[ok, j], b.oof[seed].mean[ok, j]
            partial.append(partial_correlation(x, y, a.y[ok, j]))
            tau_a.append(kendall_tau_b(a.y[ok, j], x))
            tau_b.append(kendall_tau_b(a.y[ok, j], y))
        lines.append(f"| {metric} | {fmt(mean_std(partial))} | {fmt(mean_std(tau_a))} | "
                     f"{fmt(mean_std(tau_b))} |")
    known = np.isfinite(a.failed)
    fail = [partial_correlation(a.oof[s].p_fail[known], b.oof[s].p_fail[known], a.failed[known])
            for s in a.oof]
    lines.append(f"| P(fail) | {fmt(mean_std(fail))} | | |")
    return lines


def auto_model() -> str:
    """What the models registry's ``auto`` meant for this run (it changes as models improve)."""
    try:
        from ml.models.registry import resolve_name
    except ImportError:
        return "n/a (no models registry)"
    return resolve_name("auto")


def write_results(path: Path, args: argparse.Namespace, real: dict[str, Any] | None,
                  nbs: list[dict[str, Any]] | None, seconds: float, append: bool = False,
                  gen: dict[str, Any] | None = None,
                  ff: list[dict[str, Any]] | None = None) -> None:
    header = ["# Predictor results", "",
              "Generated by `benchmarks/predictors.py`; every number below was measured by the "
              "run(s) described here (`--append` adds a run below the previous ones). Re-run the "
              "script to regenerate this file.", ""]
    lines = [f"## Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "",
             f"- run finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
             f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), {seconds / 60:.1f} min",
             f"- command: `python benchmarks/predictors.py {' '.join(sys.argv[1:])}`",
             f"- `auto` resolved to `{auto_model()}` at run time", ""]
    if embedding_file:
        from ml.models.pretrained import GraphEmbedder

        info = GraphEmbedder.load(embedding_file).info
        lines[-1:-1] = [f"- `NAME+embedding`: the tree model with the {info['config']['dims']} "
                        f"columns of an embedder pre-trained on {info['genomes']} sampled "
                        f"genomes ({info['device']}; masked type accuracy "
                        f"{info['final']['type_accuracy']:.3f})"]
    if real is not None:
        lines += ["### Real evaluated genomes", "",
                  f"`{TRAIN_CSV.name}`: {real['records']} genomes, {real['failed']} failed "
                  f"evaluations (validity label only). Grouped (canonical_hash) {real['folds']}-"
                  f"fold CV × {real['seeds']} seeds (group-to-fold assignment reshuffled per "
                  "seed); each training fold gives 15 % of its groups to the model as validation "
                  "(models that neither early-stop nor select on it train on both: the floors, "
                  "the trees and the stack, which choose their target kinds, and the stack its "
                  "blend, on inner folds of their own: nothing is tuned on these folds). "
                  "Regression scores on the non-failed test rows; "
                  "mean ± std over the seeds × folds test folds. Trust = the evolution's "
                  "top-30 % selection overlap on the (uw_val_epoch_loss, ciou_loss, "
                  "average_precision) vectors of each test fold.", ""]
        lines += real_table(real) + [""] + real_bars(real)
        combination = combination_table()
        lines += combination + ([""] if combination else [])
    if gen is not None:
        lines += ["### Real evaluated genomes, generation-forward", "",
                  f"`{TRAIN_CSV.name}` as the evolution judges a surrogate (surrogate-usage "
                  f"§3-4): for each of the last {gen['generations']} generations g, fit on every "
                  "genome of a generation before g (repeated measurements averaged) and score "
                  "generation g alone (13-33 genomes); mean ± std over those generations. Then "
                  "the evolution's own split: train on all but the last five generations, score "
                  "the last five together. Trust as above (top-30 % SPEA2 / NSGA-II selection "
                  "overlap); failure-filter precision = of the genomes with P(fail) ≥ 0.5, the "
                  "fraction that failed. Nothing here was tuned on these splits.", ""]
        lines += generation_table(gen) + [""]
    for one in nbs or []:
        lines += [f"### nas-bench-graph / {one['dataset']} (test accuracy)", "",
                  f"{one['archs']} architectures; fixed test set of {one['test_size']} drawn with "
                  f"seed {one['test_seed']}; for each N, {one['seeds']} seeds each draw N training "
                  "architectures from the remaining pool. Kendall τ-b on the test set, "
                  "mean ± std over seeds (median in brackets). Validation-vs-test τ-b on this "
                  f"test set (label-noise ceiling): {one['valid_vs_test_tau']:.3f}.", ""]
        lines += nasbench_table(one) + [""]
    if nbs and len(nbs) > 1:
        lines += nasbench_summary(nbs) + [""]
    bar_dataset, bar_n, bar_tau = NB_BAR
    for one in nbs or []:
        auto = one["models"].get("auto", {})
        if one["dataset"] == bar_dataset and bar_n in auto:
            tau = auto[bar_n]["kendall_tau_b"]["mean"]
            lines += [f"Bar (issue 13: `auto` τ-b ≥ {bar_tau:.2f} on {bar_dataset} at "
                      f"N = {bar_n}): measured {tau:.3f}, {_verdict(tau >= bar_tau)}.", ""]
    if ff:
        lines += flowerformer_table(ff) + [""]
    if append and path.exists():
        path.write_text(path.read_text().rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")
    else:
        path.write_text("\n".join(header + lines) + "\n")


def nb_datasets(spec: str) -> list[str]:
    """``--nb-dataset``: one name, a comma-separated list, or ``all``."""
    from ml.evaluation.nasbench_graph import DATASETS

    names = list(DATASETS) if spec == "all" else [d for d in spec.split(",") if d]
    unknown = [d for d in names if d not in DATASETS]
    if unknown:
        raise SystemExit(f"unknown nas-bench-graph dataset(s) {unknown}; one of {DATASETS}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=None,
                        help=f"comma-separated (default all: {','.join(available_predictors())})")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cv-seeds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=10, help="nas-bench-graph seeds per size")
    parser.add_argument("--sizes", default="50,100,200,400")
    parser.add_argument("--nb-dataset", default="arxiv",
                        help="a dataset, a comma-separated list, or 'all' (every dataset the "
                             "package ships)")
    parser.add_argument("--flowerformer", action="store_true",
                        help="also run FlowerFormer's protocol (1 %% of half the space) on the "
                             "--nb-dataset datasets")
    parser.add_argument("--ff-seeds", type=int, default=10,
                        help="random permutations for --flowerformer")
    parser.add_argument("--test-seed", type=int, default=0)
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--skip-nasbench", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--generations", type=int, default=9,
                        help="generation-forward: score each of the last N generations")
    parser.add_argument("--quick", action="store_true",
                        help="2 CV seeds, 3 folds, 3 nas-bench-graph seeds, sizes 50,100")
    parser.add_argument("--embedding", default=None,
                        help="an embedder file (nas-surrogate pretrain): also run every tree "
                             "model with it, as NAME+embedding")
    parser.add_argument("--out", default=str(REPO / "docs" / "results.md"))
    parser.add_argument("--json", default=None, help="also dump the raw results here")
    parser.add_argument("--append", action="store_true",
                        help="add this run below the runs already in --out")
    args = parser.parse_args(argv)
    if args.quick:
        args.cv_seeds, args.folds, args.seeds, args.sizes = 2, 3, 3, "50,100"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global embedding_file
    models = args.models.split(",") if args.models else list(available_predictors())
    if args.embedding:
        embedding_file = args.embedding
        models = with_embedding_variants(models)
    sizes = [int(s) for s in args.sizes.split(",")]
    start = time.perf_counter()
    real = None if args.skip_real else run_real(models, args.folds, args.cv_seeds)
    gen = None if args.skip_generation else run_generation(models, args.generations)
    datasets = nb_datasets(args.nb_dataset)
    nbs = None if args.skip_nasbench else [
        run_nasbench(models, dataset, sizes, args.seeds, args.test_seed) for dataset in datasets]
    ff = [run_flowerformer(models, dataset, args.ff_seeds)
          for dataset in datasets] if args.flowerformer else None
    seconds = time.perf_counter() - start
    write_results(Path(args.out), args, real, nbs, seconds, args.append, gen, ff)
    if args.json:
        from ml.evaluation.report import json_safe

        Path(args.json).write_text(json.dumps(json_safe({"real": real, "nasbench": nbs,
                                                         "generation": gen,
                                                         "flowerformer": ff}),
                                              indent=2, allow_nan=False))
    log(f"wrote {args.out} ({seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
