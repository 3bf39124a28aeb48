"""Names ``evaluate --model`` accepts -> fresh predictors: the registry's predictors plus the
reference floors.

The cross-validation builds one predictor per fold through a factory ``seed -> predictor`` so the
floors (:mod:`ml.evaluation.baselines`) and the learned models (:mod:`ml.models.registry`) run
under the same protocol.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ml.evaluation.baselines import BASELINES
from ml.evaluation.cv import PredictorFactory
from ml.models.registry import available_models, create


def available_predictors() -> tuple[str, ...]:
    """Every name ``evaluate --model`` accepts: the registry's models, then the floors."""
    return (*available_models(), *BASELINES)


def make_factory(name: str, metrics: Sequence[str],
                 config: dict[str, Any] | None = None) -> PredictorFactory:
    """A factory building a fresh ``name`` predictor for ``metrics`` with a given seed."""
    metrics = tuple(metrics)
    if name in BASELINES:
        cls = BASELINES[name]
        return lambda seed: cls(metrics, seed)
    if name not in available_models():
        raise ValueError(f"unknown model {name!r}; choose from {available_predictors()}")
    base = dict(config or {})
    return lambda seed: create(name, {**base, "metrics": metrics, "seed": seed})
