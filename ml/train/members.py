"""The single predictors by name: every model that is not built out of other predictors. A
composite (``blend``) chooses its members here, and :mod:`ml.train.catalog` adds the composites
on top, so neither needs the other's module (no import cycle)."""
from __future__ import annotations

from typing import Any

from ml.models.base import Predictor
from ml.models.stack import StackedPredictor
from ml.models.trees import ExtraTreesPredictor, GBTPredictor
from ml.train.hierarchical import HierarchicalGNNPredictor
from ml.train.neural import GNN_MODELS

MEMBERS: dict[str, type[Predictor]] = {
    "stack": StackedPredictor, "trees": ExtraTreesPredictor, "gbt": GBTPredictor, **GNN_MODELS,
    HierarchicalGNNPredictor.name: HierarchicalGNNPredictor}


def create_member(name: str, config: dict[str, Any] | None = None) -> Predictor:
    if name not in MEMBERS:
        raise ValueError(f"{name!r} is not a single predictor; choose from {list(MEMBERS)}")
    return MEMBERS[name](config)
