"""Genome string -> encoded graph: the one entry point datasets, CLI and API use.

``GenomeEncoder.encode(text)`` runs load -> compile -> graph -> features and returns an
:class:`EncodedGenome`, which turns into the CLI's JSON summary or a ``torch_geometric`` ``Data``
in either encoding:

* ``onehot``: ``x`` = 28-d one-hot of the node type (the seed's ``data.pt``);
* ``combined``: ``x`` = node type index (the seed's ``data_with_encoding.pt``) plus
  ``hyperparams`` [N, 86] / ``hyperparams_mask`` [N, 43] (see :mod:`ml.encoding.hyperparams`).

Both carry ``edge_index``, ``node_type``, ``node_shape`` [N, 3], ``model_info`` [1, 34],
``training`` [1, 47] and ``global_features`` [1, len(GLOBAL_FEATURES)]; ``combined`` also carries
``hyperparams_summary`` [1, 3 * 86] float64: per hyper-parameter column the max, sum and count over
the nodes whose key is present (max -inf and sum 0 where none), assembled from cached per-variant
aggregates so the tree models' features need not touch the [N, 86] matrix. ``ENCODER_VERSION``
names this exact layout; any change to what these tensors hold must bump it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ml.arch.compiler import CompiledNetwork, compile_genome
from ml.encoding.genome_vector import TRAINING_KEYS, model_info, training_vector
from ml.encoding.graph import GenomeGraph, Segment, build_graph
from ml.encoding.hyperparams import HYPERPARAM_KEYS, NUM_COLUMNS, module_vector
from ml.encoding.vocab import NUM_NODE_TYPES, type_index
from ml.errors import GenomeError, isolated
from ml.genome import canonical_hash, individual_hash, load
from ml.genome.catalogue import BACKBONES, HEADS
from ml.genome.model import EvaluatedGenome

ENCODER_VERSION = "graph-v2"
ENCODINGS = ("onehot", "combined")
_HEADS = tuple(sorted(HEADS))
_BACKBONES = tuple(sorted(BACKBONES))

#: Column names of ``global_features``. Counts are raw; log1p is applied to the large ones.
GLOBAL_FEATURES: tuple[str, ...] = (
    "log_backbone_params", "log_head_params", "log_total_params", "log_macs",
    "num_layers", "num_backbones", "num_nodes", "num_edges", "depth",
    "out_c", "out_h", "out_w", "head_in_channels", "head_anchors",
    *(f"head_{h}" for h in _HEADS),
    *(f"backbone_count_{b}" for b in _BACKBONES),
)


@dataclass(frozen=True)
class _SegmentTables:
    """Per-variant node features (type index, hyper-parameters), shared by every genome."""

    types: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    depth: int  # longest path (in edges) from the segment's first node to the next layer
    summary: np.ndarray  # [3, NUM_COLUMNS] max/sum/count of rows 1.. (the adapter is per genome)


def _column_present(mask: np.ndarray) -> np.ndarray:
    """[n, keys] mask -> [n, keys * 2] bool (each key owns two adjacent columns)."""
    return np.repeat(mask > 0, 2, axis=-1)


def _summary_rows(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[3, C] float64: max (-inf if absent), float64 sum and count of the present values."""
    present = _column_present(mask)
    out = np.empty((3, values.shape[-1]), dtype=np.float64)
    out[0] = np.where(present, values, -np.inf).max(axis=0, initial=-np.inf)
    out[1] = (values * present).sum(axis=0, dtype=np.float64)
    out[2] = present.sum(axis=0)
    return out


def _merge_summary(acc: np.ndarray, part: np.ndarray) -> None:
    np.maximum(acc[0], part[0], out=acc[0])
    acc[1] += part[1]
    acc[2] += part[2]


