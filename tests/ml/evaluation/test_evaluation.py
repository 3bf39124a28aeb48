"""Evaluation: metric functions on hand cases, DEAP-faithful selections, grouped CV, nas-bench-graph
conversion and the ``evaluate`` command end to end on the real CSV."""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from ml import metrics as M
from ml.datasets.splits import grouped_fold_ids
from ml.evaluation.baselines import COUNT_VOCABULARY, primitive_counts
from ml.evaluation.cv import cross_validate, summarize, trust_overlaps
from ml.evaluation.selection import (
    crowding_distance,
    select_nsga2,
    select_spea2,
    selection_overlap,
    sort_nondominated,
)
from ml.models.base import Prediction
from tests.conftest import TRAIN_CSV

# A 2-objective minimisation front: A..D non-dominated, E, F second front, G last.
POINTS = np.array([[1, 5], [2, 3], [3, 2], [5, 1], [3, 4], [4, 3], [5, 5]], dtype=float)
MIN2 = (-1.0, -1.0)


# ---------------------------------------------------------------- metrics

def test_kendall_tau_b_with_ties() -> None:
    # 5 concordant pairs, 0 discordant, one tie in the prediction: 5 / sqrt(6 * 5)
    assert M.kendall_tau_b([1, 2, 3, 4], [1, 1, 2, 3]) == pytest.approx(5 / math.sqrt(30))
    assert M.kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(M.kendall_tau_b([1, 2, 3], [5, 5, 5]))


def test_regression_errors_and_correlations() -> None:
    t, p = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0])
    assert M.mae(t, p) == pytest.approx(2 / 3)
    assert M.rmse(t, p) == pytest.approx(math.sqrt(4 / 3))
    assert M.spearman(t, p) == pytest.approx(1.0)
    assert M.pearson(t, 2 * t + 1) == pytest.approx(1.0)


def test_precision_at_ten_percent_is_direction_aware() -> None:
    y = np.arange(20, dtype=float)
    pred = y.copy()
    pred[18] = -100.0  # the predictor misses the second best (higher is better)
    assert M.precision_at_fraction(y, pred, +1) == pytest.approx(0.5)
    # lower is better: the true top-2 are rows 0 and 1, both predicted lowest
    assert M.precision_at_fraction(y, pred, -1) == pytest.approx(0.5)  # row 18 now looks best
    assert M.precision_at_fraction(y, y, -1) == pytest.approx(1.0)


def test_n_at_k() -> None:
    y = np.array([0.9, 0.1, 0.5, 0.7])          # true ranks (higher better): 1, 4, 3, 2
    pred = np.array([0.0, 1.0, 0.8, 0.2])       # predicted order: rows 1, 2, 3, 0
    assert M.n_at_k(y, pred, +1, k=1) == 4
    assert M.n_at_k(y, pred, +1, k=2) == 3
    assert M.n_at_k(y, pred, +1, k=4) == 1
    assert M.n_at_k(y, pred, -1, k=1) == 4      # lowest predicted is row 0, the worst loss
    assert M.n_at_k(y, pred, -1, k=2) == 3


def test_weighted_tau_validity_auc_and_coverage() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert M.weighted_tau(y, y, +1) == pytest.approx(1.0)
    assert M.weighted_tau(y, -y, -1) == pytest.approx(-1.0)
    assert M.validity_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)
    assert math.isnan(M.validity_auc([0, 0], [0.1, 0.2]))
    cover = M.interval_coverage([0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 3.0, -1.5], [1.0, 1.0, 1.0, 1.0])
    assert cover == pytest.approx(0.75)


# ---------------------------------------------------------------- selections

def test_nondominated_sort_fronts() -> None:
    assert sort_nondominated(POINTS, 7, MIN2) == [[0, 1, 2, 3], [4, 5], [6]]
    assert sort_nondominated(POINTS, 3, MIN2) == [[0, 1, 2, 3]]  # stops once k rows are sorted


def test_crowding_distance_by_hand() -> None:
    # extremes are infinite; B and C: (3-1)/(2*4) + (5-2)/(2*4) = 0.625 each
    dist = crowding_distance(POINTS, [0, 1, 2, 3])
    assert dist[0] == math.inf and dist[3] == math.inf
    assert dist[1] == pytest.approx(0.625) and dist[2] == pytest.approx(0.625)


