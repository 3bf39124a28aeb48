"""Per-genome feature vectors and the column standardiser shared by trees and GNN readouts."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ml.encoding.encoder import GLOBAL_FEATURES
from ml.encoding.genome_vector import MODEL_INFO_DIM, TRAINING_KEYS
from ml.encoding.hyperparams import HYPERPARAM_KEYS, NUM_COLUMNS
from ml.encoding.vocab import NUM_NODE_TYPES
from ml.features.paths import (
    _SUMMARY_DIM,
    PATH_FEATURE_DIM,
    path_block,
)


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


#: Per-node network input: standardised hyper-parameter columns, one presence bit per key, and
#: the log node shape (what the graph networks read beside the node type).
NODE_INPUT_DIM = NUM_COLUMNS + len(HYPERPARAM_KEYS) + 3


def node_inputs_raw(record: Data) -> np.ndarray:
    """[N, 86 + 3]: signed-log hyper-parameter columns and log1p |node shape|, unscaled."""
    if getattr(record, "hyperparams", None) is None:
        return np.zeros((record.num_nodes, NUM_COLUMNS + 3))
    return np.concatenate([signed_log(record.hyperparams.numpy().astype(np.float64)),
                           np.log1p(np.abs(record.node_shape.numpy().astype(np.float64)))], 1)


def node_inputs_presence(record: Data) -> np.ndarray:
    """[N, 86 + 3]: 1 where :func:`node_inputs_raw` holds a value the layer really has."""
    if getattr(record, "hyperparams_mask", None) is None:
        return np.ones((record.num_nodes, NUM_COLUMNS + 3))
    mask = np.repeat(record.hyperparams_mask.numpy().astype(np.float64), 2, axis=1)
    return np.concatenate([mask, np.ones((record.num_nodes, 3))], 1)


def node_inputs(record: Data, scaler: ColumnScaler) -> np.ndarray:
    """[N, NODE_INPUT_DIM] float32: scaled columns (0 where absent), presence bits, clipped."""
    return scaled_node_inputs(node_inputs_raw(record), node_inputs_presence(record), scaler)


def scaled_node_inputs(raw: np.ndarray, presence: np.ndarray,
                       scaler: ColumnScaler) -> np.ndarray:
    """:func:`node_inputs` from the raw columns and their presence."""
    hp = scaler.transform(raw) * presence
    c = NUM_COLUMNS
    hp = np.concatenate([hp[:, :c], presence[:, :c:2], hp[:, c:]], 1)
    return np.clip(hp, -10, 10).astype(np.float32)


GENOME_VECTOR_DIM = MODEL_INFO_DIM + len(TRAINING_KEYS) + len(GLOBAL_FEATURES)
#: log1p node counts per module type, then the max and min of log1p |node shape| (3 + 3).
OP_HISTOGRAM_DIM = NUM_NODE_TYPES + 6


def op_histogram(record: Data) -> np.ndarray:
    """log1p of node counts per module type (28), plus the log node-shape extremes (6)."""
    counts = np.bincount(record.node_type.numpy(), minlength=NUM_NODE_TYPES).astype(np.float64)
    shape = np.log1p(np.abs(record.node_shape.numpy().astype(np.float64)))
    extremes = np.concatenate([shape.max(axis=0), shape.min(axis=0)]) if len(shape) else np.zeros(6)
    return np.concatenate([np.log1p(counts), extremes])


def _summary_from_aggregates(summary: np.ndarray) -> np.ndarray:
    """[n, 3 * 86] (max, sum, count per column) -> [n, 2 * 86] signed-log max and mean."""
    summary = summary.reshape(len(summary), 3, -1)
    top, total, count = summary[:, 0], summary[:, 1], summary[:, 2]
    has = count > 0
    top = np.where(has, signed_log(np.where(has, top, 0.0)), -1.0)
    mean = np.where(has, signed_log(total / np.maximum(count, 1)), -1.0)
    return np.concatenate([top, mean], axis=1)


def hyperparam_summary_full(record: Data) -> np.ndarray:
    """:func:`hyperparam_summary` from the [N, 86] matrix itself (records without the encoder's
    ``hyperparams_summary``, e.g. datasets built by ``graph-v1`` or loaded from shards)."""
    if getattr(record, "hyperparams", None) is None:
        return np.full(2 * NUM_COLUMNS, -1.0)
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


def hyperparam_summary(record: Data) -> np.ndarray:
    """Signed-log max and mean of each hyper-parameter column over the nodes that have it
    (-1 when no node has it); 2 x 86. It is there for the failure classifier (what it adds:
    docs/results.md, "How `auto` was chosen").

    Read from the encoder's per-genome aggregates (``hyperparams_summary``, built from cached
    per-variant partials) when present, else reduced from the [N, 86] matrix.
    """
    if getattr(record, "hyperparams_summary", None) is not None:
        return _summary_from_aggregates(record.hyperparams_summary.numpy())[0]
    return hyperparam_summary_full(record)


def _hyperparam_block(records: list[Data]) -> np.ndarray:
    """[n, 172]: aggregates stacked and reduced in one call; per-record fallback otherwise."""
    have = [getattr(r, "hyperparams_summary", None) is not None for r in records]
    if all(have):
        return _summary_from_aggregates(
            torch.cat([r.hyperparams_summary for r in records]).numpy())
    return np.stack([hyperparam_summary(r) for r in records])


def _op_histogram_block(records: list[Data]) -> np.ndarray:
    """[n, 34] :func:`op_histogram` of every record with one bincount and segment reductions.

    log1p is monotone, so the max/min of ``log1p(|shape|)`` is ``log1p`` of the max/min of
    ``|shape|``: identical values with one log per genome instead of one per node.
    """
    sizes = np.array([r.node_type.shape[0] for r in records], dtype=np.int64)
    if (sizes == 0).any() or any(r.node_shape.shape[0] != s for r, s in zip(records, sizes)):
        return np.stack([op_histogram(r) for r in records])
    n = len(records)
    types = torch.cat([r.node_type for r in records]).numpy()
    owner = np.repeat(np.arange(n, dtype=np.int64), sizes)
    counts = np.bincount(owner * NUM_NODE_TYPES + types, minlength=n * NUM_NODE_TYPES)
    counts = counts.reshape(n, NUM_NODE_TYPES).astype(np.float64)
    shape = np.abs(torch.cat([r.node_shape for r in records]).numpy().astype(np.float64))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    extremes = np.log1p(np.concatenate([np.maximum.reduceat(shape, starts, axis=0),
                                        np.minimum.reduceat(shape, starts, axis=0)], axis=1))
    return np.concatenate([np.log1p(counts), extremes], axis=1)


def _genome_vector_block(records: list[Data]) -> np.ndarray:
    """[n, GENOME_VECTOR_DIM] :func:`genome_vector` of every record (same float32 maths)."""
    info = torch.cat([r.model_info.reshape(1, -1) for r in records]).numpy()
    training = torch.cat([r.training.reshape(1, -1) for r in records]).numpy()
    globals_ = torch.cat([r.global_features.reshape(1, -1) for r in records]).numpy()
    return np.concatenate([info, signed_log(training), globals_], axis=1).astype(np.float64)


def tabular_features(records: list[Data]) -> np.ndarray:
    """The tree models' design matrix [n, TABULAR_DIM], built per block over the whole batch
    (a few concatenations instead of ~10 small numpy calls per genome); the hyper-parameter
    block reads the encoder's aggregates. Equal to the per-record reference
    (``tests/feature_reference.py``; tests/ml/models/test_models.py checks it on real genomes).

    The path block (:mod:`ml.features.paths`) carries the structure the histograms lose
    (how much it adds: docs/results.md, "How `auto` was chosen").
    """
    if not records:
        return np.zeros((0, TABULAR_DIM))
    return np.concatenate([_genome_vector_block(records), _op_histogram_block(records),
                           _hyperparam_block(records), path_block(records)], axis=1)


#: Bumped whenever :func:`tabular_features` changes (models and cached rows key on it).
TABULAR_VERSION = 3
TABULAR_DIM = GENOME_VECTOR_DIM + OP_HISTOGRAM_DIM + 2 * NUM_COLUMNS + PATH_FEATURE_DIM


def _feature_blocks() -> tuple[tuple[str, slice], ...]:
    sizes = (("model_info", MODEL_INFO_DIM), ("training", len(TRAINING_KEYS)),
             ("global", len(GLOBAL_FEATURES)), ("op_histogram", OP_HISTOGRAM_DIM),
             ("hyperparams", 2 * NUM_COLUMNS), ("paths", _SUMMARY_DIM),
             ("edge_types", NUM_NODE_TYPES * NUM_NODE_TYPES))
    blocks, start = [], 0
    for name, size in sizes:
        blocks.append((name, slice(start, start + size)))
        start += size
    assert start == TABULAR_DIM
    return tuple(blocks)


#: The column families of :func:`tabular_features`, in order. A distance-based model weighs
#: each family equally (:mod:`ml.models.kernel`): otherwise the 784 edge-type columns would
#: drown the 34 of ``model_info`` in every distance.
FEATURE_BLOCKS: tuple[tuple[str, slice], ...] = _feature_blocks()


class ColumnScaler:
    """Per-column standardisation fitted on training rows; constant columns pass through."""

    def __init__(self) -> None:
        self.mean = np.zeros(0)
        self.std = np.ones(0)

    def fit(self, x: np.ndarray, weights: np.ndarray | None = None) -> ColumnScaler:
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
