"""``stack``: extremely randomised trees blended with a kernel SVR, per metric (the default).

Both members see the same feature rows (:func:`ml.features.vectors.tabular_features`) and the
same targets per metric (standardised and winsorised, or normal scores of the ranks: the
metric's *kind*, :mod:`ml.models.targets`); the blend is ``w * trees + (1 - w) * svr`` in that
space, then inverted to original units. The trees cut on single columns, the SVR
(:mod:`ml.models.kernel`) compares whole genomes, so they err differently and their blend ranks
better than either, most where data are fewest (White et al.'s OMNI point: combine simple
predictors).

Every choice from data is made on ``inner_folds`` grouped folds of the training rows (nested
under any outer evaluation, so no choice sees the rows it is scored on): per metric, the target
kind and ``w`` (``tree_weights``, default 0.25 to 1 in quarters) that give the out-of-fold blend
the best Kendall tau-b, on one set of out-of-fold predictions per kind (``target_transform``
"robust" or "rank" fixes the kind). The trees always keep some weight because their spread is
the stack's uncertainty: at ``w`` = 0 the interval would shrink to a point.

Uncertainty: each tree's prediction is blended with the SVR's (``w * tree + (1 - w) * svr``)
and the spread of those around the mean is scaled by ``spread_scale`` before going back to
original units; ``std`` is the spread there. The raw spread is epistemic only, and narrower once
blended, so it under-covers; the scale is split-conformal, from the same inner folds: the 95th
percentile of |out-of-fold residual| / out-of-fold spread, over 1.96, so that mean +- 1.96 std
covers about 95 % of held-out rows.

The residuals are taken against the *unclipped* standardised targets (``raw`` in
``_fit_metric``), the values coverage is scored on, while the trees, the SVR and the weight choice
keep the winsorised ones (the mean is unchanged): against the clipped targets a row beyond
``TARGET_CLIP`` looks like a residual of a few sigmas, so the scale could never cover it, and a
heavy-tailed metric's coverage would stop at the share of rows inside the clip.

The measurements behind these choices (grid, kinds, coverage before and after the scale):
docs/results.md, "Where the stack's choices came from".
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ml.features.vectors import FEATURE_BLOCKS
from ml.metrics import Z95, kendall_tau_b
from ml.models.hyperparameters import COMMON, STACK
from ml.models.kernel import KernelSet, KernelSVR
from ml.models.trees import ExtraTreesPredictor, FlatTrees, inner_folds_of

#: Coverage the spread scale aims for, and the largest scale it may take (a finite bound when
#: the out-of-fold spread is near zero).
TARGET_COVERAGE = 0.95
MAX_SPREAD_SCALE = 1e3


def blend_scores(z: np.ndarray, tree: np.ndarray, kernel: np.ndarray,
                 weights: tuple[float, ...]) -> dict[float, float]:
    """Kendall tau-b of ``w * tree + (1 - w) * kernel`` against ``z`` for each tree weight."""
    return {w: kendall_tau_b(z, w * tree + (1.0 - w) * kernel) for w in weights}


def pick_weight(scores: dict[float, float]) -> float:
    """The best-scoring weight (the first in grid order on a tie); the largest tree weight when
    no blend could be scored (a constant target, too few rows)."""
    finite = {w: s for w, s in scores.items() if np.isfinite(s)}
    if not finite:
        return max(scores)
    return max(finite, key=lambda w: (finite[w], -list(scores).index(w)))


def spread_scale(z: np.ndarray, mean: np.ndarray, spread: np.ndarray,
                 coverage: float = TARGET_COVERAGE) -> float:
    """Split-conformal scale of a spread: ``mean +- Z95 * scale * spread`` holds ``coverage`` of
    these held-out rows (the ``coverage`` quantile of |residual| / spread, over Z95). 1 when
    no row has a positive spread.

    ``z`` must be what the interval is scored against: the *unclipped* standardised targets,
    not the winsorised ones the trees are fitted on (a row beyond ``TARGET_CLIP`` looks like
    a small residual there, so the scale could never cover it). Rows with zero spread (all
    inner trees agree; a few per mille of inner rows) are left out: counting them as never
    covered widens every interval of the metric for almost no coverage (docs/results.md)."""
    usable = spread > 0
    if not usable.any():
        return 1.0
    ratio = np.abs(z[usable] - mean[usable]) / spread[usable]
    return float(min(np.quantile(ratio, coverage) / Z95, MAX_SPREAD_SCALE))


@dataclass
class MetricBlend:
    """One metric's partner SVR, the trees' blend weight and the spread's conformal scale."""

    kernel: KernelSVR
    tree_weight: float = 1.0
    spread_scale: float = 1.0
    inner_scores: dict[float, float] = field(default_factory=dict)


