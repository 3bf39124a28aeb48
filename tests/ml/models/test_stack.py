"""The default predictor (``stack``: trees + kernel SVR) and its parts, on real genomes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.svm import SVR

from ml.datasets.records import labels
from ml.datasets.splits import groups as record_groups
from ml.features.vectors import FEATURE_BLOCKS, TABULAR_DIM, tabular_features
from ml.models.kernel import KernelSVR
from ml.models.registry import create
from ml.models.stack import blend_scores, pick_weight, spread_scale
from ml.models.trees import TARGET_CLIP
from tests.ml.models.test_models import FAST, records, subset_csv  # noqa: F401 - fixtures


def test_feature_blocks_tile_the_design_matrix():
    spans = [(block.start, block.stop) for _, block in FEATURE_BLOCKS]
    assert spans[0][0] == 0 and spans[-1][1] == TABULAR_DIM
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))


def test_kernel_svr_equals_scikit_learn_and_weighs_blocks_equally(records):
    x = tabular_features(records)
    z = np.random.default_rng(0).standard_normal(len(x))
    train, test = x[:16], x[16:]
    kernel = KernelSVR.fit(train, z[:16])
    # Each non-constant family contributes unit total variance on the training rows.
    xs = kernel.transform(train)
    cols = kernel.arrays["columns"]
    families = 0
    for _, block in FEATURE_BLOCKS:
        inside = (cols >= block.start) & (cols < block.stop)
        if inside.any():
            families += 1
            assert xs[:, inside].var(axis=0).sum() == pytest.approx(1.0)
    assert kernel.gamma == pytest.approx(1.0 / families)
    reference = SVR(kernel="rbf", C=1.0, epsilon=0.1, gamma=kernel.gamma)
    reference.fit(kernel.transform(train), z[:16])
    np.testing.assert_allclose(kernel.predict(test), reference.predict(kernel.transform(test)),
                               rtol=1e-9, atol=1e-12)
    # A row's value does not depend on the batch it is predicted in (bit for bit).
    whole = kernel.predict(x)
    np.testing.assert_array_equal(np.concatenate([kernel.predict(x[i:i + 1])
                                                  for i in range(len(x))]), whole)
    np.testing.assert_array_equal(np.concatenate([kernel.predict(x[:7]), kernel.predict(x[7:])]),
                                  whole)
    np.testing.assert_array_equal(kernel.predict(np.asfortranarray(x)), whole)  # any layout
    restored = KernelSVR.load({k: v.clone() for k, v in kernel.state("k.").items()}, "k.")
    np.testing.assert_array_equal(restored.predict(test), kernel.predict(test))
    with_nan = test.copy()
    with_nan[:, cols[0]] = np.nan  # a non-finite input counts as the training mean
    mean_row = test.copy()
    mean_row[:, cols[0]] = kernel.arrays["mean"][0]
    np.testing.assert_allclose(kernel.predict(with_nan), kernel.predict(mean_row))


def test_pick_weight_takes_the_best_inner_blend():
    rng = np.random.default_rng(1)
    truth = rng.standard_normal(300)
    weights = (0.5, 0.75, 1.0)
    noisy_trees = truth + 2.0 * rng.standard_normal(300)
    good_kernel = truth + 0.3 * rng.standard_normal(300)
    assert pick_weight(blend_scores(truth, noisy_trees, good_kernel, weights)) == 0.5
    good_trees, junk_kernel = truth + 0.3 * rng.standard_normal(300), rng.standard_normal(300)
    assert pick_weight(blend_scores(truth, good_trees, junk_kernel, weights)) == 1.0
    constant = np.ones(300)  # no ranking to score: the trees keep all the weight
    assert pick_weight(blend_scores(constant, good_trees, good_kernel, weights)) == 1.0
    assert pick_weight({0.5: 0.4, 0.75: 0.4, 1.0: 0.3}) == 0.5  # a tie: first in grid order


def test_spread_scale_is_the_conformal_quantile():
    rng = np.random.default_rng(2)
    spread = rng.uniform(0.5, 1.5, 4000)
    z = 2.0 * spread * rng.standard_normal(4000)   # residuals twice the spread
    scale = spread_scale(z, np.zeros(4000), spread)
    assert scale == pytest.approx(2.0, rel=0.05)
    assert np.mean(np.abs(z) <= 1.96 * scale * spread) == pytest.approx(0.95, abs=0.002)
    assert spread_scale(z, np.zeros(4000), np.zeros(4000)) == 1.0   # no spread to scale


def test_stack_blends_trees_and_kernel_with_the_chosen_weights(records):
    model = create("stack", {**FAST, "seed": 4})
    history = model.fit(records)
    x = model.featurize(records)
    pred = model.predict_features(x)
    assert set(history["tree_weight"]) == set(model.metrics) == set(history["spread_scale"])
    z_columns, spread = [], []
    for j, metric in enumerate(model.metrics):
        blend = model.blends[0][metric]
        w = blend.tree_weight
        assert w == pick_weight(blend.inner_scores) and w in (0.25, 0.5, 0.75, 1.0)
        assert np.isfinite(blend.spread_scale) and blend.spread_scale > 0
        flat, kernel = model.members[0][metric], blend.kernel.predict(x)
        mean = w * flat.raw(x) + (1 - w) * kernel
        per_tree = w * flat.leaves(x) + (1 - w) * kernel[:, None]
        scaled = mean[:, None] + blend.spread_scale * (per_tree - mean[:, None])
        z_columns.append(mean)
        spread.append(model.targets.inverse_column(scaled, j).std(axis=1))
    np.testing.assert_allclose(pred.mean, model.targets.inverse(np.stack(z_columns, axis=1)),
                               rtol=1e-12)
    # atol: where all trees agree the spread is rounding noise (~1e-21), summed in another order
    np.testing.assert_allclose(pred.std, np.stack(spread, axis=1), rtol=1e-9, atol=1e-18)
    # The 95 % interval is built where the targets are modelled (z: standardised, log1p for
    # the heavy-tailed loss) from the same scaled spread, then mapped back bound by bound.
    lo, hi = pred.interval[..., 0], pred.interval[..., 1]
    z_mean = np.stack(z_columns, axis=1)
    z_std = np.stack([_scaled(model, x, j).std(axis=1) for j in range(len(model.metrics))],
                     axis=1)
    floor = np.where(model.targets.use_log, 0.0, -np.inf)  # log1p's domain: y >= 0
    np.testing.assert_allclose(lo, np.maximum(model.targets.inverse(z_mean - 1.96 * z_std),
                                              floor), rtol=1e-9)
    np.testing.assert_allclose(hi, model.targets.inverse(z_mean + 1.96 * z_std), rtol=1e-9)
    assert (lo <= pred.mean + 1e-12).all() and (pred.mean <= hi + 1e-12).all()
    log_j = model.metrics.index("uw_val_epoch_loss")
    assert model.targets.use_log[log_j]
    assert (lo[:, log_j] >= 0).all()  # never below zero, where mean - 1.96 std often is
    assert ((pred.p_fail >= 0) & (pred.p_fail <= 1)).all()
    again = create("stack", {**FAST, "seed": 4})
    again.fit(records)
    np.testing.assert_array_equal(again.predict_features(x).mean, pred.mean)


def _scaled(model, x, j):
    """The stack's blended per-tree predictions of metric ``j`` in z space, spread-scaled."""
    blend = model.blends[0][model.metrics[j]]
    w, flat, kernel = blend.tree_weight, model.members[0][model.metrics[j]], \
        blend.kernel.predict(x)
    mean = w * flat.raw(x) + (1 - w) * kernel
    per_tree = w * flat.leaves(x) + (1 - w) * kernel[:, None]
    return mean[:, None] + blend.spread_scale * (per_tree - mean[:, None])


