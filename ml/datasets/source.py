"""Streaming the build's input in chunks, in the parent process (no torch here, on purpose).

The parent only reads rows, applies label hygiene (:func:`ml.datasets.labels.classify`, pure
Python) and hands chunks of rows to the worker processes, so its memory stays a few MB whatever
the file size.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ml.datasets.labels import Labels, classify, metric_columns, parse_number

csv.field_size_limit(1 << 30)
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class SourceRow:
    """One input row as the workers need it (labels None = unlabelled pool genome)."""

    row: int
    genome: str
    labels: Labels | None
    generation: float
    individual_hash: str | None


@dataclass(frozen=True)
class Chunk:
    """A contiguous row range [start, stop) of the input: the unit of work and of a shard."""

    index: int
    start: int
    stop: int
    rows: tuple[SourceRow, ...]


def file_digest(path: str | Path) -> tuple[str, int]:
    """sha256 of the file and its approximate row count (newlines), read in 1 MiB blocks."""
    digest, lines = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
            lines += block.count(b"\n")
    return digest.hexdigest(), lines


def build_key(source_sha256: str, encoder_version: str, metrics: tuple[str, ...] | None,
              chunk_size: int, mode: str) -> str:
    """What makes a finished shard reusable: same input bytes, encoder, metrics and chunking."""
    payload = json.dumps([source_sha256, encoder_version, list(metrics or ()), chunk_size, mode])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ColumnsError(ValueError):
    """The CSV lacks the ``genome`` column or requested metric columns. ``str()`` lists the
    file's columns (for the CLI); ``missing`` holds only names the caller asked for, so a
    service can explain the problem without echoing the file."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


def check_metrics(path: str | Path, metrics: tuple[str, ...]) -> None:
    """Raise :class:`ColumnsError` naming unknown metric columns (or a missing ``genome``
    column)."""
    with open(path, newline="", encoding="utf-8") as handle:
        fields = csv.DictReader(handle).fieldnames or []
    if "genome" not in fields:
        raise ColumnsError(f"{path}: CSV has no 'genome' column (columns: {fields})", ["genome"])
    unknown = [m for m in metrics if m not in fields]
    if unknown:
        raise ColumnsError(f"{path}: unknown metric column(s) {unknown}; "
                           f"numeric columns are {metric_columns(fields)}", unknown)


def iter_labelled_rows(path: str | Path, metrics: tuple[str, ...]) -> Iterator[SourceRow]:
    """Rows of an evaluated-genome CSV with their labels, streamed."""
    check_metrics(path, metrics)
    with open(path, newline="", encoding="utf-8") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            yield SourceRow(i, row.get("genome") or "", classify(row, metrics),
                            parse_number(row.get("generation")), row.get("individual_hash"))


def iter_pool_rows(path: str | Path) -> Iterator[SourceRow]:
    """Unlabelled genomes: one per line, or a CSV with a ``genome`` column."""
    from ml.sources import iter_genomes

    for i, text in iter_genomes(path):
        yield SourceRow(i, text, None, math.nan, None)


def iter_chunks(rows: Iterator[SourceRow], chunk_size: int) -> Iterator[Chunk]:
    """Group rows into consecutive chunks of ``chunk_size`` (the last may be shorter)."""
    if chunk_size < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk_size}")
    batch: list[SourceRow] = []
    index = 0
    for row in rows:
        batch.append(row)
        if len(batch) == chunk_size:
            yield Chunk(index, batch[0].row, batch[-1].row + 1, tuple(batch))
            batch, index = [], index + 1
    if batch:
        yield Chunk(index, batch[0].row, batch[-1].row + 1, tuple(batch))
