"""Labelled records for evaluation: loading a CSV with its genome text, and label arrays.

``ml.datasets.records.load_csv`` gives encoded graphs without the genome string; the string-based
floor (``rf_counts``) needs it, so it is attached here as ``record.genome`` by source row.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from torch_geometric.data import Data

from ml.datasets.labels import DEFAULT_METRICS


def load_csv_records(path: str | Path,
                     metrics: tuple[str, ...] = DEFAULT_METRICS) -> tuple[list[Data], dict]:
    """Encode an evaluated-genome CSV; each record also carries its ``genome`` string."""
    from ml.datasets.records import load_csv

    records, report = load_csv(path, metrics)
    with open(path, newline="") as handle:
        texts = [row.get("genome") or "" for row in csv.DictReader(handle)]
    for record in records:
        record.genome = texts[int(record.row)]
    return records, vars(report)


def targets(records: Sequence[Data], num_metrics: int) -> np.ndarray:
    """[n, M] float64 labels (NaN where missing)."""
    if not records:
        return np.zeros((0, num_metrics))
    return np.concatenate([r.y.double().numpy().reshape(1, -1)[:, :num_metrics]
                           for r in records])


def failed_flags(records: Sequence[Data]) -> np.ndarray:
    """[n] 0/1 failed-evaluation flags (NaN for unlabelled)."""
    return np.array([float(r.failed.reshape(-1)[0]) for r in records], dtype=np.float64)


def groups(records: Sequence[Data]) -> list[str]:
    """Grouping key per record: canonical_hash (a genome and its duplicates share it)."""
    keys = []
    for i, r in enumerate(records):
        key = getattr(r, "canonical_hash", None)
        keys.append(str(key) if key is not None else f"row-{i}")
    return keys
