"""Architecture compiler: evaluated genomes -> meta-device torch networks, shapes and costs.

``compile_genome`` is the entry point; backbones are built, FX-traced and shape-compiled once per
process (:mod:`ml.arch.backbones`), custom layers are materialised per genome
(:mod:`ml.arch.layers`).
"""
from __future__ import annotations

from ml.arch import meta_init
from ml.arch.backbones import BackboneFeatures, BackboneVariant, get_variant, warm_up
from ml.arch.compiler import INPUT_SHAPE, CompiledLayer, CompiledNetwork, compile_genome
from ml.arch.heads import HeadSpec
from ml.arch.layers import Shape, build_layer

# Meta-device weights hold no values: skip their initialisation (ml.arch.meta_init).
meta_init.install()

__all__ = ["INPUT_SHAPE", "BackboneFeatures", "BackboneVariant", "CompiledLayer",
           "CompiledNetwork", "HeadSpec", "Shape", "build_layer", "compile_genome",
           "get_variant", "warm_up"]
