"""Architecture compiler: an evaluated genome -> the network the evolution trained, on meta.

``compile_genome`` walks the layer chain innermost-first from the evolution's input
1x3x2048x2448, exactly as the original's materialising forward did: each custom layer is built
with its real input channels (:mod:`ml.arch.layers`), each backbone is a shared per-variant part
behind a fresh adapter conv whose shapes come from the variant's compiled shape program
(:mod:`ml.arch.shape_program`). A layer that could not run raises ``ArchitectureError`` with
``code="SHAPE_ERROR"`` and the layer's offset in the genome text.

Costs are reported for the chain below the head:

* ``parameter_count``: numel of every parameter of every layer, adapters included (a variant used
  twice is counted twice: the original built two copies).
* ``macs``: multiply-accumulates of one batch-1 forward at the input size for convolutions
  (incl. transposed and adapter convs), linear layers, and the projections and attention
  matmuls inside Swin's functional window attention. Pooling, norms and activations are not
  counted.
* ``activation_elements``: the sum over the graph's nodes of their output elements at batch 1.

Both budgets of :mod:`ml.genome.limits` are checked layer by layer, before the next layer is
built, so a genome that asks for a 10^20-element feature map stops where it asks
(``ACTIVATION_BUDGET_EXCEEDED`` / ``PARAMETER_BUDGET_EXCEEDED`` at that layer's offset) and no
later shape ever exceeds int64. ``compile_genome`` lets only ``GenomeError`` escape.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import nn

from ml.arch.backbones import BackboneFeatures, BackboneVariant, gene_builder, get_variant
from ml.arch.heads import HeadSpec, build_detector, describe_head
from ml.arch.layers import META, BuiltLayer, Shape, build_layer
from ml.arch.shape_program import ProgramResult, ShapeFailure
from ml.errors import ArchitectureError, isolated
from ml.genome.catalogue import BACKBONES, ENUMS, HEADS, LAYERS, PRIMITIVES, weights_name
from ml.genome.limits import MAX_ACTIVATION_ELEMENTS, MAX_PARAMETERS
from ml.genome.model import EvaluatedGenome, Layer
from ml.memo import Memo, spelled

#: (C, H, W) of the image the evolution's materialising forward used.
INPUT_SHAPE: Shape = (3, 2048, 2448)

#: Compiled custom layers by (name, spelled arguments, input shape) and compiled backbone
#: layers by (gene, builder, input shape): see :mod:`ml.memo` for why and what is shared.
LAYER_MEMO = Memo()
BACKBONE_MEMO = Memo()


@dataclass(frozen=True)
class CompiledLayer:
    """One layer of the chain with its module, shapes and costs."""

    index: int
    layer: Layer
    module: nn.Module
    in_shape: Shape
    out_shape: Shape
    parameter_count: int
    macs: int
    #: Backbones only: the shared variant, its shapes at this input, the requested weights.
    variant: BackboneVariant | None = None
    shapes: ProgramResult | None = None
    weights: str | None = None
    #: Output elements of this layer's graph nodes at batch 1 (a backbone: all of its nodes).
    activation_elements: int = 0

    @property
    def is_backbone(self) -> bool:
        return self.variant is not None


@dataclass(frozen=True)
class CompiledNetwork:
    """The compiled chain below the head, plus a descriptor of the head."""

    genome: EvaluatedGenome
    layers: tuple[CompiledLayer, ...]
    #: The chain as the original's ``module_list`` (meta). Backbone parts are shared, read-only.
    modules: nn.ModuleList = field(repr=False)
    input_shape: Shape
    output_shape: Shape
    parameter_count: int
    macs: int
    head: HeadSpec
    activation_elements: int = 0

    @property
    def total_parameter_count(self) -> int:
        return self.parameter_count + self.head.parameter_count

    def to_detector(self) -> nn.Module:
        """The torchvision detector around this chain, on meta (slow-ish; for inspection only)."""
        return build_detector(self.head.type, nn.Sequential(*self.modules), self.output_shape[0])


def _fail(layer: Layer, message: str, code: str = "SHAPE_ERROR", **context: object
          ) -> ArchitectureError:
    return ArchitectureError(f"{layer.name}: {message}", offset=layer.offset, code=code, **context)


def _backbone_builder(layer: Layer) -> str:
    fields = PRIMITIVES[layer.name].fields
    if len(layer.args) != len(fields):
        raise _fail(layer, f"expected {len(fields)} arguments, got {len(layer.args)}",
                    "INVALID_LAYER")
    if layer.name != "Inception_V3":
        size = layer.args[0]
        members = ENUMS[fields[0].type]
        if not isinstance(size, int) or not 0 <= size < len(members):
            raise _fail(layer, f"size index {size!r} out of range", "INVALID_LAYER")
    return gene_builder(layer.name, layer.args)


@dataclass(frozen=True)
class _BackbonePart:
    """What a backbone layer compiles to at one input shape (shared by the genomes using it)."""

    module: BackboneFeatures
    shapes: ProgramResult
    parameter_count: int
    macs: int
    activation_elements: int


def _build_backbone(layer: Layer, variant: BackboneVariant, in_shape: Shape) -> _BackbonePart:
    channels, height, width = in_shape
    out = variant.adapter_channels
    try:
        shapes = variant.program.evaluate(height, width)
    except ShapeFailure as failure:
        node = failure.node_index
        raise _fail(layer, f"{variant.builder}: {failure.message}",
                    node=variant.program.node_names[node] if node >= 0 else "input") from None
    adapter = nn.Conv2d(channels, out, 1, device=META)
    module = BackboneFeatures(adapter, variant.part, variant.builder)
    adapter_params = channels * out + out
    # Node outputs are (-1-padded) last three dims; at batch 1 their positive product is the
    # element count. float64: no int64 wrap even for a map near the activation budget.
    chw = shapes.node_chw().astype(np.float64)
    elements = int(np.where(chw > 0, chw, 1.0).prod(axis=1).sum())
    return _BackbonePart(module, shapes, variant.parameter_count + adapter_params,
                         shapes.macs + height * width * channels * out, elements)


def _compile_backbone(index: int, layer: Layer, in_shape: Shape,
                      used: set[int] | None = None) -> CompiledLayer:
    """``used``: ids of the modules already in this genome (a remembered part whose module is
    among them is built afresh, so no module object appears twice in one network)."""
    builder = _backbone_builder(layer)
    variant = get_variant(layer.name, builder)
    key = (layer.name, builder, in_shape)
    part = BACKBONE_MEMO.get(key)
    if part is None:
        part = _build_backbone(layer, variant, in_shape)
        BACKBONE_MEMO.put(key, part)
    elif used is not None and id(part.module) in used:
        part = _build_backbone(layer, variant, in_shape)
    return CompiledLayer(
        index, layer, part.module, in_shape, part.shapes.output_shape[1:4],
        part.parameter_count, part.macs, variant, part.shapes,
        weights_name(layer.name, layer.args[-1]), part.activation_elements)


def _build_custom(layer: Layer, in_shape: Shape, used: set[int]) -> BuiltLayer:
    """:func:`ml.arch.layers.build_layer`, remembered (built afresh when its module is already
    in this genome)."""
    key = (layer.name, spelled(layer.args), in_shape)
    built = LAYER_MEMO.get(key)
    if built is None:
        built = build_layer(layer, in_shape)
        LAYER_MEMO.put(key, built)
    elif id(built.module) in used:
        built = build_layer(layer, in_shape)
    return built


def _check_budgets(layer: Layer, parameters: int, activations: int) -> None:
    if parameters > MAX_PARAMETERS:
        raise _fail(layer, f"the network reaches {parameters:.3g} parameters here (budget "
                           f"{MAX_PARAMETERS:.3g})", "PARAMETER_BUDGET_EXCEEDED")
    if activations > MAX_ACTIVATION_ELEMENTS:
        raise _fail(layer, f"the network's activations reach {activations:.3g} elements here at "
                           f"1x3x2048x2448 (budget {MAX_ACTIVATION_ELEMENTS:.3g})",
                    "ACTIVATION_BUDGET_EXCEEDED")


@isolated("compiling")
def compile_genome(genome: EvaluatedGenome, input_shape: Shape = INPUT_SHAPE) -> CompiledNetwork:
    """Compile the genome's chain at ``input_shape``; raise ArchitectureError if it cannot run
    or passes a budget of :mod:`ml.genome.limits`."""
    shape = input_shape
    compiled: list[CompiledLayer] = []
    parameters = activations = 0
    used: set[int] = set()
    for index, layer in enumerate(genome.layers):
        if layer.name in BACKBONES:
            item = _compile_backbone(index, layer, shape, used)
        elif layer.name in LAYERS:
            built = _build_custom(layer, shape, used)
            out = built.out_shape
            item = CompiledLayer(index, layer, built.module, shape, out, built.parameter_count,
                                 built.macs, activation_elements=out[0] * out[1] * out[2])
        else:
            raise _fail(layer, "not a layer or backbone primitive", "UNSUPPORTED_LAYER")
        parameters += item.parameter_count
        activations += item.activation_elements
        _check_budgets(layer, parameters, activations)
        compiled.append(item)
        used.add(id(item.module))
        shape = item.out_shape
    head = _describe_head(genome, shape[0])
    if parameters + head.parameter_count > MAX_PARAMETERS:
        raise ArchitectureError(f"{genome.head}: the network has "
                                f"{parameters + head.parameter_count:.3g} parameters with its "
                                f"head (budget {MAX_PARAMETERS:.3g})", offset=genome.head_offset,
                                code="PARAMETER_BUDGET_EXCEEDED")
    return CompiledNetwork(
        genome=genome, layers=tuple(compiled),
        modules=nn.ModuleList(item.module for item in compiled),
        input_shape=input_shape, output_shape=shape,
        parameter_count=parameters, macs=sum(item.macs for item in compiled), head=head,
        activation_elements=activations)


def _describe_head(genome: EvaluatedGenome, in_channels: int) -> HeadSpec:
    """The head descriptor; a head torchvision cannot build on this feature map is a SHAPE_ERROR
    (e.g. FCOS's GroupNorm(32, C) needs C % 32 == 0: no FCOS genome in the data breaks it)."""
    if genome.head not in HEADS:
        raise ArchitectureError(f"{genome.head}: not a detection head", offset=genome.head_offset,
                                code="UNSUPPORTED_LAYER")
    try:
        return describe_head(genome.head, in_channels)
    except ValueError as exc:
        raise ArchitectureError(f"{genome.head} on {in_channels} channels: {exc}",
                                offset=genome.head_offset, code="SHAPE_ERROR") from None