def test_select_nsga2_hand_cases() -> None:
    # a single (last) front is returned in crowding order, as DEAP does
    assert select_nsga2(POINTS, 4, MIN2) == [0, 3, 1, 2]
    # last front cut by crowding; equal distances keep front order (stable sort, as DEAP)
    assert select_nsga2(POINTS, 3, MIN2) == [0, 3, 1]
    assert select_nsga2(POINTS, 5, MIN2) == [0, 1, 2, 3, 4]
    # maximising the negated objectives picks the same rows
    assert select_nsga2(-POINTS, 3, (1.0, 1.0)) == [0, 3, 1]


def test_select_spea2_hand_cases() -> None:
    assert select_spea2(POINTS, 4, MIN2) == [0, 1, 2, 3]
    # archive too small: E and F tie on raw fitness 6 (both dominated by B and C) and density
    assert select_spea2(POINTS, 5, MIN2) == [0, 1, 2, 3, 4]
    assert select_spea2(POINTS, 6, MIN2) == [0, 1, 2, 3, 4, 5]
    # archive too large: truncation drops B (nearest pair B-C, tie broken by order), then C
    assert select_spea2(POINTS, 2, MIN2) == [0, 3]


def test_selection_overlap() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(size=(40, 3))
    assert selection_overlap(true, true, "spea2") == pytest.approx(1.0)
    assert selection_overlap(true, true, "nsga2") == pytest.approx(1.0)
    # totally ordered vectors (smaller t is better on all three): top-30 % of 10 = rows 0..2
    t = np.arange(10, dtype=float)
    ordered = np.stack([t, t, -t], axis=1)
    for method in ("spea2", "nsga2"):
        assert selection_overlap(ordered, 2 * ordered + 1, method) == pytest.approx(1.0)
        assert selection_overlap(ordered, ordered[::-1].copy(), method) == pytest.approx(0.0)
    assert select_spea2(ordered, 3) == [0, 1, 2]


# ---------------------------------------------------------------- grouped CV

def _synthetic(n_groups: int = 30, seed: int = 0) -> list[Data]:
    rng = np.random.default_rng(seed)
    records = []
    for g in range(n_groups):
        for _ in range(int(rng.integers(1, 4))):  # duplicates share the canonical hash
            value = float(g) + rng.normal(scale=0.1)
            failed = 1.0 if g % 7 == 0 else 0.0
            records.append(Data(y=torch.tensor([[value, -value, value / 2]]),
                                failed=torch.tensor([failed]), canonical_hash=f"g{g}",
                                feature=float(g)))
    return records


class _LeakCheckingPredictor:
    """Predicts the group id; fails the test if a test group was seen in training."""

    seen: set[str] = set()

    def fit(self, train, val, config, callbacks):
        self.seen = {r.canonical_hash for r in list(train) + list(val)}
        return {"members": [[{"epoch": 0, "loss": 1.0}, {"epoch": 1, "loss": 0.5}]]}

    def predict(self, records):
        assert not ({r.canonical_hash for r in records} & self.seen), "group leaked"
        f = np.array([r.feature for r in records])
        return Prediction(np.stack([f, -f, f / 2], axis=1), None,
                          np.array([1.0 if int(x) % 7 == 0 else 0.0 for x in f]))


def test_grouped_folds_never_split_a_group() -> None:
    keys = [r.canonical_hash for r in _synthetic()]
    for seed in range(5):
        ids = grouped_fold_ids(keys, 5, seed)
        for key in set(keys):
            assert len({ids[i] for i, k in enumerate(keys) if k == key}) == 1
        assert set(ids.tolist()) == set(range(5))
    assert not np.array_equal(grouped_fold_ids(keys, 5, 0), grouped_fold_ids(keys, 5, 1))


def test_cross_validate_scores_and_summary() -> None:
    records = _synthetic()
    metrics = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
    result = cross_validate(records, lambda seed: _LeakCheckingPredictor(), metrics,
                            (+1, -1, +1), n_folds=3, seeds=range(2))
    assert len(result.folds) == 6
    fold = result.folds[0]
    assert fold.per_metric["uw_val_epoch_loss"]["kendall_tau_b"] > 0.8
    assert fold.validity_auc == pytest.approx(1.0)
    assert fold.history["members"][0][1]["loss"] == 0.5
    # failed rows are excluded from regression metrics
    n_ok = sum(1 for r in records if r.failed.item() == 0)
    assert sum(f.per_metric["ciou_loss"]["n"] for f in result.folds[:3]) == n_ok
    summary = summarize(result)
    assert summary["per_fold"]["average_precision"]["kendall_tau_b"]["count"] == 6
    assert summary["validity_auc"]["pooled_oof"]["mean"] == pytest.approx(1.0)


