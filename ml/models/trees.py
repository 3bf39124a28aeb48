"""Tree ensembles on per-genome + op-histogram features (White et al.'s strong baseline).

``trees`` (extremely randomised trees) and ``gbt`` (histogram gradient boosting) are fitted
with scikit-learn and then flattened into plain arrays (feature, threshold, children, leaf value,
NaN direction), so the state is a flat dict of tensors (no pickle) and a bundle needs no
scikit-learn objects. Prediction walks every tree of a member (all metrics and the failure
head) in one compiled pass (:class:`CompiledForests`, :mod:`ml.models.compiled`), derived from
those arrays on first use: the service predicts thousands of cached rows per request, where a
per-tree or per-level Python loop would dominate its time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from threadpoolctl import threadpool_limits

from ml.datasets.records import as_records, labels
from ml.datasets.splits import grouped_fold_ids
from ml.datasets.splits import groups as record_groups
from ml.features.vectors import TABULAR_VERSION, tabular_features
from ml.metrics import Z95, kendall_tau_b
from ml.models.base import Prediction, Predictor, TrainingCancelled, notify, stop_requested
from ml.models.hyperparameters import COMMON, GBT, TREES
from ml.models.pretrained import GraphEmbedder
from ml.models.targets import ROBUST, TARGET_KINDS, TargetScaler

#: Standardised training targets are winsorised to +-this many robust sigmas before fitting:
#: a squared-error split criterion lets a few extreme rows dictate the tree, and a loss whose
#: bulk sits in a narrow band can have outliers hundreds of sigmas out. It applies to metrics of
#: kind "robust" only ("auto" weighs that kind against the constant-free "rank" on inner
#: folds). The measurements: docs/results.md, "Where the stack's choices came from".
TARGET_CLIP = 5.0
#: ``target_transform``: one kind for every metric, or "auto" (chosen per metric, below).
AUTO = "auto"
TARGET_TRANSFORMS: tuple[str, ...] = (AUTO, *TARGET_KINDS)
#: A member's failure head, beside its metrics' forests (also its key in a bundle's state).
FAIL = "__fail__"
#: Where a tree model's state keeps its pre-trained embedder (``embedding``), if it has one.
EMBEDDING_PREFIX = "embedding."


def inner_folds_of(groups: np.ndarray, folds: int, seed: int) -> np.ndarray | None:
    """Grouped fold ids of these rows for an inner split (``min(folds, groups)`` folds), or
    None when there are fewer than two groups."""
    folds = min(int(folds), len(set(groups.tolist())))
    if folds < 2:
        return None
    return grouped_fold_ids(groups.tolist(), folds, seed)


class FlatTrees:
    """An additive tree ensemble as arrays: ``raw(x) = baseline + sum_t leaf_t(x)``."""

    FIELDS = ("feature", "threshold", "left", "right", "value", "is_leaf", "nan_left")

    def __init__(self, arrays: dict[str, np.ndarray], roots: np.ndarray, baseline: float,
                 weight: float = 1.0) -> None:
        self.arrays = arrays
        self.roots = roots
        self.baseline = baseline
        self.weight = weight  # 1 for boosting (sum), 1/T for forests (mean)

    @classmethod
    def from_forest(cls, model: Any, positive_class: bool = False) -> FlatTrees:
        """A fitted ExtraTrees/RandomForest; classifiers keep P(class 1) in the leaves."""
        parts: dict[str, list[np.ndarray]] = {f: [] for f in cls.FIELDS}
        roots, offset = [], 0
        for est in model.estimators_:
            t = est.tree_
            roots.append(offset)
            leaf = t.children_left < 0
            value = t.value[:, 0, :]
            if positive_class:
                value = value[:, -1] / np.maximum(value.sum(axis=1), 1e-12)
                if len(model.classes_) == 1:
                    value = np.full(len(value), float(model.classes_[0]))
            else:
                value = value[:, 0]
            parts["feature"].append(np.where(leaf, 0, t.feature).astype(np.int64))
            parts["threshold"].append(t.threshold.astype(np.float64))
            parts["left"].append(np.where(leaf, 0, t.children_left).astype(np.int64) + offset)
            parts["right"].append(np.where(leaf, 0, t.children_right).astype(np.int64) + offset)
            parts["value"].append(value.astype(np.float64))
            parts["is_leaf"].append(leaf)
            parts["nan_left"].append(np.zeros(len(leaf), dtype=bool))
            offset += len(leaf)
        arrays = {f: np.concatenate(v) for f, v in parts.items()}
        return cls(arrays, np.asarray(roots, dtype=np.int64), 0.0, 1.0 / len(roots))

    @classmethod
    def from_sklearn(cls, model: Any) -> FlatTrees:
        """A fitted HistGradientBoosting model (one tree per iteration: regression / binary)."""
        # Private attributes (_predictors, _baseline_prediction): scikit-learn has no public
        # view of a boosting model's trees, so pyproject.toml pins the version that has them.
        parts: dict[str, list[np.ndarray]] = {f: [] for f in cls.FIELDS}
        roots, offset = [], 0
        for (tree,) in model._predictors:
            nodes = tree.nodes
            roots.append(offset)
            parts["feature"].append(nodes["feature_idx"].astype(np.int64))
            parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
            parts["left"].append(nodes["left"].astype(np.int64) + offset)
            parts["right"].append(nodes["right"].astype(np.int64) + offset)
            parts["value"].append(nodes["value"].astype(np.float64))
            parts["is_leaf"].append(nodes["is_leaf"].astype(bool))
            parts["nan_left"].append(nodes["missing_go_to_left"].astype(bool))
            offset += len(nodes)
        arrays = {f: np.concatenate(v) if v else np.zeros(0) for f, v in parts.items()}
        baseline = float(np.asarray(model._baseline_prediction).reshape(-1)[0])
        return cls(arrays, np.asarray(roots, dtype=np.int64), baseline)

    def compiled(self) -> CompiledForests:
        """This ensemble as a :class:`CompiledForests` (built on first use, never stored)."""
        cached = getattr(self, "_compiled", None)
        if cached is None:
            cached = self._compiled = CompiledForests((self,))
        return cached

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The ensemble's raw output per row: ``baseline + weight * sum of the rows' leaves``
        (just the baseline for an empty ensemble)."""
        return self.output(self.leaves(x))

    def output(self, leaves: np.ndarray) -> np.ndarray:
        """:meth:`raw` from the [n, trees] leaf values :meth:`leaves` returned."""
        return self.baseline + self.weight * leaves.sum(axis=1)

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """[n, trees] leaf value of every row in every tree (zero columns for an empty
        ensemble)."""
        return self.compiled().leaves(x)

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {prefix + f: torch.from_numpy(np.ascontiguousarray(v))
               for f, v in self.arrays.items()}
        out[prefix + "roots"] = torch.from_numpy(self.roots)
        out[prefix + "baseline"] = torch.tensor(self.baseline, dtype=torch.float64)
        out[prefix + "weight"] = torch.tensor(self.weight, dtype=torch.float64)
        return out

    @classmethod
    def load(cls, state: dict[str, torch.Tensor], prefix: str) -> FlatTrees:
        arrays = {f: state[prefix + f].numpy() for f in cls.FIELDS}
        return cls(arrays, state[prefix + "roots"].numpy(), float(state[prefix + "baseline"]),
                   float(state[prefix + "weight"]))


