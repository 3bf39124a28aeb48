"""``dataset show``: what a built dataset holds, as text (like the seed's ``view_data``).

Counts per status, per-metric distributions over non-failed graphs (read straight from the
shards' ``y``/``failed`` tensors, one shard at a time), and the first graph's node rows in both
encodings side by side.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ml.datasets.build import SHARDS
from ml.datasets.reader import GraphDataset
from ml.datasets.storage import load_shard
from ml.encoding.vocab import NUM_NODE_TYPES


def _labels(dataset: GraphDataset) -> tuple[np.ndarray, np.ndarray]:
    ys, failed = [], []
    for name in dataset.manifest["shards"]:
        shard = load_shard(dataset.root / SHARDS / name)
        if shard["count"]:
            ys.append(shard["y"].numpy())
            failed.append(shard["failed"].numpy())
    width = len(dataset.metrics)
    return (np.concatenate(ys) if ys else np.zeros((0, width)),
            np.concatenate(failed) if failed else np.zeros(0))


def lineage_labels(dataset: GraphDataset) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Every indexed row's labels across a version's lineage (a repeated measurement with its
    own labels), the ``failed`` flags and the rows per status, reading only the shards'
    ``y``/``failed`` tensors, one shard at a time (for the dashboard's distributions)."""
    width = len(dataset.metrics)
    ys, failed, statuses = [], [], {}
    current: tuple[int, str] | None = None
    y_shard = f_shard = None
    for entry in dataset.index:
        statuses[entry.status] = statuses.get(entry.status, 0) + 1
        if entry.status == "invalid_genome" or not entry.shard:
            continue
        if (entry.dataset, entry.shard) != current:
            current = (entry.dataset, entry.shard)
            shard = load_shard(dataset.dirs[entry.dataset] / SHARDS / entry.shard)
            y_shard, f_shard = shard["y"].numpy(), shard["failed"].numpy()
        if entry.labels:
            labels = json.loads(entry.labels)
            ys.append([np.nan if v is None else v for v in labels["y"]])
            failed.append(float(labels["failed"]))
        else:
            ys.append(y_shard[entry.position])
            failed.append(float(f_shard[entry.position]))
    return (np.asarray(ys, dtype=np.float64).reshape(-1, width),
            np.asarray(failed, dtype=np.float64), statuses)


def _counts(dataset: GraphDataset) -> Iterator[str]:
    counts = dataset.manifest["counts"]
    yield f"dataset {dataset.root}  encoder {dataset.manifest['encoder_version']}  " \
          f"source sha256 {dataset.manifest['source']['sha256'][:16]}…"
    yield ("rows {rows}  ok {ok}  failed_evaluation {failed_evaluation}  unlabelled {unlabelled}"
           "  invalid_genome {invalid_genome}  duplicates {duplicates}").format(**counts)
    if counts["failure_reasons"]:
        yield f"  failure reasons: {counts['failure_reasons']}"
    if counts["error_codes"]:
        yield f"  invalid genome codes: {counts['error_codes']}"


def _distributions(dataset: GraphDataset) -> Iterator[str]:
    if not dataset.metrics:
        yield "no metrics (unlabelled pool)"
        return
    y, failed = _labels(dataset)
    good = y[failed == 0]
    yield f"{'metric':<22}{'dir':>4}{'n':>7}{'failed':>8}{'min':>12}{'q25':>12}{'median':>12}" \
          f"{'q75':>12}{'max':>12}"
    for j, metric in enumerate(dataset.metrics):
        column = good[:, j][np.isfinite(good[:, j])]
        stats = np.quantile(column, [0, .25, .5, .75, 1]) if column.size else [np.nan] * 5
        direction = {1: "max", -1: "min"}.get(dataset.manifest["directions"].get(metric, 0), "-")
        yield f"{metric:<22}{direction:>4}{column.size:>7}{int((failed == 1).sum()):>8}" + \
              "".join(f"{v:>12.4g}" for v in stats)


def _side_by_side(dataset: GraphDataset, rows: int) -> Iterator[str]:
    if not len(dataset):
        return
    graph = dataset[0]
    vocab = dataset.manifest["vocabularies"]
    keys, types = vocab["hyperparam_keys"], vocab["module_types"]
    onehot = torch.nn.functional.one_hot(graph.node_type, NUM_NODE_TYPES).int()
    yield f"graph 0 (row {graph.row}, {graph.num_nodes} nodes, " \
          f"{graph.edge_index.shape[1]} edges, hash {graph.canonical_hash[:12]}): " \
          f"first {min(rows, graph.num_nodes)} nodes"
    yield (f"{'node':>4}  {'onehot (28)':<28}  {'type':>4}  {'module':<22}  "
           "combined hyper-parameters")
    for i in range(min(rows, graph.num_nodes)):
        t = int(graph.node_type[i])
        present = [k for k, m in zip(keys, graph.hyperparams_mask[i].tolist()) if m]
        values = ", ".join(
            f"{k}={_pair(graph.hyperparams[i, 2 * keys.index(k):2 * keys.index(k) + 2])}"
            for k in present)
        bits = "".join(str(b) for b in onehot[i].tolist())
        yield f"{i:>4}  {bits:<28}  {t:>4}  {types[t].rsplit('.', 1)[-1]:<22}  {values or '-'}"


def _pair(values: torch.Tensor) -> str:
    a, b = (float(v) for v in values)
    fmt = lambda v: f"{v:g}"  # noqa: E731
    return fmt(a) if a == b else f"({fmt(a)},{fmt(b)})"


def show(root: str | Path, rows: int = 8) -> str:
    """The report as one string."""
    dataset = GraphDataset(root)
    return "\n".join([*_counts(dataset), "", *_distributions(dataset), "",
                      *_side_by_side(dataset, rows)])