class StackedPredictor(ExtraTreesPredictor):
    """Per metric: an ExtraTrees forest (``members``) and a :class:`MetricBlend` (``blends``)."""

    name = "stack"
    #: Raised whenever what a fitted model expects changes (see ``ExtraTreesPredictor.version``).
    version = 2
    defaults = {**ExtraTreesPredictor.defaults, "min_samples_leaf": 2, "svr_c": 1.0,
                "svr_epsilon": 0.1, "tree_weights": (0.25, 0.5, 0.75, 1.0)}
    hyperparameters = {**COMMON, **STACK}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.blends: list[dict[str, MetricBlend]] = []
        self._inner_cache: dict[bytes, tuple[np.ndarray, ...] | None] = {}

    def _reset_members(self) -> None:
        super()._reset_members()
        self.blends = []
        self._inner_cache = {}

    def _fit_member(self, x: np.ndarray, z: np.ndarray, raw: np.ndarray, failed: np.ndarray,
                    ok: np.ndarray, groups: np.ndarray, seed: int,
                    bootstrap: bool) -> dict[str, FlatTrees]:
        self.blends.append({})
        return super()._fit_member(x, z, raw, failed, ok, groups, seed, bootstrap)

    def _kernel(self, x: np.ndarray, z: np.ndarray) -> KernelSVR:
        blocks = FEATURE_BLOCKS
        if self.embedder is not None:  # the embedding weighs as one more family
            blocks = (*blocks, ("embedding", slice(x.shape[1] - self.embedder.dims, None)))
        return KernelSVR.fit(x, z, c=float(self.config["svr_c"]),
                             epsilon=float(self.config["svr_epsilon"]), blocks=blocks)

    def _inner_predictions(self, x: np.ndarray, z: np.ndarray, groups: np.ndarray,
                           seed: int) -> tuple[np.ndarray, ...] | None:
        """Out-of-fold forest mean, forest spread (std over its trees) and SVR prediction on
        grouped folds of these rows; None when there are too few groups for two folds.
        Remembered for the fit (the target-kind choice and the member fit ask for the same
        rows and targets)."""
        key = hashlib.blake2b(b"".join(np.ascontiguousarray(a).tobytes()
                                       for a in (x, z, np.asarray(groups, dtype=str)))
                              + str(seed).encode(), digest_size=16).digest()
        if key not in self._inner_cache:
            self._inner_cache[key] = self._inner_fit(x, z, groups, seed)
        return self._inner_cache[key]

    def _inner_score(self, j: int, kind: str, x: np.ndarray, z: np.ndarray,
                     groups: np.ndarray, seed: int) -> float:
        """The best blend's inner Kendall tau-b for this target kind (the kind and the weight
        are chosen on the same out-of-fold predictions)."""
        inner = self._inner_predictions(x, z, groups, seed)
        if inner is None:
            return float("nan")
        tree, _, kernel = inner
        scores = blend_scores(z, tree, kernel, tuple(float(w) for w in
                                                     self.config["tree_weights"]))
        finite = [v for v in scores.values() if np.isfinite(v)]
        return max(finite) if finite else float("nan")

    def _inner_fit(self, x: np.ndarray, z: np.ndarray, groups: np.ndarray,
                   seed: int) -> tuple[np.ndarray, ...] | None:
        fold = inner_folds_of(groups, int(self.config["inner_folds"]), seed)
        if fold is None:
            return None
        folds = int(fold.max()) + 1
        tree, spread, kernel = np.empty(len(z)), np.empty(len(z)), np.empty(len(z))
        for f in range(folds):
            test = fold == f
            forest = self._inner_regressor(seed + 1 + f).fit(x[~test], z[~test])
            each = np.stack([t.predict(x[test]) for t in forest.estimators_], axis=1)
            tree[test], spread[test] = each.mean(axis=1), each.std(axis=1)
            kernel[test] = self._kernel(x[~test], z[~test]).predict(x[test])
        return tree, spread, kernel

    def _fit_metric(self, j: int, x: np.ndarray, z: np.ndarray, raw: np.ndarray,
                    groups: np.ndarray, seed: int) -> FlatTrees:
        weights = tuple(float(w) for w in self.config["tree_weights"])
        blend = MetricBlend(self._kernel(x, z), tree_weight=max(weights))
        inner = self._inner_predictions(x, z, groups, seed)
        if inner is not None:
            tree, spread, kernel = inner
            blend.inner_scores = blend_scores(z, tree, kernel, weights)
            w = blend.tree_weight = pick_weight(blend.inner_scores)
            blend.spread_scale = spread_scale(raw, w * tree + (1.0 - w) * kernel, w * spread)
        self.blends[-1][self.metrics[j]] = blend
        return super()._fit_metric(j, x, z, raw, groups, seed)

    def _per_metric(self, key: str) -> dict[str, list[float]]:
        """``{metric: [each member's MetricBlend.<key>]}`` (history and normalisation.json)."""
        return {m: [getattr(b[m], key) for b in self.blends] for m in self.metrics}

    def fit(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        history = super().fit(*args, **kwargs)
        for key in ("tree_weight", "spread_scale"):
            history[key] = self._per_metric(key)
        history["inner_kendall_tau"] = {
            m: [{str(w): s for w, s in b[m].inner_scores.items()} for b in self.blends]
            for m in self.metrics}
        return history

    def _member_context(self, member: int, x: np.ndarray) -> np.ndarray:
        """The member's SVR predictions [n, M], every metric's in one kernel sum
        (:class:`ml.models.kernel.KernelSet`), built on first use like its compiled forests."""
        kernels = tuple(self.blends[member][m].kernel for m in self.metrics)
        cache: dict[int, tuple[tuple[KernelSVR, ...], KernelSet]] = \
            self.__dict__.setdefault("_kernel_sets", {})
        hit = cache.get(member)
        if hit is None or any(a is not b for a, b in zip(hit[0], kernels)):
            hit = cache[member] = (kernels, KernelSet(kernels))
        return hit[1].predict(x)

    def _metric_z(self, member: int, j: int, leaves: np.ndarray,
                  context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tree, each = super()._metric_z(member, j, leaves, context)
        blend = self.blends[member][self.metrics[j]]
        w = blend.tree_weight
        mean = w * tree + (1.0 - w) * context[:, j]
        # mean + scale * (w * (each - tree)): each tree, blended, minus the blended mean,
        # spread-scaled around the mean (in place: the same operations, one array)
        scaled = np.subtract(each, tree[:, None])
        scaled *= w
        scaled *= blend.spread_scale
        scaled += mean[:, None]
        return mean, scaled

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = super().state_dict()
        for i, blends in enumerate(self.blends):
            for metric, blend in blends.items():
                prefix = f"m{i}.{metric}."
                state.update(blend.kernel.state(prefix + "svr."))
                state[prefix + "tree_weight"] = torch.tensor(blend.tree_weight,
                                                             dtype=torch.float64)
                state[prefix + "spread_scale"] = torch.tensor(blend.spread_scale,
                                                              dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self.blends = [{m: MetricBlend(KernelSVR.load(state, f"m{i}.{m}.svr."),
                                       float(state[f"m{i}.{m}.tree_weight"]),
                                       float(state[f"m{i}.{m}.spread_scale"]))
                        for m in self.metrics}
                       for i in range(len(self.members))]

    def normalisation(self) -> dict[str, Any]:
        return {**super().normalisation(),
                "kernel": "per-block standardised tabular_features (ml.models.kernel)",
                "tree_weight": self._per_metric("tree_weight"),
                "spread_scale": self._per_metric("spread_scale")}