class CompiledForests:
    """Every tree of several :class:`FlatTrees` as one node table, walked in one compiled pass
    (:func:`ml.models.compiled.walk`): a row's features are read once for all the model's
    metrics and its failure head. Derived from the flat arrays (never stored), so bundles keep
    their format; leaf values are the flat arrays' own, so the walk equals a per-row one.

    ``spans[k]`` is forest ``k``'s block of columns in :meth:`leaves`."""

    def __init__(self, forests: tuple[FlatTrees, ...]) -> None:
        feature, threshold, children, nan_right, value, roots, depths = [], [], [], [], [], [], []
        self.spans: list[slice] = []
        offset = column = 0
        for flat in forests:
            a = flat.arrays
            leaf = np.asarray(a["is_leaf"], dtype=bool)
            nodes = len(leaf)
            idx = np.arange(nodes, dtype=np.int64)
            pair = np.empty((nodes, 2), dtype=np.int64)  # a leaf points to itself
            pair[:, 0] = np.where(leaf, idx, a["left"])
            pair[:, 1] = np.where(leaf, idx, a["right"])
            tree_roots = np.asarray(flat.roots, dtype=np.int64)
            # The walk is compiled without bounds checks: arrays that point outside their own
            # forest (a damaged bundle) are refused here, not read out of bounds there.
            if nodes and (pair.min() < 0 or pair.max() >= nodes or tree_roots.min() < 0
                          or tree_roots.max() >= nodes):
                raise ValueError("tree arrays point outside their forest")
            children.append(pair.reshape(-1) + offset)
            feature.append(np.where(leaf, 0, a["feature"]).astype(np.int64))
            threshold.append(np.asarray(a["threshold"], dtype=np.float64))
            nan_right.append(~np.asarray(a["nan_left"], dtype=bool))
            value.append(np.asarray(a["value"], dtype=np.float64))
            roots.append(tree_roots + offset)
            depths.append(_tree_depths(pair, leaf, tree_roots))
            self.spans.append(slice(column, column + len(tree_roots)))
            offset += nodes
            column += len(tree_roots)
        if offset >= 2 ** 30:
            raise ValueError(f"{offset} tree nodes: more than the compiled walk indexes")
        # int32 node and feature indices: half the memory traffic of int64 in the walk
        self.feature = _joined(feature, np.int32)
        self.threshold = _joined(threshold, np.float64)
        self.children = _joined(children, np.int32)
        self.nan_right = _joined(nan_right, np.bool_)
        self.value = _joined(value, np.float64)
        self.roots = _joined(roots, np.int32)
        self.depths = _joined(depths, np.int32)
        self.has_nan_left = not bool(self.nan_right.all())
        self.columns = int(self.feature.max()) + 1 if len(self.feature) else 0

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """[n, all trees] leaf value of every row in every tree, forests side by side."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < self.columns:
            raise ValueError(f"rows of shape {x.shape}: the trees split on {self.columns} columns")
        out = np.empty((len(x), len(self.roots)))
        if len(self.roots) and len(x):
            from ml.models import compiled  # numba: imported on the first prediction only
            nan_aware = self.has_nan_left and bool(np.isnan(x).any())
            compiled.by_rows(compiled.walk, x, self.feature, self.threshold, self.children,
                             self.nan_right, self.value, self.roots, self.depths, nan_aware,
                             out=out)
        return out


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dtype=dtype)


def _pooled_std(parts: list[np.ndarray]) -> np.ndarray:
    """Per row, the std over every member's trees (one member: its trees alone, no copy)."""
    return (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)).std(axis=1)


