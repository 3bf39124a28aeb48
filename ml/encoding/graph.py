"""The genome's backbone-chain graph, node for node as the original FX-traced it.

Nodes: a placeholder, then per layer its FX nodes (a custom layer is one ``call_module``; a
backbone is its adapter conv followed by every node of its traced kept part in graph order), then
one output node. Edges: for each node in order, one edge to each of its users in FX user order.

Per node the graph carries ``op``, ``target`` (relative to its layer's module, see
:meth:`GenomeGraph.qualified_target`), ``module_type`` (class actually called, None for non-module
nodes), the module object itself, and ``shapes[i]``: the last three dims of the node's output
tensor, left-padded with -1 (so a 4-D NCHW output gives (C, H, W) and a Swin NHWC output gives
(H, W, C) in the tensor's own order; non-tensor outputs such as ``size()`` give (-1, -1, -1)).

Everything per-variant (node lists, local edges with the exit edge pointing one past the segment)
is built once; a genome's graph is concatenation plus index offsets.

Deliberate difference from the reference graphs: the adapter node's module type is
``torch.nn.modules.conv.Conv2d`` (ours is registered and materialised) where the original recorded
``LazyConv2d`` (an unregistered module created inside each forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from ml.arch.backbones import BackboneVariant
from ml.arch.compiler import CompiledNetwork, compile_genome
from ml.arch.tracing import qualified_name
from ml.genome.model import EvaluatedGenome

#: FX op kinds, indexed by ``GenomeGraph.op_codes``.
OP_KINDS = ("placeholder", "call_module", "call_function", "call_method", "get_attr", "output")
_OP_CODE = {op: i for i, op in enumerate(OP_KINDS)}
#: ``node_layer`` value of the placeholder and output nodes.
NO_LAYER = -1


@dataclass(frozen=True)
class Segment:
    """The node range ``[start, stop)`` contributed by layer ``layer_index``."""

    layer_index: int
    layer_name: str
    builder: str | None
    start: int
    stop: int


@dataclass(frozen=True)
class GenomeGraph:
    ops: list[str]
    op_codes: np.ndarray
    targets: list[str]
    module_types: list[str | None]
    modules: list[nn.Module | None]
    #: (N, 3) int64, see the module docstring.
    shapes: np.ndarray
    #: (E, 2) int64 ``[source, destination]`` node positions.
    edges: np.ndarray
    #: (N,) int32 layer index of each node, NO_LAYER for the placeholder and output.
    node_layer: np.ndarray
    segments: tuple[Segment, ...]
    compiled: CompiledNetwork

    @property
    def num_nodes(self) -> int:
        return len(self.ops)

    @property
    def edge_index(self) -> np.ndarray:
        """(2, E) view, the layout torch_geometric expects."""
        return self.edges.T

    def qualified_target(self, i: int) -> str:
        """Target as in the original's traced ``module_list`` (``module_list.<k>.model.<path>``)."""
        layer = int(self.node_layer[i])
        if layer == NO_LAYER or self.ops[i] not in ("call_module", "get_attr"):
            return self.targets[i]
        return f"module_list.{layer}" + (f".{self.targets[i]}" if self.targets[i] else "")


@dataclass(frozen=True)
class _Template:
    """A backbone variant's segment, ready to splice (everything but the adapter is shared)."""

    ops: tuple[str, ...]
    op_codes: np.ndarray
    targets: tuple[str, ...]
    module_types: tuple[str | None, ...]
    modules_after_adapter: tuple[nn.Module | None, ...]
    edges: np.ndarray

    @staticmethod
    def of(variant: BackboneVariant) -> _Template:
        table = variant.nodes
        edges = table.edges.copy()
        edges[edges[:, 1] < 0, 1] = len(table)  # the exit edge goes to the node after the segment
        return _Template(table.ops, np.fromiter((_OP_CODE[o] for o in table.ops), np.int8),
                         table.targets, table.module_types, table.modules[1:], edges)


_TEMPLATES: dict[str, _Template] = {}
_SINGLE_EDGE = np.array([[0, 1]], dtype=np.int64)


def _template(variant: BackboneVariant) -> _Template:
    template = _TEMPLATES.get(variant.builder)
    if template is None:
        template = _TEMPLATES[variant.builder] = _Template.of(variant)
    return template


def variant_segment(variant: BackboneVariant) -> tuple[tuple[str | None, ...], np.ndarray]:
    """The module types and local ``(E, 2)`` edges a genome graph gets for ``variant``'s
    segment (the exit edge points to ``len(types)``), without building a genome."""
    template = _template(variant)
    return template.module_types, template.edges


def build_graph(genome: EvaluatedGenome | CompiledNetwork) -> GenomeGraph:
    """The traced graph of the genome's chain (compiles it first when given an EvaluatedGenome)."""
    net = genome if isinstance(genome, CompiledNetwork) else compile_genome(genome)
    ops: list[str] = ["placeholder"]
    codes: list[np.ndarray] = [np.array([_OP_CODE["placeholder"]], np.int8)]
    targets: list[str] = ["x"]
    types: list[str | None] = [None]
    modules: list[nn.Module | None] = [None]
    shapes: list[np.ndarray] = [np.array([net.input_shape], dtype=np.int64)]
    edges: list[np.ndarray] = [_SINGLE_EDGE]
    segments: list[Segment] = []
    start = 1
    for item in net.layers:
        if item.variant is None:
            ops.append("call_module")
            codes.append(np.array([_OP_CODE["call_module"]], np.int8))
            targets.append("")
            types.append(qualified_name(type(item.module)))
            modules.append(item.module)
            shapes.append(np.array([item.out_shape], dtype=np.int64))
            edges.append(_SINGLE_EDGE + start)
            size, builder = 1, None
        else:
            t = _template(item.variant)
            ops.extend(t.ops)
            codes.append(t.op_codes)
            targets.extend(t.targets)
            types.extend(t.module_types)
            modules.append(item.module.adapter)
            modules.extend(t.modules_after_adapter)
            _c, h, w = item.in_shape
            shapes.append(np.array([(item.variant.adapter_channels, h, w)], dtype=np.int64))
            shapes.append(item.shapes.node_chw())
            edges.append(t.edges + start)
            size, builder = len(t.ops), item.variant.builder
        segments.append(Segment(item.index, item.layer.name, builder, start, start + size))
        start += size
    ops.append("output")
    codes.append(np.array([_OP_CODE["output"]], np.int8))
    targets.append("output")
    types.append(None)
    modules.append(None)
    shapes.append(np.array([net.output_shape], dtype=np.int64))
    node_layer = np.full(start + 1, NO_LAYER, dtype=np.int32)
    for s in segments:
        node_layer[s.start:s.stop] = s.layer_index
    return GenomeGraph(ops, np.concatenate(codes), targets, types, modules,
                       np.concatenate(shapes), np.concatenate(edges), node_layer,
                       tuple(segments), net)