def test_tree_targets_are_winsorised(records):
    """One absurd label (hundreds of robust sigmas out) may not set any leaf beyond the clip."""
    altered = [r.clone() for r in records]
    ok = [i for i, r in enumerate(altered) if float(r.failed.reshape(-1)[0]) == 0.0]
    j = 3  # iou_loss: real values sit in 0.9997-0.9999
    altered[ok[0]].y = altered[ok[0]].y.clone()
    altered[ok[0]].y[0, j] = 0.5
    model = create("trees", {**FAST, "seed": 5, "target_transform": "robust"})
    assert model.metrics[j] == "iou_loss"
    model.fit(altered)
    z = model.targets.transform(np.concatenate([r.y.numpy() for r in altered]))
    assert abs(z[ok[0], j]) > 10 * TARGET_CLIP
    for trees in model.members:
        for metric in model.metrics:
            assert np.abs(trees[metric].arrays["value"]).max() <= TARGET_CLIP + 1e-12
    assert torch.is_tensor(next(iter(model.state_dict().values())))


def test_stack_interval_scale_covers_the_unclipped_outliers(records):
    """The spread scale is conformal on the targets coverage is scored against. iou_loss has a
    heavy tail (in these rows as in all the real genomes: values up to 1.19 where the bulk sits
    in 0.9994-1.0000, hundreds of robust sigmas out) that is winsorised for the trees, but the
    inner folds' held-out rows must still be covered where they really lie."""
    j = 3
    model = create("stack", {**FAST, "seed": 6, "target_transform": "robust"})
    assert model.metrics[j] == "iou_loss"
    model.fit(records)
    x = model.featurize(records)
    y, failed = labels(records)
    rows = ~failed & np.isfinite(y[:, j])
    raw = model.targets.transform(y)[rows, j]
    assert (np.abs(raw) > TARGET_CLIP).sum() >= 4 and (raw > 10 * TARGET_CLIP).sum() >= 3
    clipped = np.clip(raw, -TARGET_CLIP, TARGET_CLIP)   # what the trees were fitted on
    groups = np.asarray(record_groups(records), dtype=object)[rows]
    tree, spread, kernel = model._inner_predictions(x[rows], clipped, groups, 6)
    blend = model.blends[0]["iou_loss"]
    w = blend.tree_weight
    mean, spread = w * tree + (1 - w) * kernel, w * spread
    inside = np.abs(raw - mean) <= 1.96 * blend.spread_scale * spread
    assert inside.mean() >= 0.9   # the scale of the clipped targets missed the tail
    assert blend.spread_scale == spread_scale(raw, mean, spread)
    assert blend.spread_scale > spread_scale(clipped, mean, spread)