def _tree_depths(children: np.ndarray, leaf: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """Each tree's number of levels to its deepest leaf (``children`` [nodes, 2], leaves
    pointing to themselves): every row then takes exactly that many steps."""
    depths = np.zeros(len(roots), dtype=np.int64)
    tree = np.arange(len(roots), dtype=np.int64)
    frontier = roots
    inner = ~leaf[frontier]
    frontier, tree = frontier[inner], tree[inner]
    while frontier.size:  # breadth-first over internal nodes: one step per level
        if depths.max() >= len(leaf):
            raise ValueError("tree arrays hold a cycle")
        depths[tree] += 1
        frontier = children[frontier].reshape(-1)
        tree = np.repeat(tree, 2)
        inner = ~leaf[frontier]
        frontier, tree = frontier[inner], tree[inner]
    return depths


class TreePredictor(Predictor):
    """One tree regressor per metric (on transformed targets) plus a failure classifier.

    Ensembles (``ensemble`` > 1) train each member on a bootstrap resample with its own seed;
    ``std`` is the spread of member predictions. Subclasses choose the algorithm.
    """

    feature_key = f"tabular-v{TABULAR_VERSION}"
    trains_on_validation = True

    def _regressor(self, seed: int) -> Any:
        raise NotImplementedError

    def _classifier(self, seed: int) -> Any:
        raise NotImplementedError

    def _flatten(self, model: Any, classifier: bool) -> FlatTrees:
        raise NotImplementedError

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.targets = TargetScaler(self.metrics)
        self.members: list[dict[str, FlatTrees]] = []
        #: A pre-trained encoder whose embedding extends every row (``embedding``: its file,
        #: read once at fit; then it lives in this model's state, so a bundle needs no file).
        self.embedder: GraphEmbedder | None = None

    def _use_embedder(self, embedder: GraphEmbedder | None) -> None:
        """Rows with an embedding are another featurisation: another cache key."""
        self.embedder = embedder
        self.feature_key = type(self).feature_key if embedder is None else \
            f"{type(self).feature_key}+embedding-{embedder.digest()}"

    def _features(self, records: list[Any]) -> np.ndarray:
        x = tabular_features(records)
        if self.embedder is None:
            return x
        return np.hstack([x, self.embedder.embed(records)])

    def fit(self, train_records: Any, val_records: Any = None, config: dict[str, Any] | None = None,
            callbacks: Any = None, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Fit K members on the training *and* validation records: trees neither early-stop
        nor select anything on a validation split, so holding it out only costs data (grouped
        5-fold CV on the real genomes: uw_val tau .572 -> .580, AP .404 -> .410)."""
        self._update_config(config)
        path = self.config.get("embedding")
        self._use_embedder(GraphEmbedder.load(path) if path else None)
        records = as_records(train_records) + as_records(val_records)
        x = self._features(records)
        y, failed = labels(records)
        ok = ~failed
        groups = np.asarray(record_groups(records), dtype=object)
        seed = int(self.config["seed"])
        k = int(self.config["ensemble"])
        self._reset_members()
        # One thread: the fits are tiny and shared CPUs make OpenMP contention dominate.
        with threadpool_limits(1):
            self.targets = self._fit_targets(x, y, ok, groups, seed)
            raw = self.targets.transform(y)  # what a prediction is scored against (intervals)
            z = np.clip(raw, -TARGET_CLIP, TARGET_CLIP)  # what the trees are fitted on
            for member in range(k):
                if stop_requested(callbacks):
                    raise TrainingCancelled(member, None)
                self.members.append(self._fit_member(x, z, raw, failed, ok, groups,
                                                     seed + member, k > 1))
                notify(callbacks, member, {"member": float(member)})
        return {"epochs": [], "members": k, "target_kind": dict(zip(self.metrics,
                                                                    self.targets.kinds)),
                "target_kind_inner_kendall_tau": self.kind_scores}

    def _reset_members(self) -> None:
        self.members = []
        self.kind_scores: dict[str, dict[str, float]] = {}

    def _fit_targets(self, x: np.ndarray, y: np.ndarray, ok: np.ndarray, groups: np.ndarray,
                     seed: int) -> TargetScaler:
        """The target scaler: ``target_transform``'s kind for every metric, or with "auto"
        per metric the kind whose inner out-of-fold predictions rank its rows best
        (:meth:`_inner_score`, Kendall tau-b; "robust" on a tie or when nothing could be
        scored). Only the training rows decide (nested under any outer evaluation)."""
        setting = str(self.config.get("target_transform", ROBUST))
        if setting != AUTO:
            return TargetScaler(self.metrics, (setting,) * len(self.metrics)).fit(y[ok])
        candidates = {kind: TargetScaler(self.metrics, (kind,) * len(self.metrics)).fit(y[ok])
                      for kind in TARGET_KINDS}
        chosen = []
        for j, metric in enumerate(self.metrics):
            rows = ok & np.isfinite(y[:, j])
            scores = {}
            for kind, scaler in candidates.items():
                z = np.clip(scaler.transform(y[rows])[:, j], -TARGET_CLIP, TARGET_CLIP)
                scores[kind] = self._inner_score(j, kind, x[rows], z, groups[rows], seed)
            finite = {kind: v for kind, v in scores.items() if np.isfinite(v)}
            chosen.append(max(finite, key=lambda kind: (finite[kind], kind == ROBUST))
                          if finite else ROBUST)
            self.kind_scores[metric] = scores
        return TargetScaler(self.metrics, chosen).fit(y[ok])

    def _inner_score(self, j: int, kind: str, x: np.ndarray, z: np.ndarray,
                     groups: np.ndarray, seed: int) -> float:
        """Kendall tau-b of out-of-fold predictions of ``z`` on ``inner_folds`` grouped folds
        of these rows (NaN when there are too few groups)."""
        fold = inner_folds_of(groups, int(self.config["inner_folds"]), seed)
        if fold is None:
            return float("nan")
        pred = np.empty(len(z))
        for f in range(int(fold.max()) + 1):
            test = fold == f
            pred[test] = self._inner_regressor(seed + 1 + f).fit(x[~test], z[~test]) \
                .predict(x[test])
        return kendall_tau_b(z, pred)

    def _inner_regressor(self, seed: int) -> Any:
        """The regressor of the inner folds (the model's own by default)."""
        return self._regressor(seed)

    def _fit_metric(self, j: int, x: np.ndarray, z: np.ndarray, raw: np.ndarray,
                    groups: np.ndarray, seed: int) -> FlatTrees:
        """One metric's regressor on its usable rows: fitted on the winsorised ``z``; ``raw``
        holds the same rows' unclipped standardised targets (``groups``: their grouping
        keys)."""
        return self._flatten(self._regressor(seed).fit(x, z), False)

    def _fit_member(self, x: np.ndarray, z: np.ndarray, raw: np.ndarray, failed: np.ndarray,
                    ok: np.ndarray, groups: np.ndarray, seed: int,
                    bootstrap: bool) -> dict[str, FlatTrees]:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(x), len(x)) if bootstrap else np.arange(len(x))
        trees: dict[str, FlatTrees] = {}
        for j, metric in enumerate(self.metrics):
            rows = idx[ok[idx] & np.isfinite(z[idx, j])]
            trees[metric] = self._fit_metric(j, x[rows], z[rows, j], raw[rows, j], groups[rows],
                                             seed)
        if failed[idx].any() and not failed[idx].all():
            clf = self._classifier(seed).fit(x[idx], failed[idx].astype(int))
            trees[FAIL] = self._flatten(clf, True)
        else:
            rate = float(np.clip(failed[idx].mean(), 1e-4, 1 - 1e-4))
            constant = rate if self.fail_is_probability else float(np.log(rate / (1 - rate)))
            trees[FAIL] = FlatTrees({f: np.zeros(0) for f in FlatTrees.FIELDS},
                                          np.zeros(0, dtype=np.int64), constant)
        return trees

    def _p_fail(self, flat: FlatTrees, leaves: np.ndarray) -> np.ndarray:
        """P(failure) from the failure head's [n, trees] leaves."""
        raw = flat.output(leaves)
        if self.fail_is_probability:  # forests average leaf probabilities
            return np.clip(raw, 0.0, 1.0)
        return 1.0 / (1.0 + np.exp(-raw))  # boosting sums logits

    fail_is_probability = False

    def featurize(self, records: Any) -> np.ndarray:
        """The design matrix: a function of each genome alone (rows can be cached per genome)."""
        return self._features(as_records(records))

    def predict(self, records: Any) -> Prediction:
        return self.predict_features(self.featurize(records))

    #: Forests: each tree is a draw of the same randomised predictor, so the spread of the
    #: trees' predictions (original units, pooled over members) is the uncertainty, as in
    #: SMAC's random-forest surrogate. Boosting's trees are additive terms, not predictions:
    #: there only ensemble members (``ensemble`` > 1) give a spread.
    tree_spread = False

    def _compiled(self, member: int) -> CompiledForests:
        """Member ``member``'s forests (each metric's, then the failure head's) walked together,
        built on the first prediction after a fit or a load and kept while the member's
        :class:`FlatTrees` are the same objects."""
        trees = self.members[member]
        forests = tuple(trees[key] for key in (*self.metrics, FAIL))
        cache: dict[int, tuple[tuple[FlatTrees, ...], CompiledForests]] = \
            self.__dict__.setdefault("_compiled_members", {})
        hit = cache.get(member)
        if hit is None or len(hit[0]) != len(forests) or \
                any(a is not b for a, b in zip(hit[0], forests)):
            hit = cache[member] = (forests, CompiledForests(forests))
        return hit[1]

    def _member_context(self, member: int, x: np.ndarray) -> Any:
        """What a member's metrics need besides their trees' leaves (none here)."""
        return None

    def _metric_z(self, member: int, j: int, leaves: np.ndarray,
                  context: Any) -> tuple[np.ndarray, np.ndarray]:
        """Member ``member``'s standardised prediction of metric ``j`` [n] and each of its
        trees' predictions [n, trees] (a forest's leaf value is that tree's prediction), from
        the forest's [n, trees] ``leaves``."""
        return self.members[member][self.metrics[j]].output(leaves), leaves

    def predict_features(self, x: np.ndarray) -> Prediction:
        """Predict from :meth:`featurize` rows (the service passes cached rows)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        means, fails, centres = [], [], []
        per_tree: list[list[np.ndarray]] = [[] for _ in self.metrics]
        per_tree_z: list[list[np.ndarray]] = [[] for _ in self.metrics]
        for member, trees in enumerate(self.members):
            forests = self._compiled(member)
            leaves = forests.leaves(x)
            context = self._member_context(member, x)
            columns = []
            for j in range(len(self.metrics)):
                z, each = self._metric_z(member, j, leaves[:, forests.spans[j]], context)
                columns.append(z)
                if self.tree_spread:
                    per_tree[j].append(self.targets.inverse_column(each, j))
                    per_tree_z[j].append(each)
            centres.append(np.stack(columns, axis=1))
            means.append(self.targets.inverse(centres[-1]))
            fails.append(self._p_fail(trees[FAIL], leaves[:, forests.spans[-1]]))
        stack = np.stack(means)
        interval = None
        if self.tree_spread and self.members:
            std = np.stack([_pooled_std(p) for p in per_tree], axis=1)
            z_std = np.stack([_pooled_std(p) for p in per_tree_z], axis=1)
            interval = self.z_interval(np.mean(centres, axis=0), z_std)
        else:
            std = stack.std(axis=0) if len(means) > 1 else None
        return Prediction(stack.mean(axis=0), std, np.mean(fails, axis=0), self.metrics,
                          interval)

    def z_interval(self, centre: np.ndarray, z_std: np.ndarray) -> np.ndarray:
        """The 95 % interval where the targets are modelled (standardised, log1p for heavy
        tails): ``centre ± Z95 · spread`` there, each bound mapped back to original units (the
        map is increasing, so the coverage carries over). [n, M, 2]. A log-modelled metric's
        interval stays positive and skewed, where ``mean ± 1.96 std`` in original units would
        span tens of thousands below zero."""
        lo, hi = centre - Z95 * z_std, centre + Z95 * z_std
        bounds = np.stack([np.stack([self.targets.inverse_column(lo[:, j], j),
                                     self.targets.inverse_column(hi[:, j], j)], axis=1)
                           for j in range(len(self.metrics))], axis=1)
        # log1p is fitted on non-negative values: below zero is outside the metric's range.
        bounds[:, self.targets.use_log] = np.maximum(bounds[:, self.targets.use_log], 0.0)
        return bounds

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = self.targets.state()
        state["members"] = torch.tensor(len(self.members))
        for i, trees in enumerate(self.members):
            for key, flat in trees.items():
                state.update(flat.state(f"m{i}.{key}."))
        if self.embedder is not None:
            state.update(self.embedder.state(EMBEDDING_PREFIX))
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.targets = TargetScaler(self.metrics)
        self.targets.load(state)
        self.members = [{key: FlatTrees.load(state, f"m{i}.{key}.")
                         for key in (*self.metrics, FAIL)}
                        for i in range(int(state["members"]))]
        self._use_embedder(GraphEmbedder.from_state(state, EMBEDDING_PREFIX)
                           if EMBEDDING_PREFIX + "meta" in state else None)

    def normalisation(self) -> dict[str, Any]:
        features = "tabular_features (raw; trees)"
        if self.embedder is not None:
            features += f" + {self.embedder.dims} pre-trained embedding columns"
        return {"targets": self.targets.describe(), "features": features}


class ExtraTreesPredictor(TreePredictor):
    """Extremely randomised trees: robust and fast on ~250 genomes; the tree member of
    ``stack`` (the default), which blends them with a kernel SVR."""

    name = "trees"
    #: Raised whenever what a fitted model expects (features, targets) changes: a bundle of
    #: another version is refused (``ml.train.bundle.bundle_problem``), never misread
    #: (history: docs/results.md).
    version = 5
    defaults = {"n_estimators": 200, "min_samples_leaf": 3, "max_features": 0.5,
                "target_transform": AUTO, "inner_folds": 4, "inner_estimators": 100,
                "embedding": None}
    hyperparameters = {**COMMON, **TREES}
    fail_is_probability = True
    tree_spread = True

    def _kw(self, seed: int) -> dict[str, Any]:
        c = self.config
        return {"n_estimators": int(c["n_estimators"]),
                "min_samples_leaf": int(c["min_samples_leaf"]),
                "max_features": float(c["max_features"]), "n_jobs": 1, "random_state": seed}

    def _regressor(self, seed: int) -> Any:
        return ExtraTreesRegressor(**self._kw(seed))

    def _inner_regressor(self, seed: int) -> Any:
        # never more trees than the model itself: a 5-tree fit should not score its kinds with 100
        n = min(int(self.config["inner_estimators"]), int(self.config["n_estimators"]))
        return ExtraTreesRegressor(**{**self._kw(seed), "n_estimators": n})

    def _classifier(self, seed: int) -> Any:
        return ExtraTreesClassifier(**self._kw(seed))

    def _flatten(self, model: Any, classifier: bool) -> FlatTrees:
        return FlatTrees.from_forest(model, positive_class=classifier)


class GBTPredictor(TreePredictor):
    """Histogram gradient boosting (leaves hold additive logits / standardised targets)."""

    name = "gbt"
    #: As ``trees``. ``target_transform`` defaults to "robust": "auto" refits the boosting for
    #: each kind and inner fold of every metric, an order of magnitude slower to fit.
    version = 5
    defaults = {"max_iter": 300, "learning_rate": 0.04, "max_depth": 3, "min_samples_leaf": 8,
                "l2_regularization": 1.0, "max_features": 0.5, "target_transform": ROBUST,
                "inner_folds": 4, "embedding": None}
    hyperparameters = {**COMMON, **GBT}

    def _kw(self, seed: int) -> dict[str, Any]:
        c = self.config
        return {"max_iter": int(c["max_iter"]), "learning_rate": float(c["learning_rate"]),
                "max_depth": int(c["max_depth"]), "min_samples_leaf": int(c["min_samples_leaf"]),
                "l2_regularization": float(c["l2_regularization"]),
                "max_features": float(c["max_features"]), "early_stopping": False,
                "random_state": seed}

    def _regressor(self, seed: int) -> Any:
        return HistGradientBoostingRegressor(**self._kw(seed))

    def _classifier(self, seed: int) -> Any:
        return HistGradientBoostingClassifier(**self._kw(seed))

    def _flatten(self, model: Any, classifier: bool) -> FlatTrees:
        return FlatTrees.from_sklearn(model)
