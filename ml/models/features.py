"""Per-genome feature vectors and the column standardiser shared by trees and GNN readouts."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ml.encoding.encoder import GLOBAL_FEATURES
from ml.encoding.genome_vector import TRAINING_KEYS
from ml.encoding.vocab import NUM_NODE_TYPES


def signed_log(x: np.ndarray | torch.Tensor) -> Any:
    """``sign(x) * log1p(|x|)``: tames genes spanning decades (lr 1e-5..1, channels 1..2048)."""
    if isinstance(x, torch.Tensor):
        return torch.sign(x) * torch.log1p(torch.abs(x))
    return np.sign(x) * np.log1p(np.abs(x))


def genome_vector(record: Data) -> np.ndarray:
    """model_info (34) + signed-log training genes (47) + global features (29)."""
    return np.concatenate([record.model_info.numpy().reshape(-1),
                           signed_log(record.training.numpy().reshape(-1)),
                           record.global_features.numpy().reshape(-1)]).astype(np.float64)


GENOME_VECTOR_DIM = 34 + len(TRAINING_KEYS) + len(GLOBAL_FEATURES)


def op_histogram(record: Data) -> np.ndarray:
    """log1p of node counts per module type (28), plus the log node-shape extremes (6)."""
    counts = np.bincount(record.node_type.numpy(), minlength=NUM_NODE_TYPES).astype(np.float64)
    shape = np.log1p(np.abs(record.node_shape.numpy().astype(np.float64)))
    extremes = np.concatenate([shape.max(axis=0), shape.min(axis=0)]) if len(shape) else np.zeros(6)
    return np.concatenate([np.log1p(counts), extremes])


def hyperparam_summary(record: Data) -> np.ndarray:
    """Signed-log max and mean of each hyper-parameter column over the nodes that have it
    (-1 when no node has it); 2 x 86. Lifted failure AUC from 0.91 to 0.98 in CV.

    The log is taken after reducing (max commutes with it) so cost stays O(columns) per genome.
    """
    if getattr(record, "hyperparams", None) is None:
        return np.full(2 * 86, -1.0)
    n = record.num_nodes
    values = record.hyperparams.numpy().reshape(n, -1, 2)      # [N, 43 keys, 2 columns]
    present = (record.hyperparams_mask.numpy() > 0)[:, :, None]  # broadcast, no copy
    count = np.broadcast_to(present.sum(axis=0), values.shape[1:]).reshape(-1)
    top = np.where(present, values, -np.inf).max(axis=0, initial=-np.inf).reshape(-1)
    total = (values * present).sum(axis=0, dtype=np.float64).reshape(-1)
    has = count > 0
    top = np.where(has, signed_log(np.where(has, top, 0.0).astype(np.float64)), -1.0)
    mean = np.where(has, signed_log(total / np.maximum(count, 1)), -1.0)
    return np.concatenate([top, mean])


def tabular_features(records: list[Data]) -> np.ndarray:
    """The tree models' design matrix [n, GENOME_VECTOR_DIM + 34 + 172].

    Per record on purpose: a batched version with segment reductions was measured slower
    (it touches the same ~600 x 86 values per genome plus the concatenation copies).
    """
    return np.stack([np.concatenate([genome_vector(r), op_histogram(r), hyperparam_summary(r)])
                     for r in records])


class ColumnScaler:
    """Per-column standardisation fitted on training rows; constant columns pass through."""

    def __init__(self) -> None:
        self.mean = np.zeros(0)
        self.std = np.ones(0)

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None) -> "ColumnScaler":
        """``weights`` (0/1 mask, same shape) restricts statistics to present values."""
        if weights is None:
            weights = np.ones_like(x)
        count = np.maximum(weights.sum(axis=0), 1.0)
        self.mean = (x * weights).sum(axis=0) / count
        var = (((x - self.mean) ** 2) * weights).sum(axis=0) / count
        std = np.sqrt(var)
        self.std = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {prefix + "mean": torch.from_numpy(np.asarray(self.mean, dtype=np.float64)),
                prefix + "std": torch.from_numpy(np.asarray(self.std, dtype=np.float64))}

    def load(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        self.mean = state[prefix + "mean"].numpy().astype(np.float64)
        self.std = state[prefix + "std"].numpy().astype(np.float64)
