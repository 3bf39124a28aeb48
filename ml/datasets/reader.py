"""``GraphDataset``: read a built dataset directory (manifest, index, shards) for training.

A version made by ``dataset append`` (:mod:`ml.datasets.versions`) reads its ancestors' rows
first, then its own; a repeated measurement is its first occurrence's graph with its own labels.
Iteration follows the index and keeps at most two shards in memory, so a 100,000-graph dataset
can be streamed; random access caches the shards it opened last.
"""
from __future__ import annotations

import csv
import json
import math
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch_geometric.data import Data

from ml.datasets.build import INDEX, MANIFEST, SHARDS
from ml.datasets.storage import load_shard, unpack


class IndexEntry(NamedTuple):
    """One stored graph: where it came from and where it lives."""

    row: int
    canonical_hash: str
    individual_hash: str
    status: str
    shard: str
    position: int
    generation: float
    duplicate: bool
    failure_reason: str
    #: the CSV's own individual_hash ("" for pools); differs from ``individual_hash`` (recomputed
    #: by the encoder) only where the platform's libm rounds differently (ml.genome.identity)
    source_individual_hash: str
    #: lineage position of the directory whose shard holds the graph (versions only)
    dataset: int = -1
    #: a repeated measurement's own labels (JSON; "" = the shard's labels)
    labels: str = ""
    #: where the row came from (versions: the append's label)
    source: str = ""


def read_index(path: Path, own: int = -1) -> list[IndexEntry]:
    """Parse ``index.csv``; ``own`` is the lineage position of the directory it belongs to."""
    with open(path, newline="") as handle:
        return [IndexEntry(int(r["row"]), r["canonical_hash"], r["individual_hash"], r["status"],
                           r["shard"], int(r["position"]),
                           float(r["generation"]) if r["generation"] else math.nan,
                           r["duplicate"] == "1", r["failure_reason"],
                           r["source_individual_hash"],
                           int(r["dataset"]) if r.get("dataset") else own,
                           r.get("labels") or "", r.get("source") or "")
                for r in csv.DictReader(handle)]


class GraphDataset:
    """A built dataset (or version): ``len``, ``ds[i]`` (a ``Data``), iteration, ``.manifest``,
    ``.index`` (every row of the lineage, oldest first)."""

    SHARD_CACHE = 2

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise OSError(f"{self.root}: not a dataset (no {MANIFEST}); run 'dataset build'")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        self.dirs = [Path(p) for p in self.manifest.get("lineage", [])] + [self.root]
        self.index: list[IndexEntry] = []
        for position, folder in enumerate(self.dirs):
            self.index += read_index(folder / INDEX, own=position)
        self._shards: OrderedDict[tuple[int, str], dict[str, Any]] = OrderedDict()

    @property
    def metrics(self) -> list[str]:
        return list(self.manifest["metrics"])

    def __len__(self) -> int:
        return len(self.index)

    def _shard(self, dataset: int, name: str) -> dict[str, Any]:
        key = (dataset, name)
        shard = self._shards.get(key)
        if shard is None:
            shard = self._shards[key] = load_shard(self.dirs[dataset] / SHARDS / name)
            while len(self._shards) > self.SHARD_CACHE:
                self._shards.popitem(last=False)
        else:
            self._shards.move_to_end(key)
        return shard

    def _record(self, entry: IndexEntry) -> Data:
        data = unpack(self._shard(entry.dataset, entry.shard), entry.position)
        if entry.labels:  # a repeated measurement: the first occurrence's graph, its own labels
            labels = json.loads(entry.labels)
            data.y = torch.tensor([[math.nan if v is None else v for v in labels["y"]]],
                                  dtype=torch.float32)
            data.failed = torch.tensor([float(labels["failed"])])
            data.row = entry.row
            data.generation = entry.generation
        return data

    def __getitem__(self, i: int) -> Data:
        if not -len(self) <= i < len(self):
            raise IndexError(f"graph {i} out of range for {len(self)} graphs")
        return self._record(self.index[i])

    def iter_shards(self) -> Iterator[list[Data]]:
        """The graphs in index order, a batch per run of rows stored in the same shard (for a
        plain build: exactly its shards in turn)."""
        batch: list[Data] = []
        current: tuple[int, str] | None = None
        for entry in self.index:
            if current is not None and (entry.dataset, entry.shard) != current:
                yield batch
                batch = []
            current = (entry.dataset, entry.shard)
            batch.append(self._record(entry))
        if batch:
            yield batch

    def __iter__(self) -> Iterator[Data]:
        for entry in self.index:
            yield self._record(entry)

    def records(self) -> list[Data]:
        """Every graph in memory (for small datasets, e.g. the 238-row CSV)."""
        return list(self)
