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
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ml.arch.backbones import BackboneFeatures, BackboneVariant, gene_builder, get_variant
from ml.arch.heads import HeadSpec, build_detector, describe_head
from ml.arch.layers import META, Shape, build_layer
from ml.arch.shape_program import ProgramResult, ShapeFailure
from ml.errors import ArchitectureError
from ml.genome.catalogue import BACKBONES, ENUMS, HEADS, LAYERS, PRIMITIVES, weights_name
from ml.genome.model import EvaluatedGenome, Layer

#: (C, H, W) of the image the evolution's materialising forward used.
INPUT_SHAPE: Shape = (3, 2048, 2448)
#: torch cannot hold a tensor with more elements (chained Upsample/ConvTranspose layers get there).
MAX_NUMEL = 2 ** 63 - 1


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


def _compile_backbone(index: int, layer: Layer, in_shape: Shape) -> CompiledLayer:
    variant = get_variant(layer.name, _backbone_builder(layer))
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
    return CompiledLayer(
        index, layer, module, in_shape, shapes.output_shape[1:4],
        variant.parameter_count + adapter_params, shapes.macs + height * width * channels * out,
        variant, shapes, weights_name(layer.name, layer.args[-1]))


def compile_genome(genome: EvaluatedGenome, input_shape: Shape = INPUT_SHAPE) -> CompiledNetwork:
    """Compile the genome's chain at ``input_shape``; raise ArchitectureError if it cannot run."""
    shape = input_shape
    compiled: list[CompiledLayer] = []
    for index, layer in enumerate(genome.layers):
        if layer.name in BACKBONES:
            item = _compile_backbone(index, layer, shape)
        elif layer.name in LAYERS:
            built = build_layer(layer, shape)
            item = CompiledLayer(index, layer, built.module, shape, built.out_shape,
                                 built.parameter_count, built.macs)
        else:
            raise _fail(layer, "not a layer or backbone primitive", "UNSUPPORTED_LAYER")
        if item.out_shape[0] * item.out_shape[1] * item.out_shape[2] > MAX_NUMEL:
            raise _fail(layer, f"output {item.out_shape} has more elements than a tensor can hold")
        compiled.append(item)
        shape = item.out_shape
    return CompiledNetwork(
        genome=genome, layers=tuple(compiled),
        modules=nn.ModuleList(item.module for item in compiled),
        input_shape=input_shape, output_shape=shape,
        parameter_count=sum(item.parameter_count for item in compiled),
        macs=sum(item.macs for item in compiled),
        head=_describe_head(genome, shape[0]))


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
