"""``GraphDataset``: read a built dataset directory (manifest, index, shards) for training.

Iteration goes shard by shard and keeps one shard in memory, so a 100,000-graph dataset can be
streamed; random access caches the last shard it opened (sequential access stays cheap).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator, NamedTuple

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


def read_index(path: Path) -> list[IndexEntry]:
    """Parse ``index.csv``."""
    with open(path, newline="") as handle:
        return [IndexEntry(int(r["row"]), r["canonical_hash"], r["individual_hash"], r["status"],
                           r["shard"], int(r["position"]),
                           float(r["generation"]) if r["generation"] else math.nan,
                           r["duplicate"] == "1", r["failure_reason"],
                           r["source_individual_hash"])
                for r in csv.DictReader(handle)]


class GraphDataset:
    """A built dataset: ``len``, ``ds[i]`` (a ``Data``), iteration, ``.manifest``, ``.index``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise OSError(f"{self.root}: not a dataset (no {MANIFEST}); run 'dataset build'")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        self.index: list[IndexEntry] = read_index(self.root / INDEX)
        self._cached: tuple[str, dict[str, Any]] | None = None

    @property
    def metrics(self) -> list[str]:
        return list(self.manifest["metrics"])

    def __len__(self) -> int:
        return len(self.index)

    def _shard(self, name: str) -> dict[str, Any]:
        if self._cached is None or self._cached[0] != name:
            self._cached = (name, load_shard(self.root / SHARDS / name))
        return self._cached[1]

    def __getitem__(self, i: int) -> Data:
        if not -len(self) <= i < len(self):
            raise IndexError(f"graph {i} out of range for {len(self)} graphs")
        entry = self.index[i]
        return unpack(self._shard(entry.shard), entry.position)

    def iter_shards(self) -> Iterator[list[Data]]:
        """The graphs of each shard in turn (one shard in memory at a time)."""
        for name in self.manifest["shards"]:
            shard = load_shard(self.root / SHARDS / name)
            yield [unpack(shard, p) for p in range(shard["count"])]

    def __iter__(self) -> Iterator[Data]:
        for graphs in self.iter_shards():
            yield from graphs

    def records(self) -> list[Data]:
        """Every graph in memory (for small datasets, e.g. the 238-row CSV)."""
        return list(self)
