"""torchvision backbones per gene, built once per process on the meta device.

Building a variant (0.05-0.7 s), tracing it with FX (0.05-0.6 s) and compiling its shape program
are per-*variant* costs; a genome only pays for a 1x1 adapter conv and a program evaluation. The
kept part of each variant is therefore shared, read-only, by every compiled genome that uses it.
Weights are never loaded (``weights=None``); :func:`ml.genome.catalogue.weights_name` says which
weights the original would have requested.
"""
from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.fx as fx
import torchvision
from torch import nn
from torchvision.models import regnet

from ml.arch.shape_program import ShapeProgram, build_shape_program
from ml.arch.tracing import NodeTable, node_table, trace_part
from ml.genome.catalogue import BACKBONES, ENUMS, PRIMITIVES, backbone_builder

#: Genes whose adapter conv projects to 32 channels (the RegNet trunk expects the stem's 32).
_ADAPTER_32 = frozenset({"RegNet_X", "RegNet_Y"})
_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_SHUFFLENET_CHILDREN = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")
#: Inception3 children in forward order, without AuxLogits, avgpool, dropout and fc.
_INCEPTION_CHILDREN = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
    "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
    "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)
_KEPT_CHILDREN = {"ResNet": _RESNET_CHILDREN, "ResNeXt": _RESNET_CHILDREN,
                  "Wide_ResNet": _RESNET_CHILDREN, "ShuffleNet_V2": _SHUFFLENET_CHILDREN,
                  "Inception_V3": _INCEPTION_CHILDREN}


def adapter_channels(gene: str) -> int:
    """Output channels of the 1x1 adapter conv the original put in front of the backbone."""
    return 32 if gene in _ADAPTER_32 else 3


def gene_builder(gene: str, args: tuple) -> str:
    """torchvision builder name of a backbone gene's evaluated arguments."""
    return backbone_builder(gene, None if gene == "Inception_V3" else args[0])


def all_builders() -> dict[str, str]:
    """Every reachable variant: builder name -> gene."""
    out = {}
    for gene in sorted(BACKBONES):
        enum = None if gene == "Inception_V3" else PRIMITIVES[gene].fields[0].type
        sizes = (None,) if enum is None else range(len(ENUMS[enum]))
        for size in sizes:
            out[backbone_builder(gene, size)] = gene
    return out


class BackboneFeatures(nn.Module):
    """The original's ``*Features`` wrapper: a 1x1 adapter conv, then the kept part.

    Unlike the original (a fresh, unregistered ``LazyConv2d`` created inside every forward), the
    adapter is a registered, materialised ``Conv2d`` so it shows up in parameters and state.
    """

    def __init__(self, adapter: nn.Conv2d, model: nn.Module, builder: str) -> None:
        super().__init__()
        self.adapter = adapter
        self.model = model
        self.builder = builder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.adapter(x))

    def extra_repr(self) -> str:
        return f"builder={self.builder!r}"


# ------------------------------------------------------------------------------------ building
_BUILD_LOCK = threading.RLock()


@contextmanager
def _regnet_block_params_on_cpu() -> Iterator[None]:
    """RegNet builders compute their widths with torch ops and ``.tolist()``, which a meta default
    device cannot do; run just that computation on the CPU while the modules land on meta."""
    original = regnet.BlockParams.__dict__["from_init_params"]

    def on_cpu(cls: type, *args: object, **kwargs: object) -> regnet.BlockParams:
        with torch.device("cpu"):
            return original.__func__(cls, *args, **kwargs)

    regnet.BlockParams.from_init_params = classmethod(on_cpu)
    try:
        yield
    finally:
        regnet.BlockParams.from_init_params = original


def build_classifier(builder: str) -> nn.Module:
    """The full torchvision classifier on the meta device, random-init structure, no weights."""
    kwargs = {"init_weights": False} if builder == "inception_v3" else {}
    with _BUILD_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _regnet_block_params_on_cpu(), torch.device("meta"):
            return getattr(torchvision.models, builder)(weights=None, **kwargs)


def kept_part(gene: str, model: nn.Module) -> nn.Module:
    """The part of the classifier the original kept as features."""
    children = _KEPT_CHILDREN.get(gene)
    if children is not None:
        return nn.Sequential(*(getattr(model, name) for name in children))
    if gene in _ADAPTER_32:
        return model.trunk_output  # the stem is dropped; the adapter feeds the trunk 32 channels
    return model.features


# --------------------------------------------------------------------------------------- cache
@dataclass(frozen=True)
class BackboneVariant:
    """One torchvision variant, built, traced and compiled once per process."""

    gene: str
    builder: str
    adapter_channels: int
    part: nn.Module
    graph_module: fx.GraphModule
    program: ShapeProgram
    nodes: NodeTable
    parameter_count: int
    #: Cold costs in seconds: build, trace, shape program.
    timings: tuple[float, float, float]


_VARIANTS: dict[str, BackboneVariant] = {}


def _build_variant(gene: str, builder: str) -> BackboneVariant:
    t0 = time.perf_counter()
    part = kept_part(gene, build_classifier(builder))
    part.train()  # the original's materialising forward ran in training mode
    t1 = time.perf_counter()
    gm = trace_part(part)
    t2 = time.perf_counter()
    channels = adapter_channels(gene)
    program = build_shape_program(gm, channels)
    table = node_table(gm)
    t3 = time.perf_counter()
    return BackboneVariant(gene, builder, channels, part, gm, program, table,
                           sum(p.numel() for p in part.parameters()), (t1 - t0, t2 - t1, t3 - t2))


def get_variant(gene: str, builder: str) -> BackboneVariant:
    """The cached variant for ``builder`` (built on first use, once per process)."""
    variant = _VARIANTS.get(builder)
    if variant is None:
        with _BUILD_LOCK:
            variant = _VARIANTS.get(builder)
            if variant is None:
                variant = _VARIANTS[builder] = _build_variant(gene, builder)
    return variant


def cached_variants() -> dict[str, BackboneVariant]:
    """A snapshot of the variants built so far (for benchmarks and tests)."""
    return dict(_VARIANTS)


def warm_up(builders: list[str] | None = None, freeze_heap: bool = False) -> None:
    """Build (and trace and compile) variants ahead of time, e.g. at service start-up.

    ``freeze_heap`` (for a long-lived process that is about to encode many genomes): collect,
    then move every object alive into the cyclic collector's permanent generation
    (``gc.freeze``). The backbones' modules, FX graphs and node tables never die, yet each full
    collection would walk them again, a sizeable share of encoding never-seen genomes
    (docs/results.md, "Figures moved from docstrings"). Frozen objects are still freed by
    reference counting; only a cycle alive at this moment would stay."""
    names = all_builders()
    for builder in builders or list(names):
        get_variant(names[builder], builder)
    if freeze_heap:
        gc.collect()
        gc.freeze()
