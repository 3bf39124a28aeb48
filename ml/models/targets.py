"""Per-metric target standardisation that survives heavy tails and inverts exactly.

Rule (fitted on the non-failed training rows of each metric):

* metrics whose training values are all >= 0 and heavy-tailed (lower-is-better losses, or
  max/median > 20 with a positive median) get ``log1p`` first: uw_val_epoch_loss reaches
  25,382 with median 8.4, so a
  raw scale would let a handful of rows dominate an L2/Huber loss;
* then robust centring/scaling: ``(t - median) / (IQR / 1.349)`` (the IQR of a normal is
  1.349 sigma), falling back to the standard deviation, then 1, when the IQR is zero.

``inverse`` undoes both steps, so predictions come back in original units.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ml.datasets.labels import DIRECTIONS


class TargetScaler:
    """Invertible per-column transform ``z = (f(y) - center) / scale`` with ``f`` log1p or id."""

    def __init__(self, metrics: tuple[str, ...]) -> None:
        self.metrics = metrics
        m = len(metrics)
        self.use_log = np.zeros(m, dtype=bool)
        self.center = np.zeros(m)
        self.scale = np.ones(m)

    def fit(self, y: np.ndarray) -> "TargetScaler":
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
        return self

    def transform(self, y: np.ndarray) -> np.ndarray:
        t = np.where(self.use_log, np.log1p(np.maximum(y, 0.0)), y)
        return (t - self.center) / self.scale

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """[n, M] standardised values back to original units, column by column."""
        columns = [self.inverse_column(z[:, j], j) for j in range(len(self.metrics))]
        return np.stack(columns, axis=1) if columns else np.asarray(z, dtype=np.float64).copy()

    def inverse_column(self, z: np.ndarray, j: int) -> np.ndarray:
        """Values (any shape) that all belong to metric ``j`` back to original units."""
        t = z * self.scale[j] + self.center[j]
        # expm1 of an extrapolated log value can overflow; 700 keeps it finite in float64.
        return np.expm1(np.minimum(t, 700.0)) if self.use_log[j] else t

    def state(self, prefix: str = "target.") -> dict[str, torch.Tensor]:
        return {prefix + "use_log": torch.from_numpy(self.use_log.astype(np.float64)),
                prefix + "center": torch.from_numpy(self.center.copy()),
                prefix + "scale": torch.from_numpy(self.scale.copy())}

    def load(self, state: dict[str, torch.Tensor], prefix: str = "target.") -> None:
        self.use_log = state[prefix + "use_log"].numpy() > 0.5
        self.center = state[prefix + "center"].numpy().astype(np.float64)
        self.scale = state[prefix + "scale"].numpy().astype(np.float64)

    def describe(self) -> dict[str, Any]:
        return {m: {"transform": "log1p" if self.use_log[j] else "identity",
                    "center": float(self.center[j]), "scale": float(self.scale[j])}
                for j, m in enumerate(self.metrics)}
