"""Test oracles of the row models' fast predictions: the straightforward per-row tree walk, and
scikit-learn's own predictions (the fitted estimators, kept aside while a model fits)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from ml.models import kernel as kernel_module
from ml.models.kernel import KernelSVR
from ml.models.stack import StackedPredictor
from ml.models.trees import FAIL, FlatTrees, TreePredictor


def raw_reference(flat: FlatTrees, x: np.ndarray) -> np.ndarray:
    """The straightforward per-sample traversal :meth:`FlatTrees.raw` must match."""
    a = flat.arrays
    if len(flat.roots) == 0:
        return np.full(len(x), flat.baseline)
    n, t = len(x), len(flat.roots)
    node = np.tile(flat.roots, n)                 # [n * t], row-major by sample
    row = np.repeat(np.arange(n), t)
    active = np.flatnonzero(~a["is_leaf"][node])
    while active.size:
        cur = node[active]
        value = x[row[active], a["feature"][cur]]
        go_left = np.where(np.isnan(value), a["nan_left"][cur], value <= a["threshold"][cur])
        nxt = np.where(go_left, a["left"][cur], a["right"][cur])
        node[active] = nxt
        active = active[~a["is_leaf"][nxt]]
    leaves = a["value"][node].reshape(n, t)
    return flat.baseline + flat.weight * leaves.sum(axis=1)


@contextlib.contextmanager
def keeping_sklearn(monkeypatch: Any) -> Iterator[None]:
    """While fitting: every flattened ensemble keeps its scikit-learn estimator (``.sklearn``)
    and every kernel its fitted ``SVR`` (``.sklearn``), for :func:`sklearn_prediction`."""
    fitted: list[Any] = []

    class RecordingSVR(kernel_module.SVR):
        def fit(self, *args: Any, **kwargs: Any) -> Any:
            fitted.append(self)
            return super().fit(*args, **kwargs)

    kernel_fit = KernelSVR.fit.__func__  # type: ignore[attr-defined]

    def fit_kernel(cls: type, *args: Any, **kwargs: Any) -> KernelSVR:
        fitted.clear()
        model = kernel_fit(cls, *args, **kwargs)
        model.sklearn = fitted[-1] if fitted else None
        return model

    def wrap(flatten: Any) -> Any:
        def keep(self: TreePredictor, model: Any, classifier: bool) -> FlatTrees:
            flat = flatten(self, model, classifier)
            flat.sklearn = model
            return flat
        return keep

    monkeypatch.setattr(kernel_module, "SVR", RecordingSVR)
    monkeypatch.setattr(KernelSVR, "fit", classmethod(fit_kernel))
    for cls in set(_tree_classes()):
        monkeypatch.setattr(cls, "_flatten", wrap(cls.__dict__["_flatten"]))
    yield


def _tree_classes() -> list[type]:
    from ml.models.trees import ExtraTreesPredictor, GBTPredictor
    return [ExtraTreesPredictor, GBTPredictor]


class _SklearnForests:
    """Stands in for :class:`ml.models.trees.CompiledForests`: each tree's prediction from
    scikit-learn (a forest's tree predicts its leaf value; a boosting model only its sum)."""

    def __init__(self, forests: tuple[FlatTrees, ...]) -> None:
        self.forests = forests
        self.spans, column = [], 0
        for flat in forests:
            self.spans.append(slice(column, column + len(flat.roots)))
            column += len(flat.roots)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        parts = []
        for flat in self.forests:
            model = getattr(flat, "sklearn", None)
            if model is None:  # a constant failure head: no trees
                parts.append(np.zeros((len(x), 0)))
            elif hasattr(model, "estimators_"):
                parts.append(np.stack([_tree_value(tree, x, model) for tree in model.estimators_],
                                      axis=1))
            else:
                raise TypeError("boosting has no per-tree predictions; compare raw outputs")
        return np.concatenate(parts, axis=1)


def _tree_value(tree: Any, x: np.ndarray, forest: Any) -> np.ndarray:
    if hasattr(tree, "predict_proba"):
        if len(forest.classes_) == 1:
            return np.full(len(x), float(forest.classes_[0]))
        return tree.predict_proba(x)[:, -1]
    return tree.predict(x)


def sklearn_prediction(model: TreePredictor, x: np.ndarray, monkeypatch: Any) -> Any:
    """``model.predict_features(x)`` with every tree's and every SVR's prediction taken from the
    scikit-learn estimators :func:`keeping_sklearn` kept (the rest of ``predict``: blend, spread
    scale, inverse targets, intervals, P(failure), is the model's own)."""
    with monkeypatch.context() as patch:
        patch.setattr(model, "_compiled",
                      lambda member: _SklearnForests(tuple(model.members[member][k]
                                                           for k in (*model.metrics, FAIL))))
        if isinstance(model, StackedPredictor):
            def svr(member: int, rows: np.ndarray) -> np.ndarray:
                kernels = [model.blends[member][m].kernel for m in model.metrics]
                return np.stack([k.sklearn.predict(k.transform(rows)) for k in kernels], axis=1)
            patch.setattr(model, "_member_context", svr)
        return model.predict_features(x)
