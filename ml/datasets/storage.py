"""Shard files: many labelled graphs packed into plain tensors, loadable with ``weights_only=True``.

A shard is a dict of tensors, lists of str and ints (no pickled classes), so
``torch.load(path, weights_only=True)`` reads it safely. Graphs are concatenated along nodes and
edges with offset arrays; the per-node ``hyperparams``/``hyperparams_mask`` rows repeat a lot
(every genome reuses the same backbone modules), so they are stored once per shard in a table
of unique rows plus an int32 index per node -- about 10x smaller than pickled ``Data`` lists.
:func:`unpack` rebuilds exactly the ``Data`` of :func:`ml.datasets.records.make_record`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ml.datasets.atomic import atomic_write_bytes

SHARD_FORMAT = "nas-surrogate-shard-v1"
_GRAPH_TENSORS = ("model_info", "training", "global_features", "y", "hyperparams_summary")


def pack(records: list[Data], meta: dict[str, Any]) -> dict[str, Any]:
    """Pack combined-encoding records (same metric count) into one shard dict."""
    nodes = [int(r.num_nodes) for r in records]
    edges = [int(r.edge_index.shape[1]) for r in records]
    shard: dict[str, Any] = {"format": SHARD_FORMAT, **meta, "count": len(records),
                             "node_ptr": torch.tensor(np.cumsum([0, *nodes]), dtype=torch.int64),
                             "edge_ptr": torch.tensor(np.cumsum([0, *edges]), dtype=torch.int64)}
    if not records:
        return shard
    features = torch.cat([torch.cat([r.hyperparams, r.hyperparams_mask], 1) for r in records])
    table, inverse = np.unique(features.numpy(), axis=0, return_inverse=True)
    shard.update(
        feature_table=torch.from_numpy(table),
        feature_index=torch.from_numpy(inverse.reshape(-1).astype(np.int32)),
        hyperparam_columns=int(records[0].hyperparams.shape[1]),
        node_type=torch.cat([r.node_type for r in records]).to(torch.int8),
        node_shape=torch.cat([r.node_shape for r in records]),
        edge_index=torch.cat([r.edge_index for r in records], 1).to(torch.int32),
        failed=torch.cat([r.failed for r in records]),
        row=torch.tensor([int(r.row) for r in records], dtype=torch.int64),
        generation=torch.tensor([float(r.generation) for r in records], dtype=torch.float64),
        canonical_hash=[str(r.canonical_hash) for r in records],
        individual_hash=[str(r.individual_hash) for r in records],
        encoder_version=str(records[0].encoder_version),
        **{k: torch.cat([getattr(r, k) for r in records]) for k in _GRAPH_TENSORS},
    )
    return shard


def save_shard(path: Path, records: list[Data], meta: dict[str, Any]) -> None:
    """Pack and write a shard atomically."""
    shard = pack(records, meta)
    atomic_write_bytes(path, lambda tmp: torch.save(shard, tmp))


def load_shard(path: str | Path) -> dict[str, Any]:
    """Read a shard safely (no arbitrary unpickling)."""
    shard = torch.load(path, weights_only=True)
    if not isinstance(shard, dict) or shard.get("format") != SHARD_FORMAT:
        raise ValueError(f"{path}: not a {SHARD_FORMAT} shard")
    return shard


def unpack(shard: dict[str, Any], position: int) -> Data:
    """The ``position``-th graph of a shard as the ``Data`` make_record produced (combined)."""
    n0, n1 = int(shard["node_ptr"][position]), int(shard["node_ptr"][position + 1])
    e0, e1 = int(shard["edge_ptr"][position]), int(shard["edge_ptr"][position + 1])
    features = shard["feature_table"][shard["feature_index"][n0:n1].long()]
    split = shard["hyperparam_columns"]
    node_type = shard["node_type"][n0:n1].long()
    extra = {k: shard[k][position:position + 1].clone() for k in _GRAPH_TENSORS}
    return Data(
        edge_index=shard["edge_index"][:, e0:e1].long(),
        node_type=node_type, x=node_type.clone(),
        node_shape=shard["node_shape"][n0:n1].clone(),
        hyperparams=features[:, :split].contiguous(),
        hyperparams_mask=features[:, split:].contiguous(),
        num_nodes=n1 - n0,
        canonical_hash=shard["canonical_hash"][position],
        individual_hash=shard["individual_hash"][position],
        encoder_version=shard["encoder_version"],
        failed=shard["failed"][position:position + 1].clone(),
        row=int(shard["row"][position]),
        generation=float(shard["generation"][position]),
        **extra,
    )
