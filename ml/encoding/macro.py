"""An encoded graph's two levels: the macro graph of its layers and the backbone cells in it.

A genome's graph is a near-chain of hundreds to thousands of FX nodes, almost all of them inside
backbones whose node tables are the same wherever a variant appears. Splitting it at its layers
gives a macro graph of tens of nodes (short enough for message passing in topological order)
and a handful of cells, each embeddable once per variant:

* macro nodes: the input, one node per custom layer, per backbone layer its adapter conv (the
  genome's own, per-genome in-channels) followed by a *cell* node standing for the variant's
  body, then the output (where the head's features go); edges follow the chain;
* a cell: the node range of the variant's body (without the adapter) and a content key (its
  node types, hyper-parameters and local edges), so equal variants share one key whatever
  their builder name or position.

The layer boundaries come from a record's ``layer_segments`` when the encoder attached them
(:attr:`ml.encoding.encoder.EncodedGenome.layer_segments`); records from dataset shards lack
them, so the chain is then re-segmented by matching each backbone variant's node table (types
and local edges) at every position where a Conv2d could be an adapter. A graph that is not a
layer chain at all (e.g. a NAS-Bench-Graph architecture) is its own macro graph, node for node.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.encoding.encoder import GLOBAL_FEATURES
from ml.encoding.hyperparams import HYPERPARAM_KEYS
from ml.encoding.vocab import type_index

#: Kinds of macro nodes (index into a learned embedding).
INPUT, LAYER, ADAPTER, CELL, OUTPUT, OP = range(6)
NUM_KINDS = 6
#: Per-node statistics beside a cell (log1p parameters, MACs, node count) and the head's
#: features on the output node; zero elsewhere, with a presence mask.
CELL_STATS = ("log_cell_params", "log_cell_macs", "log_cell_nodes")
HEAD_STATS = ("log_head_params", "head_in_channels", "head_anchors",
              *(k for k in GLOBAL_FEATURES if k.startswith("head_") and k not in
                ("head_in_channels", "head_anchors")))
EXTRA_COLUMNS = CELL_STATS + HEAD_STATS
_HEAD_COLUMNS = [GLOBAL_FEATURES.index(k) for k in HEAD_STATS]
_CONV = type_index("torch.nn.modules.conv.Conv2d")
_KEY = {k: i for i, k in enumerate(HYPERPARAM_KEYS)}


@dataclass(frozen=True)
class Cell:
    """A backbone's body: record nodes ``[start, stop)`` (after its adapter) and its key."""

    start: int
    stop: int
    key: str


@dataclass(frozen=True)
class MacroGraph:
    """Nodes (kind, the record row whose type and hyper-parameters they carry), edges (2, E),
    the cells with the macro node standing for each, and per-node extra columns."""

    kinds: np.ndarray
    rows: np.ndarray
    edges: np.ndarray
    cells: tuple[Cell, ...]
    cell_nodes: np.ndarray
    extra: np.ndarray
    extra_present: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.kinds)


# ------------------------------------------------------------------------------ segmentation
@dataclass(frozen=True)
class _Template:
    types: np.ndarray
    edges: np.ndarray  # local (E, 2), sorted; the exit edge points to len(types)


_TEMPLATES: dict[str, list[_Template]] = {}
_TEMPLATE_LOCK = threading.Lock()
_BACKBONE_COUNTS = [(GLOBAL_FEATURES.index(k), k[len("backbone_count_"):])
                    for k in GLOBAL_FEATURES if k.startswith("backbone_count_")]


def _sorted_edges(edges: np.ndarray) -> np.ndarray:
    return edges[np.lexsort((edges[:, 1], edges[:, 0]))] if len(edges) else edges


def _gene_templates(gene: str) -> list[_Template]:
    """Node types and local edges of every variant of ``gene``, built once per process (each
    variant is built, traced and compiled on first use: up to a second or so, once)."""
    found = _TEMPLATES.get(gene)
    if found is None:
        from ml.arch.backbones import all_builders, get_variant
        from ml.encoding.graph import variant_segment

        with _TEMPLATE_LOCK:
            found = _TEMPLATES.get(gene)
            if found is not None:
                return found
            found = []
            for builder in sorted(b for b, g in all_builders().items() if g == gene):
                types, edges = variant_segment(get_variant(gene, builder))
                found.append(_Template(np.array([type_index(t) for t in types]),
                                       _sorted_edges(np.asarray(edges, dtype=np.int64))))
            _TEMPLATES[gene] = found
    return found


