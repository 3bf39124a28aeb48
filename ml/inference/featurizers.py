"""feature_key -> featuriser of a list of graph records (one row per record): the row models'
``featurize`` without the model, so an encoder process can compute rows without a pickled
model. The encoder pool reads the table from here only; a ``feature_key`` missing from it is
featurised in the calling process instead."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ml.models.features import tabular_features
from ml.models.trees import TreePredictor

ROW_FEATURIZERS: dict[str, Callable[[list[Any]], np.ndarray]] = {
    TreePredictor.feature_key: tabular_features,
}
