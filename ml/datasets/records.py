"""One labelled graph: an encoded genome plus its metrics, failure flag and provenance.

Every dataset path (in-memory from a CSV, sharded on disk, unlabelled pools) produces the same
``Data`` layout, so predictors and the trainer never care where a graph came from:

* the encoder's fields (``x``, ``edge_index``, ``node_type``, ``hyperparams``, ... see
  :mod:`ml.encoding.encoder`);
* ``y`` [1, M] float32: the selected metrics in manifest order (raw values, NaN when missing;
  ignore them where ``failed`` is 1);
* ``failed`` [1] float32: 1 for a failed evaluation (validity-head label), NaN for unlabelled;
* ``row`` (int, position in the source file), ``generation`` (float, NaN when absent),
  ``canonical_hash`` (str, the grouping key for splits), ``individual_hash`` (str).
"""
from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ml.datasets.labels import DEFAULT_METRICS, BuildReport, Labels, classify, parse_number
from ml.encoding.encoder import EncodedGenome, GenomeEncoder
from ml.errors import GenomeError

log = logging.getLogger(__name__)
csv.field_size_limit(1 << 30)


def make_record(encoded: EncodedGenome, labels: Labels | None, row: int,
                generation: float = math.nan, encoding: str = "combined") -> Data:
    """The labelled ``Data`` of one genome (``labels`` None = unlabelled pool genome)."""
    if labels is None:
        y = torch.full((1, 0), math.nan)
        failed = torch.tensor([math.nan])
    else:
        y = torch.tensor([labels.values], dtype=torch.float32)
        failed = torch.tensor([1.0 if labels.failed else 0.0])
    return encoded.to_data(encoding, y=y, failed=failed, row=row,
                           generation=float(generation),
                           individual_hash=encoded.individual_hash)


def iter_csv_records(path: str | Path, metrics: tuple[str, ...] = DEFAULT_METRICS,
                     encoder: GenomeEncoder | None = None, encoding: str = "combined",
                     report: BuildReport | None = None) -> Iterator[Data]:
    """Stream labelled records from an evaluated-genome CSV; bad genomes are logged and skipped."""
    encoder = encoder or GenomeEncoder()
    report = report if report is not None else BuildReport()
    seen: set[str] = set()
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [m for m in metrics if m not in (reader.fieldnames or [])]
        if missing or "genome" not in (reader.fieldnames or []):
            raise ValueError(f"{path}: missing columns {missing or ['genome']}")
        for row_index, row in enumerate(reader):
            report.rows += 1
            try:
                encoded = encoder.encode(row["genome"] or "")
            except GenomeError as exc:
                log.warning("row %d skipped: %s", row_index, exc)
                report.count_error(exc.code)
                continue
            labels = classify(row, metrics)
            report.count_labels(labels)
            if encoded.canonical_hash in seen:
                report.duplicates += 1
            seen.add(encoded.canonical_hash)
            yield make_record(encoded, labels, row_index,
                              parse_number(row.get("generation")), encoding)


def load_csv(path: str | Path, metrics: tuple[str, ...] = DEFAULT_METRICS,
             encoding: str = "combined") -> tuple[list[Data], BuildReport]:
    """All records of a (small) CSV in memory, with the build report."""
    report = BuildReport()
    records = list(iter_csv_records(path, metrics, encoding=encoding, report=report))
    return records, report


def load_csv_records(path: str | Path,
                     metrics: tuple[str, ...] = DEFAULT_METRICS) -> tuple[list[Data], dict]:
    """:func:`load_csv`, each record also carrying its ``genome`` string (the string-based
    floor ``rf_counts`` reads it); the report as a dict."""
    records, report = load_csv(path, metrics)
    with open(path, newline="") as handle:
        texts = [row.get("genome") or "" for row in csv.DictReader(handle)]
    for record in records:
        record.genome = texts[int(record.row)]
    return records, vars(report)


# -- label arrays of a list of records ------------------------------------------------------

def as_records(source: Any) -> list[Data]:
    """A list of ``Data`` from a list/tuple of records or a GraphDataset-like ``.records()``."""
    if source is None:
        return []
    if hasattr(source, "records") and callable(source.records):
        return list(source.records())
    return list(source)


def labels(records: Sequence[Data]) -> tuple[np.ndarray, np.ndarray]:
    """``(y [n, M] float64, failed [n] bool)`` for training; unlabelled counts as not failed."""
    y = np.concatenate([r.y.numpy().astype(np.float64) for r in records], axis=0)
    failed = np.array([float(r.failed.reshape(-1)[0]) == 1.0 for r in records])
    return y, failed


def targets(records: Sequence[Data], num_metrics: int) -> np.ndarray:
    """[n, M] float64 labels (NaN where missing), for scoring."""
    if not records:
        return np.zeros((0, num_metrics))
    return np.concatenate([r.y.double().numpy().reshape(1, -1)[:, :num_metrics]
                           for r in records])


def failed_flags(records: Sequence[Data]) -> np.ndarray:
    """[n] 0/1 failed-evaluation flags (NaN for unlabelled), for scoring."""
    return np.array([float(r.failed.reshape(-1)[0]) for r in records], dtype=np.float64)


def mean_repeats(records: Sequence[Data]) -> list[Data]:
    """One record per genome (canonical hash), in first-occurrence order: a genome measured more
    than once gets the mean of its non-failed measurements as ``y`` and counts as failed only
    when every measurement failed (its first record's graph, shallow-copied). Training takes
    this; a dataset keeps every measurement."""
    groups: dict[str, list[Data]] = {}
    for r in records:
        groups.setdefault(str(getattr(r, "canonical_hash", id(r))), []).append(r)
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0])
            continue
        ok = [m for m in members if float(m.failed.reshape(-1)[0]) != 1.0]
        merged = members[0].clone()
        if ok:
            y = torch.cat([m.y.double() for m in ok])
            mean = torch.nanmean(y, dim=0, keepdim=True)
            merged.y = mean.float()
            merged.failed = torch.tensor([0.0])
        merged.repeats = len(members)
        out.append(merged)
    return out