def _between_rows(x: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Real rows and points between pairs of them (off the training values, so every split's
    threshold is met from both sides)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(x), count), rng.integers(0, len(x), count)
    t = rng.uniform(0.0, 1.0, (count, 1))
    return np.concatenate([x, (1 - t) * x[a] + t * x[b]])


#: Fast path against scikit-learn's own predictions: the same leaves (compared exactly), the
#: SVRs' sums in another order (|difference| <= 1e-9 relative + 1e-12), so every field of the
#: prediction within that. Zero-spread rows' std is rounding noise (~1e-21): absolute 1e-12.
RTOL, ATOL = 1e-9, 1e-12


@pytest.mark.parametrize("name", ["stack", "trees"])
def test_fast_predictions_equal_scikit_learns_fitted_and_reloaded(name, records, monkeypatch,
                                                                   tmp_path):
    from ml.train.bundle import load_bundle, save_bundle
    from tests.tree_reference import keeping_sklearn, sklearn_prediction

    with keeping_sklearn(monkeypatch):
        model = create(name, {**FAST, "seed": 7, "ensemble": 2})
        model.fit(records)
    x = _between_rows(model.featurize(records), 400, 7)
    expected = sklearn_prediction(model, x, monkeypatch)
    loaded = load_bundle(save_bundle(model, tmp_path / "bundle"))
    for fast in (model.predict_features(x), loaded.predict_features(x)):
        for field in ("mean", "std", "p_fail", "interval"):
            np.testing.assert_allclose(getattr(fast, field), getattr(expected, field),
                                       rtol=RTOL, atol=ATOL, err_msg=field)
    # every tree's leaf, each metric's and the failure head's, exactly scikit-learn's
    for member, trees in enumerate(model.members):
        for key, flat in trees.items():
            if len(flat.roots):
                each = np.stack([t.predict_proba(x)[:, -1] if key == "__fail__" else t.predict(x)
                                 for t in flat.sklearn.estimators_], axis=1)
                np.testing.assert_allclose(flat.leaves(x), each, rtol=1e-15, atol=0)
                np.testing.assert_array_equal(loaded.members[member][key].leaves(x),
                                              flat.leaves(x))
    # a row's prediction does not depend on its batch (bit for bit)
    whole = loaded.predict_features(x)
    parts = [loaded.predict_features(x[i:i + 1]) for i in (0, 5, 150)]
    for i, part in zip((0, 5, 150), parts):
        np.testing.assert_array_equal(part.mean[0], whole.mean[i])
        np.testing.assert_array_equal(part.std[0], whole.std[i])
        np.testing.assert_array_equal(part.interval[0], whole.interval[i])


