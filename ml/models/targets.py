"""Per-metric target standardisation that survives heavy tails and inverts exactly.

Rule (fitted on the non-failed training rows of each metric):

* metrics whose training values are all >= 0 and heavy-tailed (lower-is-better losses, or
  max/median > 20 with a positive median) get ``log1p`` first: a loss whose maximum is
  thousands of times its median would, on a raw scale, let a handful of rows dominate an
  L2/Huber loss;
* then robust centring/scaling: ``(t - median) / (IQR / 1.349)`` (the IQR of a normal is
  1.349 sigma), falling back to the standard deviation, then 1, when the IQR is zero.

``inverse`` undoes both steps, so predictions come back in original units.

A metric may instead be modelled as **normal scores** (``kind`` "rank"): ``z = Phi^-1(F(t))``
with ``F`` the training rows' mid-rank empirical CDF (ties share one score), linear between
training values and clamped at their ends; the inverse interpolates back onto the training
values. It keeps the whole order, the top included, where the robust scale needs a
winsorising constant (``ml.models.trees.TARGET_CLIP``) that flattens it: a metric that is 0
for many genomes and spans orders of magnitude above its middle half puts all its best values
on the clip, where the trees cannot tell them apart. The tree models choose the kind per
metric on inner folds of their training rows (``ml.models.trees``); the figures behind the rule
are in docs/results.md ("Where the stack's choices came from").
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import norm

from ml.datasets.labels import DIRECTIONS

#: The per-metric target kinds: robust standardisation, or normal scores of the ranks.
ROBUST, RANK = "robust", "rank"
TARGET_KINDS: tuple[str, ...] = (ROBUST, RANK)


def normal_scores(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(knots, scores)``: the distinct ``values`` ascending and the normal score of each,
    ``Phi^-1`` of its mid-rank CDF ``(rows below + rows equal / 2) / n``."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    knots, first = np.unique(v, return_index=True)
    counts = np.diff(np.append(first, len(v)))
    return knots, norm.ppf((first + counts / 2.0) / len(v))


class TargetScaler:
    """Invertible per-column transform: ``z = (f(y) - center) / scale`` with ``f`` log1p or
    id (kind "robust"), or the normal scores of ``f(y)``'s training ranks (kind "rank")."""

    def __init__(self, metrics: tuple[str, ...], kinds: Sequence[str] | None = None) -> None:
        self.metrics = metrics
        m = len(metrics)
        self.kinds = tuple(kinds) if kinds is not None else (ROBUST,) * m
        if len(self.kinds) != m or not set(self.kinds) <= set(TARGET_KINDS):
            raise ValueError(f"kinds must be {m} of {TARGET_KINDS}, got {self.kinds}")
        self.use_log = np.zeros(m, dtype=bool)
        self.center = np.zeros(m)
        self.scale = np.ones(m)
        #: per metric: (training values ascending, their normal scores); only for "rank"
        self.knots: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def fit(self, y: np.ndarray) -> TargetScaler:
        """``y`` [n, M] raw values of non-failed rows (NaN cells are ignored)."""
        for j, name in enumerate(self.metrics):
            col = y[:, j][np.isfinite(y[:, j])]
            if col.size == 0:
                continue
            nonneg = bool(col.min() >= 0)
            median = float(np.median(col))
            heavy = median > 0 and col.max() > 20 * median
            self.use_log[j] = nonneg and (DIRECTIONS.get(name, 0) == -1 or heavy)
            t = np.log1p(col) if self.use_log[j] else col
            q25, q50, q75 = np.percentile(t, [25, 50, 75])
            scale = (q75 - q25) / 1.349
            if not scale > 1e-12:
                scale = float(t.std())
            self.center[j] = q50
            self.scale[j] = scale if scale > 1e-12 else 1.0
            if self.kinds[j] == RANK:
                self.knots[j] = normal_scores(t)
        return self

    def with_kinds(self, kinds: Sequence[str], y: np.ndarray) -> TargetScaler:
        """A scaler of the same metrics with other kinds, fitted on the same rows ``y``."""
        return TargetScaler(self.metrics, kinds).fit(y)

    def transform(self, y: np.ndarray) -> np.ndarray:
        t = np.where(self.use_log, np.log1p(np.maximum(y, 0.0)), y)
        z = (t - self.center) / self.scale
        for j, (knots, scores) in self.knots.items():
            z[..., j] = self._rank_map(t[..., j], knots, scores)
        return z

    @staticmethod
    def _rank_map(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Piecewise-linear ``xs -> ys``, clamped at the ends, NaN kept (one knot: 0)."""
        if len(xs) < 2:
            return np.where(np.isnan(x), np.nan, 0.0 if len(xs) else np.nan)
        return np.where(np.isnan(x), np.nan, np.interp(x, xs, ys))

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """[n, M] standardised values back to original units, column by column."""
        columns = [self.inverse_column(z[:, j], j) for j in range(len(self.metrics))]
        return np.stack(columns, axis=1) if columns else np.asarray(z, dtype=np.float64).copy()

    def inverse_column(self, z: np.ndarray, j: int) -> np.ndarray:
        """Values (any shape) that all belong to metric ``j`` back to original units."""
        if j in self.knots:
            knots, scores = self.knots[j]
            t = (np.full(np.shape(z), knots[0]) if len(knots) < 2
                 else self._interp(np.asarray(z, dtype=np.float64), j, scores, knots))
        else:
            t = z * self.scale[j]
            t += self.center[j]
        if not self.use_log[j]:
            return t
        # expm1 of an extrapolated log value can overflow; 700 keeps it finite in float64.
        t = np.minimum(t, 700.0)
        return np.expm1(t, out=t) if isinstance(t, np.ndarray) else np.expm1(t)

    #: From this many values on, :meth:`inverse_column` interpolates with the compiled
    #: :func:`ml.models.compiled.interp` (numpy's values, without a binary search per value:
    #: a forest's per-tree predictions are hundreds of thousands of them).
    COMPILED_INTERP = 4096

    def _interp(self, z: np.ndarray, j: int, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
        """``np.interp(z, xp, fp)``, any shape."""
        if z.size < self.COMPILED_INTERP:
            return np.interp(z, xp, fp)
        from ml.models import compiled  # numba: imported on the first large batch only
        grids = self.__dict__.setdefault("_grids", {})
        if j not in grids or grids[j][0] is not xp:
            grids[j] = (xp, compiled.interp_grid(xp))
        start, low, step = grids[j][1]
        flat = np.ascontiguousarray(z).reshape(-1)
        out = np.empty_like(flat)
        compiled.interp(flat, xp, fp, start, low, step, out)
        return out.reshape(z.shape)

    def state(self, prefix: str = "target.") -> dict[str, torch.Tensor]:
        state = {prefix + "use_log": torch.from_numpy(self.use_log.astype(np.float64)),
                 prefix + "center": torch.from_numpy(self.center.copy()),
                 prefix + "scale": torch.from_numpy(self.scale.copy())}
        for j, (knots, scores) in self.knots.items():
            state[f"{prefix}knots.{j}"] = torch.from_numpy(np.ascontiguousarray(knots))
            state[f"{prefix}scores.{j}"] = torch.from_numpy(np.ascontiguousarray(scores))
        return state

    def load(self, state: dict[str, torch.Tensor], prefix: str = "target.") -> None:
        """Bundles saved before the "rank" kind carry no knots: every metric is "robust"."""
        self.use_log = state[prefix + "use_log"].numpy() > 0.5
        self.center = state[prefix + "center"].numpy().astype(np.float64)
        self.scale = state[prefix + "scale"].numpy().astype(np.float64)
        self.knots = {j: (state[f"{prefix}knots.{j}"].numpy().astype(np.float64),
                          state[f"{prefix}scores.{j}"].numpy().astype(np.float64))
                      for j in range(len(self.metrics)) if f"{prefix}knots.{j}" in state}
        self.kinds = tuple(RANK if j in self.knots else ROBUST for j in range(len(self.metrics)))

    def describe(self) -> dict[str, Any]:
        return {m: {"transform": "log1p" if self.use_log[j] else "identity",
                    "kind": self.kinds[j], "center": float(self.center[j]),
                    "scale": float(self.scale[j])}
                for j, m in enumerate(self.metrics)}