class _RecordingPredictor(_LeakCheckingPredictor):
    """Also records which groups each fit saw, keyed by the factory's seed."""

    fits: dict[int, set[str]] = {}

    def __init__(self, seed: int) -> None:
        self.key = seed

    def fit(self, train, val, config, callbacks):
        returned = super().fit(train, val, config, callbacks)
        _RecordingPredictor.fits[self.key] = set(self.seen)
        return returned


def test_cross_validate_train_fraction_shrinks_training_folds_only() -> None:
    records = _synthetic(n_groups=60)
    metrics = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
    seen: dict[float, dict[int, set[str]]] = {}
    results = {}
    for fraction in (0.25, 0.5, 1.0):
        _RecordingPredictor.fits = {}
        results[fraction] = cross_validate(records, _RecordingPredictor, metrics, (+1, -1, +1),
                                           n_folds=3, seeds=range(2), train_fraction=fraction)
        seen[fraction] = dict(_RecordingPredictor.fits)
    for fraction in (0.25, 0.5):
        for full, part in zip(results[1.0].folds, results[fraction].folds):
            # the same test folds, a grouped fraction of each training fold
            assert (part.seed, part.fold, part.n_test) == (full.seed, full.fold, full.n_test)
            groups_full = len(seen[1.0][full.seed * 1000 + full.fold])
            groups_part = len(seen[fraction][part.seed * 1000 + part.fold])
            assert groups_part == pytest.approx(fraction * groups_full, abs=1)
    for key, groups_quarter in seen[0.25].items():   # nested: smaller fractions are subsets
        assert groups_quarter <= seen[0.5][key] <= seen[1.0][key]
    with pytest.raises(ValueError):
        cross_validate(records, _RecordingPredictor, metrics, (+1, -1, +1), train_fraction=0.0)


def test_report_plots_learning_curves(tmp_path) -> None:
    from ml.evaluation.report import write_report

    metrics = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
    result = cross_validate(_synthetic(), lambda seed: _LeakCheckingPredictor(), metrics,
                            (+1, -1, +1), n_folds=3, seeds=range(1))
    path = write_report(tmp_path, {"model": "test"}, {"records": 0}, result, summarize(result), 0.0)
    report = json.loads(path.read_text())
    assert "learning_curves.png" in report["plots"]
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000


def test_trust_needs_the_three_objectives() -> None:
    y = np.random.default_rng(1).normal(size=(20, 3))
    keys = [str(i) for i in range(20)]
    spea2, nsga2 = trust_overlaps(y, y, np.zeros(20), keys,
                                  ("uw_val_epoch_loss", "ciou_loss", "average_precision"))
    assert spea2 == 1.0 and nsga2 == 1.0
    assert all(math.isnan(v) for v in trust_overlaps(y, y, np.zeros(20), keys, ("a", "b", "c")))


def test_primitive_counts() -> None:
    counts = primitive_counts("FCOS_Head(ResNet(ReLU_2D(IN0), toChannel(add(1, 2))), SGD(...))")
    named = {COUNT_VOCABULARY[i]: c for i, c in enumerate(counts) if c}
    assert named == {"FCOS_Head": 1, "ResNet": 1, "ReLU_2D": 1, "toChannel": 1, "add": 1,
                     "SGD": 1}


# ---------------------------------------------------------------- nas-bench-graph

def test_nasbench_graph_edges_and_record() -> None:
    from ml.evaluation.nasbench_graph import OP_VOCABULARY, arch_to_data, graph_edges

    assert graph_edges([0, 1, 2, 3]) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    assert graph_edges([0, 0, 1, 2]) == [(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 5)]
    assert graph_edges([0, 0, 0, 0])[-4:] == [(1, 5), (2, 5), (3, 5), (4, 5)]
    entry = {"perf": 0.7, "valid_perf": 0.71, "para": 0.1, "latency": 0.01}
    data = arch_to_data([0, 1, 1, 2], ["gcn", "gat", "skip", "fc"], entry, arch_hash=42)
    assert data.node_type.tolist() == [0, 2, 1, 9, 8, 10]
    assert OP_VOCABULARY[data.node_type[-1]] == "output"
    assert data.edge_index.t().tolist() == [[0, 1], [1, 2], [1, 3], [2, 4], [3, 5], [4, 5]]
    assert data.y.shape == (1, 1) and data.y.item() == pytest.approx(0.7)
    assert data.failed.item() == 0 and data.canonical_hash == "42"
    assert data.hyperparams.shape == (6, 86) and data.hyperparams_mask.shape == (6, 43)
    assert data.global_features.shape == (1, 29) and data.op_onehot.sum() == 4


