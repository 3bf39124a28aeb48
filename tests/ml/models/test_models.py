"""Predictors on a small real subset: shapes, finiteness, determinism, target transforms."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.datasets.labels import DEFAULT_METRICS, classify
from ml.datasets.records import load_csv
from ml.models.registry import available_models, create
from ml.models.targets import TargetScaler
from tests.conftest import train_rows

FAST = {"epochs": 2, "hidden": 16, "batch_size": 8, "n_estimators": 20, "max_iter": 20}


def write_subset(path: Path, ok: int = 18, failed: int = 6) -> Path:
    """A CSV with the first ``ok`` good and ``failed`` failed rows of the real training CSV."""
    rows = train_rows()
    good = [r for r in rows if not classify(r, DEFAULT_METRICS).failed][:ok]
    bad = [r for r in rows if classify(r, DEFAULT_METRICS).failed][:failed]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(good + bad)
    return path


@pytest.fixture(scope="session")
def subset_csv(tmp_path_factory) -> Path:
    return write_subset(tmp_path_factory.mktemp("subset") / "subset.csv")


@pytest.fixture(scope="session")
def records(subset_csv):
    recs, report = load_csv(subset_csv)
    assert report.failed_evaluation == 6
    return recs


@pytest.mark.parametrize("name", ["combined_gcn", "trees", "stack"])
def test_same_seed_same_predictions(name, records):
    preds = []
    for _ in range(2):
        model = create(name, {**FAST, "seed": 3})
        model.fit(records)
        preds.append(model.predict(records[:5]))
    np.testing.assert_array_equal(preds[0].mean, preds[1].mean)
    np.testing.assert_array_equal(preds[0].p_fail, preds[1].p_fail)


def test_auto_resolves_to_a_real_model():
    assert create("auto").name in available_models()
    with pytest.raises(ValueError):
        create("nope")


def test_target_scaler_round_trips_heavy_tails():
    rng = np.random.default_rng(0)
    y = np.stack([np.exp(rng.normal(2, 2, 200)),      # loss, heavy tail -> log1p
                  rng.uniform(1.4, 2.2, 200),          # loss in a narrow band
                  np.where(rng.random(200) < 0.7, 0.0, rng.random(200))], 1)  # AP, mostly 0
    scaler = TargetScaler(("uw_val_epoch_loss", "ciou_loss", "average_precision")).fit(y)
    assert scaler.use_log.tolist() == [True, True, False]
    z = scaler.transform(y)
    assert np.isfinite(z).all() and np.abs(np.median(z[:, 0])) < 1e-9
    np.testing.assert_allclose(scaler.inverse(z), y, rtol=1e-9, atol=1e-9)
    restored = TargetScaler(scaler.metrics)
    restored.load(scaler.state())
    np.testing.assert_array_equal(restored.transform(y), z)


def test_predict_needs_no_labels(records):
    model = create("combined_gcn", FAST)
    model.fit(records)
    unlabelled = [r.clone() for r in records[:3]]
    for r in unlabelled:
        del r.y
        del r.failed
    assert np.isfinite(model.predict(unlabelled).mean).all()
    assert torch.is_tensor(next(iter(model.state_dict().values())))


@pytest.fixture(scope="session")
def real_records(genomes):
    """Every real genome (training CSV + seeds) that encodes, through one warm encoder."""
    from ml.encoding.encoder import GenomeEncoder
    from ml.errors import GenomeError

    encoder, out = GenomeEncoder(), []
    for text in genomes:
        try:
            out.append(encoder.encode(text).to_data("combined"))
        except GenomeError:
            continue
    assert len(out) > 200
    return out


def test_encoder_hyperparam_aggregates_match_the_matrix(real_records):
    """The cached per-segment aggregates equal a reduction over each genome's [N, 86] rows."""
    for r in real_records:
        values = r.hyperparams.numpy().astype(np.float64)
        present = np.repeat(r.hyperparams_mask.numpy() > 0, 2, axis=1)
        summary = r.hyperparams_summary.numpy().reshape(3, -1)
        np.testing.assert_array_equal(summary[0], np.where(present, values, -np.inf).max(axis=0))
        np.testing.assert_allclose(summary[1], (values * present).sum(axis=0), rtol=1e-12, atol=0)
        np.testing.assert_array_equal(summary[2], present.sum(axis=0))


def test_tabular_features_equal_the_straightforward_computation(real_records):
    """Batched blocks + encoder aggregates == per-record reduction of the full matrices."""
    from ml.features.vectors import hyperparam_summary, hyperparam_summary_full, tabular_features
    from tests.feature_reference import tabular_features_reference

    fast = tabular_features(real_records)
    np.testing.assert_array_equal(fast, tabular_features_reference(real_records))
    # Records without the aggregates (graph-v1 datasets, shards) take the fallback: same values.
    legacy = [r.clone() for r in real_records[:12]]
    for r in legacy:
        del r.hyperparams_summary
    np.testing.assert_array_equal(tabular_features(legacy), fast[:12])
    mixed = legacy[:6] + real_records[6:12]
    np.testing.assert_array_equal(tabular_features(mixed), fast[:12])
    for r in real_records[:12]:
        np.testing.assert_array_equal(hyperparam_summary(r), hyperparam_summary_full(r))