def _templates(genes: Sequence[str]) -> list[_Template]:
    """The variants of ``genes``, longest first (a match never stops at a shorter prefix)."""
    found = [t for gene in genes for t in _gene_templates(gene)]
    return sorted(found, key=lambda t: -len(t.types))


def _out_edges(edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges sorted by (source, destination) and the slice start of each source (n + 1)."""
    edges = _sorted_edges(edges)
    return edges, np.searchsorted(edges[:, 0], np.arange(n + 1))


def match_segments(types: np.ndarray, edge_index: np.ndarray,
                   genes: Sequence[str]) -> list[tuple[bool, int, int]] | None:
    """``(is_backbone, start, stop)`` per layer of a genome chain whose backbones are variants
    of ``genes``, or None when the graph is not one (placeholder -> layers -> output, a custom
    layer one node with one edge to the next)."""
    n = len(types)
    edges, first = _out_edges(np.asarray(edge_index, dtype=np.int64).reshape(2, -1).T, n)
    if n < 3 or not np.array_equal(edges[first[0]:first[1]], [[0, 1]]) or \
            first[n] != first[n - 1]:
        return None
    out: list[tuple[bool, int, int]] = []
    p = 1
    while p < n - 1:
        size = 0
        if types[p] == _CONV and genes:
            for t in _templates(genes):
                size_t = len(t.types)
                if p + size_t > n - 1 or not np.array_equal(types[p:p + size_t], t.types):
                    continue
                local = edges[first[p]:first[p + size_t]] - p
                if np.array_equal(local, t.edges):
                    size = size_t
                    break
        if size:
            out.append((True, p, p + size))
            p += size
            continue
        if not np.array_equal(edges[first[p]:first[p + 1]], [[p, p + 1]]):
            return None
        out.append((False, p, p + 1))
        p += 1
    return out


def record_segments(record: Any) -> list[tuple[bool, int, int]] | None:
    """The record's layers: its ``layer_segments`` when it has them, else matched against the
    variants of the backbone genes its global features count."""
    given: Sequence[Any] | None = getattr(record, "layer_segments", None)
    if given is not None:
        return [(builder is not None, int(start), int(stop)) for builder, start, stop in given]
    counts = record.global_features.numpy().reshape(-1)
    genes = [gene for column, gene in _BACKBONE_COUNTS if counts[column] > 0]
    return match_segments(record.node_type.numpy().astype(np.int64), record.edge_index.numpy(),
                          genes)


# ------------------------------------------------------------------------------ cell content
def cell_key(record: Any, start: int, stop: int, local_edges: np.ndarray) -> str:
    """Digest of a body's node types, hyper-parameters and local edges (what the micro encoder
    reads), so two genomes with the same variant share one embedding."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(record.node_type.numpy()[start:stop].astype(np.int64).tobytes())
    values = getattr(record, "hyperparams", None)
    if values is not None:
        digest.update(values.numpy()[start:stop].astype(np.float32).tobytes())
        digest.update(record.hyperparams_mask.numpy()[start:stop].astype(np.float32).tobytes())
    digest.update(np.ascontiguousarray(local_edges, dtype=np.int64).tobytes())
    return digest.hexdigest()


def local_edges(edge_index: np.ndarray, start: int, stop: int) -> np.ndarray:
    """(2, E) edges with both ends in ``[start, stop)``, shifted to start at 0."""
    src, dst = np.asarray(edge_index).reshape(2, -1)
    keep = (src >= start) & (src < stop) & (dst >= start) & (dst < stop)
    return np.stack([src[keep], dst[keep]]) - start


def _column(values: np.ndarray, key: str, which: int = 0) -> np.ndarray:
    return values[:, 2 * _KEY[key] + which].astype(np.float64)


