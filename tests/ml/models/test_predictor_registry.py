"""The predictor contract, for every registered predictor (ml.models.registry), on real genomes:
it trains and predicts, its state restores it, a row predictor's rows are its featuriser's, and
the registry refuses what would fail later (a feature key nobody can compute, a name twice).

Kept small (a few dozen genomes, neural models 2 epochs) so that a new predictor costs CI
seconds; a predictor added by one registry line is picked up here without another edit.
"""
from __future__ import annotations

import numpy as np
import pytest

from ml.datasets.labels import DEFAULT_METRICS
from ml.features.featurizers import ROW_FEATURIZERS, UnknownFeatureKey, featurizer
from ml.models.base import Prediction, Predictor
from ml.models.registry import (
    _SINGLE,
    AUTO_MODEL,
    GNN_MODELS,
    REGISTRY,
    available_models,
    build_registry,
    create,
    model_class,
    spec,
)
from ml.models.trees import ExtraTreesPredictor
from tests.ml.models.test_models import FAST, records, subset_csv  # noqa: F401 - fixtures

TRAIN = 20


@pytest.fixture(scope="module", params=list(REGISTRY))
def fitted(request, records):
    """(name, a predictor of ``name`` fitted on the first TRAIN genomes, its history)."""
    model = create(request.param, {**FAST, "ensemble": 2})
    history = model.fit(records[:TRAIN])
    return request.param, model, history


def test_each_predictor_fits_and_predicts_finite(fitted, records):
    name, model, history = fitted
    assert model.name == name and isinstance(model, spec(name).cls)
    for member in history.get("members", []) if isinstance(history.get("members"), list) else []:
        assert all(np.isfinite(row["train_loss"]) and row["train_loss"] < 100 for row in member)
    pred = model.predict(records[TRAIN:])
    assert isinstance(pred, Prediction)
    n, m = len(records) - TRAIN, len(DEFAULT_METRICS)
    assert pred.mean.shape == (n, m) and pred.std.shape == (n, m) and pred.p_fail.shape == (n,)
    assert np.isfinite(pred.mean).all() and np.isfinite(pred.std).all()
    assert ((pred.p_fail >= 0) & (pred.p_fail <= 1)).all()


def test_each_predictor_restores_from_its_state(fitted, records):
    """What a bundle keeps (the flat tensors) rebuilds the same predictions."""
    name, model, _ = fitted
    again = create(name, dict(model.config))
    again.load_state_dict(model.state_dict())
    before, after = model.predict(records[TRAIN:]), again.predict(records[TRAIN:])
    np.testing.assert_array_equal(before.mean, after.mean)
    np.testing.assert_array_equal(before.p_fail, after.p_fail)


def test_row_predictors_predict_from_their_featurisers_rows(fitted, records):
    """The service computes rows by feature_key alone (in encoder processes) and passes them
    to ``predict_features``: that must be ``predict`` of the records."""
    name, model, _ = fitted
    key = spec(name).feature_key
    if key is None:
        assert not hasattr(model, "predict_features")
        return
    rows = featurizer(key)(records[TRAIN:])
    np.testing.assert_array_equal(rows, model.featurize(records[TRAIN:]))
    np.testing.assert_array_equal(model.predict_features(rows).mean,
                                  model.predict(records[TRAIN:]).mean)


def test_each_predictor_accepts_its_own_defaults():
    for name, entry in REGISTRY.items():
        entry.cls.validate_hyperparameters(dict(entry.defaults))
        assert entry.defaults == entry.cls.defaults and entry.name == name


def test_names_auto_and_the_graph_predictors():
    assert available_models() == ("auto", *REGISTRY)
    assert model_class("auto") is REGISTRY[AUTO_MODEL].cls
    assert model_class("nope") is None
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create("nope")
    assert {"simple_gcn", "combined_gcn", "bigcn", "frnas"} <= set(GNN_MODELS)
    assert all(REGISTRY[name].feature_key is None for name in GNN_MODELS)
    assert set(REGISTRY["blend"].cls.member_classes) == {cls.name for cls in _SINGLE}


class _Unfeaturised(ExtraTreesPredictor):
    name = "unfeaturised"
    feature_key = "no-such-rows-v1"


class _Extra(ExtraTreesPredictor):
    name = "extra_trees_again"


def test_a_feature_key_without_a_featuriser_fails_when_registered():
    """Not skipped where rows are computed: the registry cannot be built."""
    assert "no-such-rows-v1" not in ROW_FEATURIZERS
    with pytest.raises(UnknownFeatureKey, match="no-such-rows-v1"):
        build_registry((*_SINGLE, _Unfeaturised))
    with pytest.raises(UnknownFeatureKey):
        featurizer("no-such-rows-v1")


def test_names_are_unique_and_auto_is_reserved():
    with pytest.raises(ValueError, match="registered twice"):
        build_registry((*_SINGLE, ExtraTreesPredictor))

    class Auto(ExtraTreesPredictor):
        name = "auto"

    with pytest.raises(ValueError, match="reserved"):
        build_registry((Auto,))


def test_a_new_predictor_is_one_more_class():
    """Adding a predictor: its class in the registry's tuple, nothing else."""
    registry = build_registry((*_SINGLE, _Extra))
    assert list(registry)[-1] == "extra_trees_again"
    assert registry["extra_trees_again"].feature_key == ExtraTreesPredictor.feature_key
    assert isinstance(registry["extra_trees_again"].cls(FAST), Predictor)