def test_gbt_fast_raw_outputs_equal_scikit_learns(records, monkeypatch, tmp_path):
    from ml.train.bundle import load_bundle, save_bundle
    from tests.tree_reference import keeping_sklearn

    with keeping_sklearn(monkeypatch):
        model = create("gbt", {**FAST, "seed": 8})
        model.fit(records)
    x = _between_rows(model.featurize(records), 400, 8)
    loaded = load_bundle(save_bundle(model, tmp_path / "bundle"))
    trees = model.members[0]
    z = np.stack([trees[m].sklearn.predict(x) for m in model.metrics], axis=1)
    p_fail = trees["__fail__"].sklearn.predict_proba(x)[:, 1]
    for fast in (model.predict_features(x), loaded.predict_features(x)):
        np.testing.assert_allclose(fast.mean, model.targets.inverse(z), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(fast.p_fail, p_fail, rtol=RTOL, atol=ATOL)


def test_damaged_arrays_are_refused_before_the_compiled_loops():
    """The walk and the kernel sum read without bounds checks: arrays pointing outside their
    forest, a cycle, inconsistent kernel arrays and too narrow rows raise ValueError first."""
    from sklearn.ensemble import ExtraTreesRegressor

    from ml.models.kernel import KernelSet
    from ml.models.trees import CompiledForests, FlatTrees

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal(60)
    flat = FlatTrees.from_forest(ExtraTreesRegressor(3, random_state=0).fit(x, y))
    assert CompiledForests((flat,)).leaves(x).shape == (60, 3)
    with pytest.raises(ValueError):
        CompiledForests((flat,)).leaves(x[:, :2])
    outside = {**flat.arrays, "left": flat.arrays["left"].copy()}
    outside["left"][0] = len(outside["left"]) + 5
    with pytest.raises(ValueError):
        CompiledForests((FlatTrees(outside, flat.roots, 0.0),))
    cycle = {**flat.arrays, "left": flat.arrays["left"].copy()}
    cycle["left"][flat.arrays["left"][0]] = 0  # the root's left child leads back to the root
    cycle["is_leaf"] = flat.arrays["is_leaf"].copy()
    cycle["is_leaf"][flat.arrays["left"][0]] = False
    with pytest.raises(ValueError):
        CompiledForests((FlatTrees(cycle, flat.roots, 0.0),))
    kernel = KernelSVR.fit(x, y, blocks=(("all", slice(0, 5)),))
    assert KernelSet((kernel,)).predict(x).shape == (60, 1)
    with pytest.raises(ValueError):
        KernelSet((kernel,)).predict(x[:, :2])
    damaged = KernelSVR({**kernel.arrays, "mean": kernel.arrays["mean"][:-1]})
    with pytest.raises(ValueError):
        KernelSet((damaged,))


def test_a_batch_split_over_threads_gives_the_same_bits(records, monkeypatch):
    """The compiled loops split a large batch's rows over threads; rows are independent, so the
    prediction is bit-for-bit the one-thread prediction."""
    from ml.models import compiled

    model = create("stack", {**FAST, "seed": 0})
    model.fit(records[:120])
    x = _between_rows(model.featurize(records), 3 * compiled.SPLIT_MIN_ROWS, seed=5)
    monkeypatch.setattr(compiled, "THREADS", 1)
    one = model.predict_features(x)
    monkeypatch.setattr(compiled, "THREADS", 3)
    split = model.predict_features(x)
    for field in ("mean", "std", "p_fail", "interval"):
        a, b = getattr(one, field), getattr(split, field)
        assert a is not None and np.array_equal(a, b, equal_nan=True), field


_PRIMED = r"""
import json, sys
import numpy as np
from ml.datasets.records import load_csv
from ml.models import compiled
from ml.models.registry import create

loops = (compiled.walk, compiled.rbf_sums, compiled.interp)
compiled.prime()
primed = [sorted(map(str, f.signatures)) for f in loops]
records, _ = load_csv(sys.argv[1])
model = create("stack", json.loads(sys.argv[2]))
model.fit(records[:80])
x = model.featurize(records)
model.predict_features(np.concatenate([x] * 12))   # enough values for the compiled interp
used = [sorted(map(str, f.signatures)) for f in loops]
print(json.dumps({"primed": primed, "used": used}))
"""


def test_priming_compiles_what_a_prediction_uses():
    """The service primes the compiled loops at warm-up (ml.models.compiled.prime), so its first
    prediction compiles nothing: in a fresh process, a real stack prediction after prime() adds
    no signature to any loop."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO, TRAIN_CSV

    proc = subprocess.run([sys.executable, "-c", _PRIMED, str(TRAIN_CSV),
                           json.dumps({**FAST, "seed": 0})],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(seen["primed"]), seen
    assert seen["used"] == seen["primed"], seen
