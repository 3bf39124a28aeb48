"""Target kinds of the tree models: robust standardisation or normal scores of the ranks, and
the per-metric choice between them on inner folds of the training rows."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from ml.datasets.records import labels
from ml.models.registry import create
from ml.models.targets import RANK, ROBUST, TargetScaler, normal_scores
from ml.models.trees import TARGET_CLIP
from tests.ml.models.test_models import FAST, records, subset_csv  # noqa: F401 - fixtures

METRICS = ("uw_val_epoch_loss", "average_precision")


def test_normal_scores_share_ties_and_follow_the_mid_rank():
    knots, scores = normal_scores(np.array([3.0, 0.0, 0.0, 1.0, 0.0]))
    assert knots.tolist() == [0.0, 1.0, 3.0]
    # mid-rank CDF: three zeros -> 1.5 / 5, then 3.5 / 5, then 4.5 / 5
    np.testing.assert_allclose(scores, norm.ppf([0.3, 0.7, 0.9]))


def test_rank_kind_inverts_on_the_training_values_and_keeps_the_order():
    rng = np.random.default_rng(0)
    y = np.stack([np.exp(rng.normal(2, 2, 200)),                   # heavy-tailed loss (log1p)
                  np.where(rng.random(200) < 0.2, 0.0, rng.pareto(1.0, 200) * 1e-5)], axis=1)
    scaler = TargetScaler(METRICS, (RANK, RANK)).fit(y)
    z = scaler.transform(y)
    assert np.abs(z).max() < 3.5          # bounded: nothing for a clip to flatten
    for j in range(2):
        order = np.argsort(y[:, j], kind="stable")
        assert (np.diff(z[order, j]) >= 0).all()
        assert len(np.unique(z[y[:, j] == 0.0, j])) <= 1          # ties share one score
        np.testing.assert_allclose(scaler.inverse_column(z[:, j], j), y[:, j], rtol=1e-9,
                                   atol=1e-12)
    # beyond the training values: clamped at their ends, both ways
    assert scaler.inverse_column(np.array([-50.0, 50.0]), 1).tolist() == \
        [y[:, 1].min(), pytest.approx(y[:, 1].max())]
    restored = TargetScaler(METRICS)
    restored.load(scaler.state())
    assert restored.kinds == (RANK, RANK)
    np.testing.assert_array_equal(restored.transform(y), z)


def test_robust_clip_flattens_the_top_of_average_precision_where_ranks_do_not(records):
    """Why the rank kind exists: on real genomes the best average_precision values sit on the
    winsorising clip, so trees fitted there cannot order the best detectors."""
    y, failed = labels(records)
    j = list(create("trees", FAST).metrics).index("average_precision")
    ok = ~failed & np.isfinite(y[:, j])
    metrics = create("trees", FAST).metrics
    robust = np.clip(TargetScaler(metrics).fit(y[ok]).transform(y[ok])[:, j],
                     -TARGET_CLIP, TARGET_CLIP)
    rank = TargetScaler(metrics, (RANK,) * len(metrics)).fit(y[ok]).transform(y[ok])[:, j]
    top = robust >= TARGET_CLIP                                    # on the clip: one value
    distinct = len(np.unique(y[ok, j][top]))
    assert distinct >= 2 and len(np.unique(robust[top])) == 1
    assert len(np.unique(rank[top])) == distinct                   # still ordered


def test_old_bundles_without_knots_load_as_robust():
    y = np.array([[1.0, 0.1], [2.0, 0.2], [40.0, 0.3], [3.0, 0.0]])
    scaler = TargetScaler(METRICS).fit(y)
    state = scaler.state()
    assert not any(".knots." in key for key in state)
    restored = TargetScaler(METRICS, (RANK, RANK))
    restored.load(state)
    assert restored.kinds == (ROBUST, ROBUST)
    np.testing.assert_array_equal(restored.transform(y), scaler.transform(y))


@pytest.mark.parametrize("name", ["trees", "stack"])
def test_auto_chooses_each_metrics_kind_by_its_inner_score(records, name):
    model = create(name, {**FAST, "seed": 3, "target_transform": "auto"})
    history = model.fit(records)
    assert set(history["target_kind"]) == set(model.metrics)
    for j, metric in enumerate(model.metrics):
        scores = history["target_kind_inner_kendall_tau"][metric]
        assert set(scores) == {ROBUST, RANK}
        best = max(scores, key=lambda kind: (scores[kind], kind == ROBUST))
        assert history["target_kind"][metric] == model.targets.kinds[j] == best
    # the choice is the model's own: a refit on the same rows and seed repeats it exactly
    again = create(name, {**FAST, "seed": 3, "target_transform": "auto"})
    assert again.fit(records)["target_kind"] == history["target_kind"]
    x = model.featurize(records)
    np.testing.assert_array_equal(again.predict_features(x).mean,
                                  model.predict_features(x).mean)


def test_inner_score_is_kendall_tau_of_out_of_fold_predictions(records):
    """The trees' inner score, recomputed by hand from grouped inner folds."""
    from ml.datasets.splits import grouped_fold_ids
    from ml.datasets.splits import groups as record_groups
    from ml.metrics import kendall_tau_b

    model = create("trees", {**FAST, "seed": 2, "inner_folds": 3})
    y, failed = labels(records)
    ok = ~failed & np.isfinite(y[:, 1])
    x = model.featurize(records)[ok]
    z = TargetScaler(model.metrics, (RANK,) * 5).fit(y[~failed]).transform(y[ok])[:, 1]
    groups = np.asarray(record_groups(records), dtype=object)[ok]
    score = model._inner_score(1, RANK, x, z, groups, 7)
    fold = grouped_fold_ids(groups.tolist(), 3, 7)
    pred = np.empty(len(z))
    for f in range(3):
        test = fold == f
        pred[test] = model._inner_regressor(8 + f).fit(x[~test], z[~test]).predict(x[test])
    assert score == kendall_tau_b(z, pred)