def test_nasbench_graph_real_archs() -> None:
    pytest.importorskip("nas_bench_graph")
    from ml.evaluation.nasbench_graph import load_benchmark

    records = load_benchmark("arxiv")
    assert len(records) == 26206
    assert len({r.canonical_hash for r in records}) == len(records)
    for r in records[:50]:
        assert int(r.node_type.max()) < 28 and r.edge_index.shape[0] == 2
        assert 0.0 < r.y.item() < 1.0


def test_nasbench_graph_every_shipped_dataset_loads() -> None:
    """proteins holds entries for 2,021 architectures only; each dataset loads what it has."""
    pytest.importorskip("nas_bench_graph")
    from pathlib import Path

    import nas_bench_graph

    from ml.evaluation.nasbench_graph import DATASETS, load_benchmark

    shipped = {p.stem for p in (Path(nas_bench_graph.__file__).parent / "light").glob("*.bench")}
    assert shipped == set(DATASETS)
    records = load_benchmark("proteins")
    assert len(records) == 2021 and len({r.canonical_hash for r in records}) == 2021
    assert all(0.0 < r.y.item() < 1.0 for r in records[:50])
    with pytest.raises(ValueError, match="unknown nas-bench-graph dataset"):
        load_benchmark("mnist")


# ---------------------------------------------------------------- evaluate CLI