def cell_statistics(record: Any, start: int, stop: int) -> np.ndarray:
    """log1p of the body's parameters and multiply-accumulates, counted from its conv, linear
    and batch-norm hyper-parameters and output shapes (so they follow the genome's input size),
    and log1p of its node count."""
    size = stop - start
    values = getattr(record, "hyperparams", None)
    if values is None:
        return np.array([0.0, 0.0, np.log1p(size)])
    v = values.numpy()[start:stop]
    present = record.hyperparams_mask.numpy()[start:stop] > 0
    shape = np.abs(record.node_shape.numpy()[start:stop].astype(np.float64))
    has = {k: present[:, _KEY[k]] for k in ("in_channels", "out_channels", "kernel_size",
                                            "in_features", "out_features", "num_features",
                                            "bias")}
    groups = np.where(present[:, _KEY["groups"]], np.maximum(_column(v, "groups"), 1.0), 1.0)
    conv = has["in_channels"] & has["out_channels"] & has["kernel_size"]
    conv_w = (_column(v, "in_channels") / groups * _column(v, "out_channels")
              * _column(v, "kernel_size", 0) * _column(v, "kernel_size", 1))
    spatial = shape[:, 1] * shape[:, 2]
    linear = has["in_features"] & has["out_features"]
    linear_w = _column(v, "in_features") * _column(v, "out_features")
    tokens = np.maximum(shape[:, 0] * shape[:, 1], 1.0)  # a Swin linear's output is (H, W, C)
    bias = has["bias"] & (_column(v, "bias") > 0)
    params = (np.where(conv, conv_w + bias * _column(v, "out_channels"), 0.0)
              + np.where(linear, linear_w + bias * _column(v, "out_features"), 0.0)
              + np.where(has["num_features"], 2 * _column(v, "num_features"), 0.0))
    macs = np.where(conv, conv_w * spatial, 0.0) + np.where(linear, linear_w * tokens, 0.0)
    return np.log1p(np.array([params.sum(), macs.sum(), float(size)]))


def head_statistics(record: Any) -> np.ndarray:
    """The head's columns of the record's global features (type, in-channels, anchors, size)."""
    return record.global_features.numpy().reshape(-1)[_HEAD_COLUMNS].astype(np.float64)


# ------------------------------------------------------------------------------- the graph
def _chain(n: int) -> np.ndarray:
    return np.stack([np.arange(n - 1), np.arange(1, n)]).astype(np.int64)


def macro_graph(record: Any) -> MacroGraph:
    """The record's macro graph (see the module docstring)."""
    segments = record_segments(record)
    n_extra = len(EXTRA_COLUMNS)
    if segments is None:  # not a layer chain: the graph itself, node for node
        n = int(record.num_nodes)
        return MacroGraph(np.full(n, OP), np.arange(n), record.edge_index.numpy().astype(np.int64),
                          (), np.zeros(0, np.int64), np.zeros((n, n_extra)),
                          np.zeros((n, n_extra)))
    n_record = int(record.num_nodes)
    edge_index = record.edge_index.numpy()
    kinds, rows, cells, cell_nodes = [INPUT], [0], [], []
    extras = {}
    for is_backbone, start, stop in segments:
        if not is_backbone:
            kinds.append(LAYER)
            rows.append(start)
            continue
        kinds.append(ADAPTER)
        rows.append(start)
        body = local_edges(edge_index, start + 1, stop)
        src, dst = np.asarray(edge_index).reshape(2, -1)
        exits = src[(src > start) & (src < stop) & (dst == stop)]
        cells.append(Cell(start + 1, stop, cell_key(record, start + 1, stop, body)))
        cell_nodes.append(len(kinds))
        extras[len(kinds)] = (0, cell_statistics(record, start + 1, stop))
        kinds.append(CELL)
        rows.append(int(exits.max()) if len(exits) else stop - 1)  # its output shape
    extras[len(kinds)] = (len(CELL_STATS), head_statistics(record))
    kinds.append(OUTPUT)
    rows.append(n_record - 1)
    n = len(kinds)
    extra = np.zeros((n, n_extra))
    present = np.zeros((n, n_extra))
    for node, (offset, values) in extras.items():
        extra[node, offset:offset + len(values)] = values
        present[node, offset:offset + len(values)] = 1.0
    return MacroGraph(np.asarray(kinds), np.asarray(rows), _chain(n), tuple(cells),
                      np.asarray(cell_nodes, dtype=np.int64), extra, present)


def topological_levels(edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the longest path from a source (forward level) and to a sink (backward level);
    nodes of one level depend only on lower levels, so a level is one parallel step."""
    src, dst = np.asarray(edges, dtype=np.int64).reshape(2, -1)
    forward = np.zeros(n, dtype=np.int64)
    backward = np.zeros(n, dtype=np.int64)
    for _ in range(n + 1):  # relax until stable: a DAG settles within n rounds
        new_forward, new_backward = forward.copy(), backward.copy()
        np.maximum.at(new_forward, dst, forward[src] + 1)
        np.maximum.at(new_backward, src, backward[dst] + 1)
        if np.array_equal(new_forward, forward) and np.array_equal(new_backward, backward):
            return forward, backward
        forward, backward = new_forward, new_backward
    raise ValueError("the graph has a cycle")
