"""Reference predictors: the documented floors every learned predictor must beat.

* ``rf_counts`` (the floor on the real genomes): random forests on the counts of each
  primitive / helper name in the genome string. Needs records with a ``genome`` attribute (the
  evaluation loader attaches it from the CSV).
* ``ridge_onehot`` (the floor on nas-bench-graph): closed-form ridge regression
  (alpha 1, unpenalised intercept) on the record's ``op_onehot`` features (one-hot op per
  position; :mod:`ml.evaluation.nasbench_graph`).

Both implement the one predictor contract (:class:`ml.models.base.Predictor`): ``fit(train,
val)`` and ``predict(records) -> Prediction`` in original units; they are never saved as bundles.
They have no early stopping, so ``fit`` trains on train ∪ val.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from torch_geometric.data import Data

from ml.datasets.records import failed_flags, targets
from ml.genome.catalogue import HELPERS, PRIMITIVES
from ml.models.base import Prediction, Predictor

#: Feature names of ``rf_counts``, in column order.
COUNT_VOCABULARY: tuple[str, ...] = tuple(PRIMITIVES) + tuple(HELPERS)
_INDEX = {name: i for i, name in enumerate(COUNT_VOCABULARY)}
_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def primitive_counts(genome: str) -> np.ndarray:
    """How often each primitive/helper is called in a genome string (a call = ``Name(``)."""
    counts = np.zeros(len(COUNT_VOCABULARY), dtype=np.float64)
    for match in _CALL.finditer(genome):
        index = _INDEX.get(match.group(1))
        if index is not None:
            counts[index] += 1
    return counts


def _genome_text(record: Data) -> str:
    text = getattr(record, "genome", None)
    if not isinstance(text, str):
        raise ValueError("rf_counts needs records with a 'genome' string attribute")
    return text


class RandomForestCounts(Predictor):
    """The real genomes' floor: per-metric RandomForestRegressor + a failure
    RandomForestClassifier on primitive counts."""

    name = "rf_counts"

    def __init__(self, metrics: Sequence[str], seed: int = 0, n_estimators: int = 100,
                 log_targets: Sequence[str] = ()) -> None:
        super().__init__({"metrics": tuple(metrics), "seed": seed})
        self.seed = seed
        self.n_estimators = n_estimators
        self.log_targets = frozenset(log_targets)
        self._regressors: list[RandomForestRegressor | None] = []
        self._classifier: RandomForestClassifier | None = None
        self._fail_rate = 0.0
        self.history: list[dict[str, float]] = []

    @staticmethod
    def features(records: Sequence[Data]) -> np.ndarray:
        return np.stack([primitive_counts(_genome_text(r)) for r in records])

    def fit(self, train: Sequence[Data], val: Sequence[Data] | None = None,
            config: dict | None = None, callbacks: Any = None,
            resume_from: Any = None) -> dict[str, Any]:
        records = list(train) + list(val or ())
        x = self.features(records)
        y = targets(records, len(self.metrics))
        failed = failed_flags(records)
        self._regressors = []
        for m, metric in enumerate(self.metrics):
            rows = (failed == 0) & np.isfinite(y[:, m])
            if rows.sum() < 2:
                self._regressors.append(None)
                continue
            target = y[rows, m]
            if metric in self.log_targets:
                target = np.log(np.clip(target, 1e-12, None))
            model = RandomForestRegressor(n_estimators=self.n_estimators, random_state=self.seed,
                                          n_jobs=1)
            self._regressors.append(model.fit(x[rows], target))
        self._fail_rate = float(failed.mean()) if failed.size else 0.0
        self._classifier = None
        if np.unique(failed).size == 2:
            self._classifier = RandomForestClassifier(n_estimators=self.n_estimators,
                                                      random_state=self.seed, n_jobs=1)
            self._classifier.fit(x, failed.astype(int))
        return {}

    def predict(self, records: Sequence[Data]) -> Prediction:
        x = self.features(records)
        mean = np.full((len(records), len(self.metrics)), np.nan)
        std = np.full_like(mean, np.nan)
        for m, (metric, model) in enumerate(zip(self.metrics, self._regressors)):
            if model is None:
                continue
            per_tree = np.stack([tree.predict(x) for tree in model.estimators_])
            if metric in self.log_targets:
                per_tree = np.exp(per_tree)
            mean[:, m] = per_tree.mean(axis=0)
            std[:, m] = per_tree.std(axis=0)
        if self._classifier is not None:
            p_fail = self._classifier.predict_proba(x)[:, 1]
        else:
            p_fail = np.full(len(records), self._fail_rate)
        return Prediction(mean, std, p_fail)


class RidgeOneHot(Predictor):
    """nas-bench-graph's floor: closed-form ridge on ``op_onehot``, per metric, no failure
    model."""

    name = "ridge_onehot"

    def __init__(self, metrics: Sequence[str], seed: int = 0, alpha: float = 1.0) -> None:
        super().__init__({"metrics": tuple(metrics), "seed": seed})
        self.alpha = alpha
        self._coef: np.ndarray | None = None
        self.history: list[dict[str, float]] = []

    @staticmethod
    def features(records: Sequence[Data]) -> np.ndarray:
        if not records or getattr(records[0], "op_onehot", None) is None:
            raise ValueError("ridge_onehot needs records with an 'op_onehot' tensor")
        x = np.concatenate([r.op_onehot.numpy().reshape(1, -1) for r in records])
        return np.hstack([x, np.ones((len(x), 1))])  # intercept column

    def fit(self, train: Sequence[Data], val: Sequence[Data] | None = None,
            config: dict | None = None, callbacks: Any = None,
            resume_from: Any = None) -> dict[str, Any]:
        records = [r for r in list(train) + list(val or ())
                   if float(r.failed.reshape(-1)[0]) == 0]
        x = self.features(records)
        y = targets(records, len(self.metrics))
        penalty = self.alpha * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # do not shrink the intercept
        self._coef = np.linalg.solve(x.T @ x + penalty, x.T @ np.nan_to_num(y))
        return {}

    def predict(self, records: Sequence[Data]) -> Prediction:
        if self._coef is None:
            raise RuntimeError("predict before fit")
        mean = self.features(records) @ self._coef
        return Prediction(mean, None, np.zeros(len(records)))


BASELINES = {"rf_counts": RandomForestCounts, "ridge_onehot": RidgeOneHot}
