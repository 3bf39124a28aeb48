"""An RBF support-vector regressor on the tree models' feature rows, stored as plain arrays.

The ``stack`` predictor pairs it with extremely randomised trees: the two err differently
(trees cut on single columns, the kernel compares whole genomes), so their blend ranks better
than either (``ml.models.stack``). Two choices make the kernel usable on these rows:

* **Blocks weigh equally.** Columns are standardised on the training rows, then each feature
  family of :data:`ml.features.vectors.FEATURE_BLOCKS` is divided by the square root of its
  number of non-constant columns, so every family adds about the same to a squared distance.
  Without it the hundreds of edge-type columns drown the few of ``model_info``. ``gamma`` is
  1 / (number of non-constant families): the analogue of scikit-learn's ``gamma="scale"``.
* **epsilon-insensitive loss** (an SVR, not kernel ridge or a GP): the targets' tails still
  hurt squared-loss kernels, which ranked worse on the real genomes (docs/results.md, "Where
  the stack's choices came from").

Fitting is scikit-learn's libsvm; prediction is a compiled kernel sum over the support vectors
(:class:`KernelSet`), so a bundle holds tensors only (no pickle). Non-finite inputs count as
the training mean.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.svm import SVR

from ml.features.vectors import FEATURE_BLOCKS

#: Columns whose training standard deviation is below this are dropped (constant).
_CONSTANT = 1e-9


class KernelSVR:
    """RBF SVR on block-standardised rows: ``f(x) = sum_s dual_s k(x, sv_s) + intercept``."""

    FIELDS = ("columns", "mean", "scale", "support", "dual", "intercept", "gamma")

    def __init__(self, arrays: dict[str, np.ndarray] | None = None) -> None:
        self.arrays = arrays or {}

    @classmethod
    def fit(cls, x: np.ndarray, z: np.ndarray, c: float = 1.0, epsilon: float = 0.1,
            blocks: Sequence[tuple[str, slice]] = FEATURE_BLOCKS) -> KernelSVR:
        """Fit on rows ``x`` [n, d] (the tabular layout) and standardised targets ``z`` [n]."""
        x = np.asarray(x, dtype=np.float64)
        columns, scale = [], []
        families = 0
        for _, block in blocks:
            idx = np.arange(x.shape[1])[block]
            std = x[:, idx].std(axis=0) if len(x) else np.zeros(len(idx))
            active = idx[std > _CONSTANT]
            if active.size == 0:
                continue
            families += 1
            columns.append(active)
            scale.append(std[std > _CONSTANT] * np.sqrt(active.size))
        model = cls()
        if not columns:  # every column constant: the kernel is flat, predict the mean
            model.arrays = {"columns": np.zeros(0, np.int64), "mean": np.zeros(0),
                            "scale": np.ones(0), "support": np.zeros((0, 0)),
                            "dual": np.zeros(0), "intercept": np.array([float(np.mean(z))]),
                            "gamma": np.ones(1)}
            return model
        cols = np.concatenate(columns)
        model.arrays = {"columns": cols.astype(np.int64), "mean": x[:, cols].mean(axis=0),
                        "scale": np.concatenate(scale), "gamma": np.array([1.0 / families])}
        svr = SVR(kernel="rbf", C=c, epsilon=epsilon, gamma=model.gamma)
        svr.fit(model.transform(x), np.asarray(z, dtype=np.float64))
        model.arrays.update(support=np.ascontiguousarray(svr.support_vectors_),
                            dual=svr.dual_coef_.reshape(-1).astype(np.float64),
                            intercept=np.array([float(svr.intercept_[0])]))
        return model

    @property
    def gamma(self) -> float:
        return float(self.arrays["gamma"][0])

    @property
    def intercept(self) -> float:
        return float(self.arrays["intercept"][0])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Rows in the kernel's space: kept columns, standardised, blocks equalised."""
        a = self.arrays
        out = (np.asarray(x, dtype=np.float64)[:, a["columns"]] - a["mean"]) / a["scale"]
        return np.where(np.isfinite(out), out, 0.0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``f(x)`` per row (:class:`KernelSet` of this one kernel, kept for the next call)."""
        cached = self.__dict__.get("_set")
        if cached is None:
            cached = self._set = KernelSet((self,))
        return cached.predict(x)[:, 0]

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {prefix + f: torch.from_numpy(np.ascontiguousarray(self.arrays[f]))
                for f in self.FIELDS}

    @classmethod
    def load(cls, state: dict[str, torch.Tensor], prefix: str) -> KernelSVR:
        return cls({f: state[prefix + f].numpy() for f in cls.FIELDS})


class KernelSet:
    """Several :class:`KernelSVR` predicted together (a stack member's, one per metric).

    Kernels fitted on the same rows share their transform (columns, centre, scale, gamma), so
    their support vectors are rows of one space: one transform of the batch and one kernel sum
    over the union of their support vectors (each kernel's dual coefficients, zero where a
    vector is not its own) serve them all. Kernels of different transforms form separate groups.

    A genome's value never depends on the batch it came in (the service scores in chunks and
    caches rows): the sum is :func:`ml.models.compiled.rbf_sums`, the same operations per row
    whatever the batch (tests compare every row alone and in batches, bit for bit), where a
    BLAS matrix product's blocking would change the last bits with the batch."""

    def __init__(self, kernels: Sequence[KernelSVR]) -> None:
        self.size = len(kernels)
        self.intercept = np.array([k.intercept for k in kernels], dtype=np.float64)
        groups: dict[bytes, list[int]] = {}
        for i, kernel in enumerate(kernels):
            if kernel.arrays["support"].size:
                a = kernel.arrays
                # The sum is compiled without bounds checks: inconsistent arrays (a damaged
                # bundle) are refused here, not read out of bounds there.
                dims = len(a["columns"])
                if (a["support"].ndim != 2 or a["support"].shape[1] != dims
                        or len(a["mean"]) != dims or len(a["scale"]) != dims
                        or len(a["dual"]) != len(a["support"]) or a["columns"].min() < 0):
                    raise ValueError("kernel arrays of inconsistent shapes")
                key = b"".join(np.ascontiguousarray(a[f]).tobytes()
                               for f in ("columns", "mean", "scale", "gamma"))
                groups.setdefault(key, []).append(i)
        #: per group: (a kernel of it, for the transform; its outputs; support vectors [D, S]
        #: feature-major; dual coefficients [S, outputs])
        self.groups: list[tuple[KernelSVR, np.ndarray, np.ndarray, np.ndarray]] = []
        for members in groups.values():
            supports = [kernels[i].arrays["support"] for i in members]
            union, where = np.unique(np.concatenate(supports), axis=0, return_inverse=True)
            dual = np.zeros((len(union), len(members)))
            start = 0
            for k, (i, support) in enumerate(zip(members, supports)):
                np.add.at(dual[:, k], where.reshape(-1)[start:start + len(support)],
                          kernels[i].arrays["dual"])
                start += len(support)
            self.groups.append((kernels[members[0]], np.asarray(members, dtype=np.int64),
                                np.ascontiguousarray(union.T), dual))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """[n, kernels]: each kernel's ``f(x)`` per row."""
        out = np.zeros((len(x), self.size))
        for kernel, outputs, support_t, dual in self.groups:
            if len(x) == 0:
                break
            if np.ndim(x) != 2 or np.shape(x)[1] <= int(kernel.arrays["columns"].max()):
                raise ValueError(f"rows of shape {np.shape(x)}: the kernel reads column "
                                 f"{int(kernel.arrays['columns'].max())}")
            from ml.models import compiled  # numba: imported on the first prediction only
            a = kernel.arrays
            part = np.zeros((len(x), len(outputs)))
            compiled.by_rows(compiled.rbf_sums, np.ascontiguousarray(x, dtype=np.float64),
                             np.asarray(a["columns"], dtype=np.int64),
                             np.asarray(a["mean"], dtype=np.float64),
                             np.asarray(a["scale"], dtype=np.float64), support_t, dual,
                             kernel.gamma, out=part)
            out[:, outputs] = part
        return out + self.intercept
