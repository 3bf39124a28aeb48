"""Which function computes the rows of each ``feature_key``: the row predictors' ``featurize``
without the model.

A row predictor names its rows by ``feature_key`` (the service caches rows under it, and the
encoder processes compute them from the key alone, so no model is ever pickled). Every key a
registered predictor declares must be in :data:`ROW_FEATURIZERS`; the predictor registry
(:mod:`ml.models.registry`) checks it when it is built, so a key without a featuriser fails at
import rather than being skipped where rows are computed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ml.features.vectors import TABULAR_VERSION, tabular_features

#: A list of graph records -> one feature row per record ([n, d]).
Featurizer = Callable[[list[Any]], np.ndarray]

#: The key of :func:`~ml.features.vectors.tabular_features` rows (trees, gbt, stack); it
#: changes with :data:`~ml.features.vectors.TABULAR_VERSION`, so rows cached under an older
#: version are never reused.
TABULAR_KEY = f"tabular-v{TABULAR_VERSION}"

#: feature_key -> featuriser of a list of graph records.
ROW_FEATURIZERS: dict[str, Featurizer] = {
    TABULAR_KEY: tabular_features,
}


class UnknownFeatureKey(LookupError):
    """A ``feature_key`` with no entry in :data:`ROW_FEATURIZERS`."""

    code = "UNKNOWN_FEATURE_KEY"

    def __init__(self, feature_key: str) -> None:
        super().__init__(f"no featuriser for feature_key {feature_key!r}; add it to "
                         f"ml.features.featurizers.ROW_FEATURIZERS (known: "
                         f"{sorted(ROW_FEATURIZERS)})")
        self.feature_key = feature_key


def featurizer(feature_key: str) -> Featurizer:
    """The featuriser of ``feature_key``; :class:`UnknownFeatureKey` when there is none."""
    try:
        return ROW_FEATURIZERS[feature_key]
    except KeyError:
        raise UnknownFeatureKey(feature_key) from None