def _longest_path(edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """Longest path (edge count) from node 0 to each node; nodes are in topological order."""
    depth = np.zeros(num_nodes, dtype=np.int64)
    for src, dst in edges[np.argsort(edges[:, 0], kind="stable")]:
        if depth[src] + 1 > depth[dst]:
            depth[dst] = depth[src] + 1
    return depth


@dataclass
class EncodedGenome:
    """Everything the encoder knows about one genome."""

    text: str
    genome: EvaluatedGenome
    network: CompiledNetwork
    graph: GenomeGraph
    canonical_hash: str
    individual_hash: str
    node_type: np.ndarray
    hyperparams: np.ndarray
    hyperparams_mask: np.ndarray
    hyperparams_summary: np.ndarray  # [3, NUM_COLUMNS] float64, see the module docstring
    model_info: list[float]
    training: np.ndarray
    global_features: dict[str, float]
    backbones: list[str]

    @property
    def num_nodes(self) -> int:
        return self.graph.num_nodes

    @property
    def num_edges(self) -> int:
        return int(self.graph.edges.shape[0])

    @property
    def layer_segments(self) -> tuple[tuple[str | None, int, int], ...]:
        """``(backbone builder or None, start, stop)`` of each layer's node range. Attached to a
        record (``to_data(..., layer_segments=...)``) where rows are featurised, it lets the
        path block compose per-backbone tables instead of sweeping the whole graph (not stored
        in datasets: a plain tuple that old records lack)."""
        return tuple((s.builder, s.start, s.stop) for s in self.graph.segments)

    @isolated("summarising")
    def summary(self) -> dict[str, Any]:
        """The CLI's ``encode`` JSON object (without ``index``)."""
        return {
            "ok": True, "error": None, "canonical_hash": self.canonical_hash,
            "num_nodes": self.num_nodes, "num_edges": self.num_edges,
            "node_ops": self.graph.ops, "node_module_types": self.graph.module_types,
            "edges": self.graph.edges.tolist(), "model_info": self.model_info,
            "global": {**self.global_summary(), "node_shapes": self.graph.shapes.tolist()},
        }

    @isolated("summarising")
    def global_summary(self) -> dict[str, Any]:
        """The per-genome part of :meth:`summary` (no per-node lists: cheap for any graph)."""
        out_c, out_h, out_w = self.network.output_shape
        return {
            "individual_hash": self.individual_hash,
            "encoder_version": ENCODER_VERSION,
            "backbones": self.backbones,
            "head": self.network.head.type,
            "head_in_channels": self.network.head.in_channels,
            "head_anchors_per_location": self.network.head.anchors_per_location,
            "backbone_params": self.network.parameter_count,
            "head_params": self.network.head.parameter_count,
            "total_params": self.network.total_parameter_count,
            "macs": self.network.macs,
            "flops": 2 * self.network.macs,
            "depth": int(self.global_features["depth"]),
            "num_layers": len(self.genome.layers),
            "output_shape": [out_c, out_h, out_w],
            "training": dict(zip(TRAINING_KEYS, self.training.tolist())),
        }

    @isolated("converting")
    def to_data(self, encoding: str = "combined", **extra: Any) -> Data:
        """A ``torch_geometric`` graph in the chosen encoding (extra keys are attached as-is)."""
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; choose from {ENCODINGS}")
        node_type = torch.from_numpy(self.node_type.astype(np.int64))
        data = Data(
            edge_index=torch.from_numpy(np.ascontiguousarray(self.graph.edge_index)),
            node_type=node_type,
            node_shape=torch.from_numpy(self.graph.shapes.astype(np.float32)),
            model_info=torch.tensor([self.model_info], dtype=torch.float32),
            training=torch.from_numpy(self.training.astype(np.float32)).unsqueeze(0),
            global_features=torch.tensor([[self.global_features[k] for k in GLOBAL_FEATURES]],
                                         dtype=torch.float32),
            num_nodes=self.num_nodes,
            canonical_hash=self.canonical_hash,
            encoder_version=ENCODER_VERSION,
            **extra,
        )
        if encoding == "onehot":
            data.x = torch.nn.functional.one_hot(node_type, NUM_NODE_TYPES).to(torch.float32)
        else:
            data.x = node_type
            data.hyperparams = torch.from_numpy(self.hyperparams)
            data.hyperparams_mask = torch.from_numpy(self.hyperparams_mask)
            data.hyperparams_summary = torch.from_numpy(self.hyperparams_summary.reshape(1, -1))
        return data


class GenomeEncoder:
    """Stateful only in its caches (per-variant tables); safe to reuse for any number of genomes."""

    def __init__(self, max_length: int | None = None) -> None:
        self.max_length = max_length
        self._segments: dict[str, _SegmentTables] = {}

    @isolated("encoding")
    def encode(self, text: str, encoding: str | None = None) -> EncodedGenome:
        """Encode one genome string; raises :class:`GenomeError` (with offset and excerpt) and
        nothing else, whatever the string holds."""
        genome = load(text, max_length=self.max_length)
        try:
            return self.encode_genome(genome, text)
        except GenomeError as exc:
            raise exc.with_text(text) from None

    def record(self, genome: EvaluatedGenome, text: str = "", digest: str | None = None
               ) -> Data:
        """The graph record every predictor reads: ``to_data("combined")`` with the layer
        segments that row featurisation composes path rows from. One place for what the
        scoring engine, its encoder processes and the bundle scorer each need; a
        :class:`GenomeError` carries ``text``'s excerpt."""
        try:
            encoded = self.encode_genome(genome, text, digest)
        except GenomeError as exc:
            raise exc.with_text(text) from None
        return encoded.to_data("combined", layer_segments=encoded.layer_segments)

    @isolated("encoding")
    def encode_genome(self, genome: EvaluatedGenome, text: str = "",
                      digest: str | None = None) -> EncodedGenome:
        """``digest``: the genome's canonical hash, when the caller has computed it already."""
        network = compile_genome(genome)
        graph = build_graph(network)
        n = graph.num_nodes
        types = np.zeros(n, dtype=np.int64)
        values = np.zeros((n, NUM_COLUMNS), dtype=np.float32)
        mask = np.zeros((n, len(HYPERPARAM_KEYS)), dtype=np.float32)
        summary = np.zeros((3, NUM_COLUMNS), dtype=np.float64)
        summary[0] = -np.inf
        depth = 1  # placeholder -> first layer
        for seg in graph.segments:
            if seg.builder is None:  # a custom layer: one module node
                module = graph.modules[seg.start]
                types[seg.start] = type_index(graph.module_types[seg.start])
                values[seg.start], mask[seg.start] = module_vector(module)
                _merge_summary(summary, _summary_rows(values[seg.start:seg.start + 1],
                                                      mask[seg.start:seg.start + 1]))
                depth += 1
                continue
            tables = self._segment_tables(graph, seg)
            types[seg.start:seg.stop] = tables.types
            values[seg.start:seg.stop] = tables.values
            mask[seg.start:seg.stop] = tables.mask
            # The adapter is per genome (its in_channels differ).
            values[seg.start], mask[seg.start] = module_vector(graph.modules[seg.start])
            _merge_summary(summary, _summary_rows(values[seg.start:seg.start + 1],
                                                  mask[seg.start:seg.start + 1]))
            _merge_summary(summary, tables.summary)
            depth += tables.depth
        backbones = [s.builder for s in graph.segments if s.builder is not None]
        return EncodedGenome(
            text=text, genome=genome, network=network, graph=graph,
            canonical_hash=digest or canonical_hash(genome),
            individual_hash=individual_hash(genome),
            node_type=types, hyperparams=values, hyperparams_mask=mask,
            hyperparams_summary=summary,
            model_info=model_info(genome), training=training_vector(genome),
            global_features=self._globals(network, graph, depth, backbones),
            backbones=backbones)

    def _segment_tables(self, graph: GenomeGraph, seg: Segment) -> _SegmentTables:
        tables = self._segments.get(seg.builder)
        if tables is None:
            size = seg.stop - seg.start
            types = np.array([type_index(t) for t in graph.module_types[seg.start:seg.stop]])
            values = np.zeros((size, NUM_COLUMNS), dtype=np.float32)
            mask = np.zeros((size, len(HYPERPARAM_KEYS)), dtype=np.float32)
            for i, module in enumerate(graph.modules[seg.start:seg.stop]):
                values[i], mask[i] = module_vector(module)
            local = graph.edges[(graph.edges[:, 0] >= seg.start) & (graph.edges[:, 0] < seg.stop)]
            depth = int(_longest_path(local - seg.start, size + 1)[size])
            tables = self._segments[seg.builder] = _SegmentTables(
                types, values, mask, depth, _summary_rows(values[1:], mask[1:]))
        return tables

    @staticmethod
    def _globals(network: CompiledNetwork, graph: GenomeGraph, depth: int,
                 backbones: list[str]) -> dict[str, float]:
        out_c, out_h, out_w = network.output_shape
        features = {
            "log_backbone_params": math.log1p(network.parameter_count),
            "log_head_params": math.log1p(network.head.parameter_count),
            "log_total_params": math.log1p(network.total_parameter_count),
            "log_macs": math.log1p(network.macs),
            "num_layers": float(len(network.layers)),
            "num_backbones": float(len(backbones)),
            "num_nodes": float(graph.num_nodes),
            "num_edges": float(graph.edges.shape[0]),
            "depth": float(depth),
            "out_c": float(out_c), "out_h": float(out_h), "out_w": float(out_w),
            "head_in_channels": float(network.head.in_channels),
            "head_anchors": float(network.head.anchors_per_location),
        }
        for h in _HEADS:
            features[f"head_{h}"] = float(network.head.type == h)
        names = [layer.layer.name for layer in network.layers if layer.is_backbone]
        for b in _BACKBONES:
            features[f"backbone_count_{b}"] = float(names.count(b))
        return features
