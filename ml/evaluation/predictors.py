"""Predictor names -> fresh predictors: the training catalog plus the reference floors.

The cross-validation builds one predictor per fold through a factory ``seed -> predictor`` so the
floors (:mod:`ml.evaluation.baselines`) and the learned models (:func:`ml.train.catalog.create`)
run under the same protocol.
"""
from __future__ import annotations

from typing import Any, Sequence

from ml.evaluation.baselines import BASELINES
from ml.evaluation.cv import PredictorFactory


def _registry() -> tuple[str, ...]:
    from ml.train.catalog import available_models
    return tuple(available_models())


def available_predictors() -> tuple[str, ...]:
    """Every name ``evaluate --model`` accepts: the registry's models, then the floors."""
    return (*_registry(), *BASELINES)


def make_factory(name: str, metrics: Sequence[str],
                 config: dict[str, Any] | None = None) -> PredictorFactory:
    """A factory building a fresh ``name`` predictor for ``metrics`` with a given seed."""
    metrics = tuple(metrics)
    if name in BASELINES:
        cls = BASELINES[name]
        return lambda seed: cls(metrics, seed)
    if name not in _registry():
        raise ValueError(f"unknown model {name!r}; choose from {available_predictors()}")
    from ml.train.catalog import create

    base = dict(config or {})
    return lambda seed: create(name, {**base, "metrics": metrics, "seed": seed})
