"""``dataset export --format seed``: the seed repository's ``data.pt`` / ``data_with_encoding.pt``.

Layout: ``{index: (model_info_vector [34], Data, label [M])}`` with ``index`` the graph's position
in the dataset. ``onehot``: ``Data.x`` = 28-d one-hot node type (the seed's ``data.pt``).
``combined``: ``Data.x`` = node type index and ``Data.hyperparams`` [N, 43] (the seed's
``data_with_encoding.pt``), where our 86 columns ``<key>.0``/``<key>.1`` collapse to one per key
by their **mean** (a scalar fills both columns, so scalars are kept exactly; a pair like
``kernel_size=(3, 5)`` becomes 4). ``label`` = the raw metric vector; ``Data.failed`` and
``Data.canonical_hash`` ride along so consumers can drop failed rows and group splits.
Failed evaluations are exported too (the seed did the same); filter on ``failed``.

Large datasets are split into ``<stem>_chunk_<START>_<END>.pt`` (END exclusive), streamed
shard by shard: at most one chunk plus one shard in memory.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data

from ml.datasets.atomic import atomic_write_bytes
from ml.datasets.reader import GraphDataset
from ml.encoding.vocab import NUM_NODE_TYPES

DEFAULT_CHUNK = 10_000


def collapse_hyperparams(hyperparams: torch.Tensor) -> torch.Tensor:
    """[N, 86] (key.0, key.1 per key) -> [N, 43]: the mean of each key's two columns."""
    n, columns = hyperparams.shape
    return hyperparams.reshape(n, columns // 2, 2).mean(dim=2)


def seed_item(record: Data, encoding: str) -> tuple[torch.Tensor, Data, torch.Tensor]:
    """One ``(model_info_vector, Data, label)`` entry of the seed's dict."""
    if encoding == "onehot":
        x = torch.nn.functional.one_hot(record.node_type, NUM_NODE_TYPES).to(torch.float32)
        data = Data(x=x, edge_index=record.edge_index)
    elif encoding == "combined":
        data = Data(x=record.node_type.clone(), edge_index=record.edge_index,
                    hyperparams=collapse_hyperparams(record.hyperparams))
    else:
        raise ValueError(f"unknown encoding {encoding!r}; choose onehot or combined")
    data.failed = record.failed.clone()
    data.canonical_hash = record.canonical_hash
    return record.model_info[0].clone(), data, record.y[0].clone()


def _items(dataset: GraphDataset, encoding: str) -> Iterator[tuple[int, tuple[Any, ...]]]:
    position = 0
    for graphs in dataset.iter_shards():
        for record in graphs:
            yield position, seed_item(record, encoding)
            position += 1


def _save(path: Path, items: dict[int, Any]) -> None:
    atomic_write_bytes(path, lambda tmp: torch.save(items, tmp))


def export_seed(root: str | Path, out: str | Path, encoding: str = "onehot",
                chunk: int = DEFAULT_CHUNK) -> list[Path]:
    """Write the seed layout; one file when it fits in ``chunk`` graphs, else chunk files."""
    dataset = GraphDataset(root)
    out = Path(out)
    if chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {chunk}")
    if len(dataset) <= chunk:
        items = dict(_items(dataset, encoding))
        _save(out, items)
        return [out]
    written: list[Path] = []
    batch: dict[int, Any] = {}
    for position, item in _items(dataset, encoding):
        batch[position] = item
        if len(batch) == chunk:
            written.append(_flush(out, batch))
            batch = {}
    if batch:
        written.append(_flush(out, batch))
    return written


def _flush(out: Path, batch: dict[int, Any]) -> Path:
    start, end = min(batch), max(batch) + 1
    path = out.with_name(f"{out.stem}_chunk_{start}_{end}{out.suffix or '.pt'}")
    _save(path, batch)
    return path


def load_seed_export(paths: list[Path]) -> dict[int, Any]:
    """Read an export back (the seed's files pickle ``Data``, so this trusts them)."""
    items: dict[int, Any] = {}
    for path in paths:
        items.update(torch.load(path, weights_only=False))
    return items