def test_evaluate_cli_end_to_end(tmp_path, capsys) -> None:
    from ml.evaluation.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", "--csv", str(TRAIN_CSV), "--model", "rf_counts",
                              "--out", str(tmp_path / "report"), "--folds", "3", "--seeds", "1"])
    assert args.func(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["dataset"]["records"] == 238 and report["dataset"]["failed"] == 31
    assert len(report["folds"]) == 3
    tau = report["summary"]["per_fold"]["ciou_loss"]["kendall_tau_b"]["mean"]
    assert tau == pytest.approx(line["kendall_tau_b"]["ciou_loss"]) and tau > 0.2
    assert report["summary"]["validity_auc"]["per_fold"]["mean"] > 0.7
    assert report["summary"]["trust_spea2_top30"]["per_fold"]["count"] == 3
    for name in report["plots"]:
        assert (tmp_path / "report" / name).stat().st_size > 1000
    assert "pred_vs_true_uw_val_epoch_loss.png" in report["plots"]


def test_generation_forward_never_trains_on_the_scored_generation(tmp_path) -> None:
    """Synthetic generations through the protocol with a leak-checking predictor: every scored
    generation is unseen in training, only earlier ones are, and the report has its plots."""
    from ml.evaluation import protocols
    from ml.evaluation.protocols import generation_forward, generation_report

    records = _synthetic(60)
    for r in records:
        r.generation = float(1 + int(r.canonical_hash[1:]) // 10)   # 6 generations of 10 groups
    seen_max: list[float] = []

    class Checking(_LeakCheckingPredictor):
        def fit(self, train, val, config, callbacks):
            seen_max.append(max(r.generation for r in train))
            return super().fit(train, val or [], config, callbacks)

    original = protocols.make_factory
    protocols.make_factory = lambda name, metrics, config=None: (lambda seed: Checking())
    try:
        result = generation_forward(records, "checking", ("a", "b", "c"), generations=3)
    finally:
        protocols.make_factory = original
    assert [r["generation"] for r in result["generations"]] == [4.0, 5.0, 6.0]
    assert seen_max[:3] == [3.0, 4.0, 5.0]          # trained on generations before g only
    assert result["evolution_split"]["test_generations"] == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert all(r["n_test"] == len([x for x in records if x.generation == r["generation"]])
               for r in result["generations"])
    path = generation_report(result, tmp_path / "gen")
    report = json.loads(path.read_text())
    assert report["protocol"] == "generation_forward" and len(report["generations"]) == 3
    assert {"trust_by_generation.png", "generation_004.png"} <= set(report["plots"])


def test_evaluate_cli_by_generation(tmp_path, capsys) -> None:
    from ml.evaluation.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evaluate", "--csv", str(TRAIN_CSV), "--model", "rf_counts",
                              "--out", str(tmp_path / "gen"), "--split", "generation",
                              "--generations", "3"])
    assert args.func(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["split"] == "generation" and line["generations"] == [8.0, 9.0, 10.0]
    report = json.loads((tmp_path / "gen" / "report.json").read_text())
    assert [g["n_test"] for g in report["generations"]] == [21, 20, 25]
    assert report["evolution_split"]["train_generations"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert 0.0 <= line["trust_spea2_top30"] <= 1.0


# ---------------------------------------------------------------- trust ceiling

def test_predictions_with_tau_reach_the_asked_tau_and_keep_the_marginals() -> None:
    from ml.evaluation.ceiling import predictions_with_tau

    rng = np.random.default_rng(0)
    y = np.stack([rng.lognormal(size=3000), rng.normal(size=3000), rng.uniform(size=3000)], 1)
    assert np.array_equal(predictions_with_tau(y, 1.0, rng), y)
    for tau in (0.3, 0.6, 0.85):
        pred = predictions_with_tau(y, tau, rng)
        for j in range(3):
            assert np.array_equal(np.sort(pred[:, j]), np.sort(y[:, j]))  # same values
            assert M.kendall_tau_b(y[:, j], pred[:, j]) == pytest.approx(tau, abs=0.03)
    with pytest.raises(ValueError):
        predictions_with_tau(y, 1.5, rng)


def test_trust_at_tau_rises_with_tau_and_is_perfect_at_one() -> None:
    from ml.evaluation.ceiling import trust_at_tau

    rng = np.random.default_rng(3)
    y = np.stack([rng.lognormal(size=45), rng.normal(size=45), rng.uniform(size=45)], 1)
    failed = np.zeros(45)
    failed[:5] = 1
    keys = [str(i) for i in range(45)]
    metrics = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
    perfect = trust_at_tau(y, failed, keys, metrics, 1.0, 2, rng)
    assert perfect["spea2"] == pytest.approx(1.0) and perfect["nsga2"] == pytest.approx(1.0)
    low = trust_at_tau(y, failed, keys, metrics, 0.2, 40, rng)
    high = trust_at_tau(y, failed, keys, metrics, 0.8, 40, rng)
    assert high["spea2"] > low["spea2"] + 0.15 and high["nsga2"] > low["nsga2"] + 0.15
    assert high["tau"] == pytest.approx(0.8, abs=0.08)


def test_pred_vs_true_titles_name_the_tables_tau_and_the_plotted_one(tmp_path,
                                                                     monkeypatch) -> None:
    """Issue 29 item 6: the table shows the mean of per-fold tau; a plot draws one seed's pooled
    out-of-fold points. Its title gives both, named, the table's figure first."""
    import matplotlib.axes

    from ml.evaluation.report import plot_predicted_vs_true

    metrics = ("uw_val_epoch_loss", "ciou_loss", "average_precision")
    result = cross_validate(_synthetic(), lambda seed: _LeakCheckingPredictor(), metrics,
                            (+1, -1, +1), n_folds=3, seeds=range(2))
    titles: list[str] = []
    original = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, label, *a, **k: (titles.append(label),
                                                      original(self, label, *a, **k))[1])
    plot_predicted_vs_true(result, tmp_path)
    summary = summarize(result)
    for metric, title in zip(metrics, titles):
        table = summary["per_fold"][metric]["kendall_tau_b"]["mean"]
        assert f"{metric}: tau-b {table:.3f} = the table's (mean of 3 folds x 2 seeds)" \
            in title, title
        assert "of these points (seed 0, pooled, n=" in title


def test_crowded_metrics_are_drawn_on_rank_axes() -> None:
    """average_precision: most values in 1e-6..1e-4 beside a few near 0.1, zeros included (no
    log axis): on linear axes every point sits at ~0, so it is drawn by rank."""
    import matplotlib.pyplot as plt

    from ml.evaluation.report import _scatter, _squeezed

    rng = np.random.default_rng(0)
    ap = np.concatenate([np.zeros(20), 10 ** rng.uniform(-6, -4, 200), [0.08, 0.12, 0.16]])
    pred = ap * rng.uniform(0.5, 1.5, ap.size)
    assert _squeezed(np.concatenate([ap, pred]))
    fig, ax = plt.subplots()
    _scatter(ax, ap, pred, "average_precision", "predicted average_precision", "t")
    assert ax.get_xlabel().startswith("rank of true average_precision")
    xs = ax.collections[0].get_offsets()[:, 0]
    assert xs.min() >= 1 and xs.max() <= ap.size  # ranks, not values
    plt.close(fig)
    spread = rng.uniform(0.1, 0.9, 100)  # an ordinary metric stays on its own axis
    assert not _squeezed(spread)
    fig, ax = plt.subplots()
    _scatter(ax, spread, spread, "ciou_loss", "predicted ciou_loss", "t")
    assert ax.get_xlabel() == "true ciou_loss" and ax.get_xscale() == "linear"
    plt.close(fig)