# ---------------------------------------------------------------- blend: weights from data

def test_simplex_grid_and_best_index():
    from ml.models.blend import _best, simplex_grid

    grid = simplex_grid(2)
    assert grid.tolist() == [[1, 0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0, 1]]
    three = simplex_grid(3)
    assert len(three) == 15 and np.allclose(three.sum(axis=1), 1) and (three >= 0).all()
    assert _best([0.1, 0.3, 0.3]) == 1 and _best([np.nan, np.nan, np.nan]) == 1
    assert _best([np.nan, np.nan], default=0) == 0


def test_blend_chooses_its_weights_on_validation_genomes_out_of_sample(records, tmp_path):
    """The "auto" weights are the grid point whose blend ranks the validation genomes best,
    each member scored out of sample (the trees by a copy fitted without the validation
    rows); they are kept in the bundle."""
    from ml.datasets.splits import grouped_split
    from ml.metrics import kendall_tau_b, validity_auc
    from ml.models.blend import simplex_grid
    from ml.train.bundle import load_bundle, save_bundle

    train, val = grouped_split(records, 0.3, 1)
    config = {**FAST, "seed": 1, "members": ["trees", "gbt"]}
    model = create("blend", config)
    history = model.fit(train, val)
    z_val = []
    fails = []
    for name, part in zip(("trees", "gbt"), model.parts):
        copy = create(name, dict(part.config))
        copy.fit(train, None)
        pred = copy.predict(val)
        z_val.append(model.targets.transform(np.asarray(pred.mean)))
        fails.append(np.asarray(pred.p_fail).reshape(-1))
    y, failed = labels(val)
    truth = model.targets.transform(y)
    grid = simplex_grid(2)
    for j, metric in enumerate(model.metrics):
        rows = ~failed & np.isfinite(truth[:, j])
        scores = [kendall_tau_b(truth[rows, j], w[0] * z_val[0][rows, j]
                                + w[1] * z_val[1][rows, j]) for w in grid]
        best = grid[max(range(len(grid)), key=lambda i: (scores[i], -i))]
        assert history["weights"][metric] == best.tolist() == model.weights[:, j].tolist()
    aucs = [validity_auc(failed, w[0] * fails[0] + w[1] * fails[1]) for w in grid]
    assert model.fail_weights.tolist() == \
        grid[max(range(len(grid)), key=lambda i: (aucs[i], -i))].tolist()
    path = save_bundle(model, tmp_path / "bundle")
    loaded = load_bundle(path)
    np.testing.assert_array_equal(loaded.weights, model.weights)
    np.testing.assert_allclose(loaded.predict(val).mean, model.predict(val).mean)
    # explicit weights are still honoured
    fixed = create("blend", {**config, "weights": [0.5, 0.5], "fail_weights": [1.0, 0.0]})
    fixed.fit(train, val)
    assert fixed.weights.tolist() == [[0.5] * 5, [0.5] * 5]


def test_compiled_interp_is_numpys_bit_for_bit():
    """The rank kind's inverse on large batches (compiled) gives np.interp's values exactly:
    knots hit exactly, just beside them, outside, flat stretches, NaN and infinities."""
    from ml.models import compiled

    rng = np.random.default_rng(11)
    for trial in range(12):
        xp = np.unique(rng.standard_normal(int(rng.integers(2, 300))) * rng.uniform(0.1, 10))
        fp = np.cumsum(rng.exponential(size=len(xp))) * rng.choice([1e-6, 1.0, 1e4])
        if trial % 3 == 0:
            fp[len(fp) // 2:] = fp[len(fp) // 2]
        x = np.concatenate([rng.standard_normal(20000) * 3, xp, [np.nan, np.inf, -np.inf],
                            np.nextafter(xp, np.inf), np.nextafter(xp, -np.inf)])
        start, low, step = compiled.interp_grid(xp)
        out = np.empty_like(x)
        compiled.interp(x, xp, fp, start, low, step, out)
        np.testing.assert_array_equal(out, np.interp(x, xp, fp))
    y = np.exp(rng.normal(2, 2, (300, 1)))
    scaler = TargetScaler(("uw_val_epoch_loss",), ("rank",)).fit(y)
    z = rng.standard_normal((100, TargetScaler.COMPILED_INTERP // 50))  # the compiled path
    knots, scores = scaler.knots[0]
    np.testing.assert_array_equal(scaler.inverse_column(z, 0),
                                  np.expm1(np.minimum(np.interp(z, scores, knots), 700.0)))
