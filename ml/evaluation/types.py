"""The value types evaluation passes around (kept apart so baselines and CV share them)."""
from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence

import numpy as np
from torch_geometric.data import Data


class Prediction(NamedTuple):
    """A predictor's output in original units: mean [n, M], std [n, M] or None, p_fail [n]."""

    mean: np.ndarray
    std: np.ndarray | None
    p_fail: np.ndarray


class Predictor(Protocol):
    """What the cross-validation drives; the models package's predictors are adapted to this."""

    def fit(self, train: Sequence[Data], val: Sequence[Data], config: dict | None,
            callbacks: Sequence[Any]) -> Any: ...

    def predict(self, records: Sequence[Data]) -> Prediction: ...