def test_path_features_count_paths_and_match_the_reference(real_records):
    """Hand-checked path statistics; batch == per-record loop on mixed, cyclic and empty graphs."""
    from torch_geometric.data import Data

    from ml.evaluation.nasbench_graph import arch_to_data
    from ml.features.paths import NUM_NODE_TYPES, _path_block, node_mixing
    from tests.feature_reference import path_features_reference

    # input -> gcn -> skip -> output and input -> fc -> skip -> output: 2 paths of 4 nodes,
    # one without message passing (message-passing count max 1, min 0).
    arch = arch_to_data((0, 0, 1, 2), ("gcn", "fc", "skip", "skip"))
    assert node_mixing(arch).tolist() == [False, True, False, False, False, False]
    row = _path_block([arch])[0]
    cols = NUM_NODE_TYPES + 2
    top, low = np.expm1(row[:cols]), np.expm1(row[cols:2 * cols])
    assert (top[NUM_NODE_TYPES], low[NUM_NODE_TYPES]) == pytest.approx((1, 0))
    assert (top[-1], low[-1]) == pytest.approx((4, 4))
    assert np.expm1(row[2 * cols]) == pytest.approx(2) and row[2 * cols + 1] == pytest.approx(0.5)
    mean = np.expm1(row[2 * cols + 2:3 * cols + 2])  # the mean path: half a mixing op, 4 nodes
    assert (mean[NUM_NODE_TYPES], mean[-1]) == pytest.approx((0.5, 4))
    cyclic = Data(node_type=torch.tensor([1, 2, 3]), num_nodes=3,
                  edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]))
    empty = Data(node_type=torch.zeros(0, dtype=torch.long), num_nodes=0,
                 edge_index=torch.zeros((2, 0), dtype=torch.long))
    batch = [arch, cyclic, *real_records[:20], empty, arch_to_data((0, 0, 1, 1), ("gat",) * 4)]
    expected = np.stack([path_features_reference(r) for r in batch])
    np.testing.assert_array_equal(_path_block(batch), expected)
    assert not expected[1, :3 * cols + 2].any() and not expected[-2].any()


@pytest.mark.parametrize("name", ["trees", "gbt"])
def test_tree_traversal_matches_the_reference(name, records):
    """The compiled walk returns exactly the per-sample one (NaNs included)."""
    from ml.features.vectors import tabular_features
    from tests.tree_reference import raw_reference

    model = create(name, {**FAST, "seed": 1})
    model.fit(records)
    x = tabular_features(records)
    with_nan = x.copy()
    with_nan[::3, ::4] = np.nan
    for trees in model.members:
        for flat in trees.values():
            for data in (x, with_nan, x[:1]):
                np.testing.assert_array_equal(flat.raw(data), raw_reference(flat, data))


def test_trees_train_on_the_validation_records_too(records):
    """Trees select nothing on a validation split, so fit(train, val) == fit(train + val)."""
    train, val = records[:-10], records[-10:]
    split = create("trees", {**FAST, "seed": 3})
    split.fit(train, val)
    joined = create("trees", {**FAST, "seed": 3})
    joined.fit(train + val)
    alone = create("trees", {**FAST, "seed": 3})
    alone.fit(train)
    np.testing.assert_array_equal(split.predict(records).mean, joined.predict(records).mean)
    assert not np.array_equal(split.predict(records).mean, alone.predict(records).mean)


def test_forest_std_is_the_spread_of_its_trees(records):
    """trees (one member) report the spread of their trees' predictions in original units,
    each tree's value checked by the per-sample reference traversal; gbt (additive trees,
    one member) has no spread."""
    from ml.models.trees import FlatTrees
    from tests.tree_reference import raw_reference

    model = create("trees", {**FAST, "seed": 2})
    model.fit(records)
    pred = model.predict(records[:15])
    x = model.featurize(records[:15])
    assert pred.std is not None and pred.std.shape == pred.mean.shape
    assert np.isfinite(pred.std).all() and (pred.std > 0).any()
    for j, metric in enumerate(model.metrics):
        flat = model.members[0][metric]
        per_tree = np.stack([raw_reference(FlatTrees(flat.arrays, flat.roots[k:k + 1], 0.0), x)
                             for k in range(len(flat.roots))], axis=1)
        np.testing.assert_array_equal(flat.leaves(x), per_tree)
        np.testing.assert_allclose(pred.std[:, j],
                                   model.targets.inverse_column(per_tree, j).std(axis=1))
    boosted = create("gbt", {**FAST, "seed": 2})
    boosted.fit(records)
    assert boosted.predict(records[:5]).std is None
