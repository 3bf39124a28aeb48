"""Architecture compiler: layer rules, shape programs vs real meta forwards, errors, caching."""
from __future__ import annotations

import os
import random

import pytest
import torch
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

import ml.arch.backbones as backbones
from ml.arch import compile_genome
from ml.arch.backbones import BackboneFeatures, all_builders, get_variant
from ml.arch.heads import head_modules
from ml.arch.layers import build_layer
from ml.arch.shape_program import ShapeFailure
from ml.errors import ArchitectureError
from ml.genome import load
from ml.genome.catalogue import ENUMS, LAYERS
from ml.genome.model import EvaluatedGenome, Layer

TAIL = ", SGD(1.0, 1.0, 1.0, 1.0), StepLR(10, 0.5), 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)"
#: One (the smallest) variant per backbone gene; NAS_SURROGATE_SLOW_TESTS=1 checks all 42.
ONE_PER_GENE = ("convnext_tiny", "densenet121", "efficientnet_v2_s", "inception_v3",
                "mobilenet_v3_small", "regnet_x_400mf", "regnet_y_400mf", "resnext50_32x4d",
                "resnet50", "shufflenet_v2_x0_5", "swin_v2_t", "wide_resnet50_2")
CHECKED_VARIANTS = tuple(all_builders()) if os.environ.get("NAS_SURROGATE_SLOW_TESTS") \
    else ONE_PER_GENE


def genome(chain: str, head: str = "RetinaNet_Head") -> str:
    return f"{head}({chain}{TAIL}"


def meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


# ----------------------------------------------------------------------------- custom layers
def test_conv_padding_rule_and_materialisation():
    # min(k) = 3 < 2 * max(p) = 4 -> padding dropped; mode index 1 = reflect is kept for Conv2d.
    built = build_layer(Layer("LazyConv2d", (8, 3, 5, 1, 2, 2, 1, 1, 1, 1, 1)), (5, 40, 50))
    conv = built.module
    assert type(conv) is nn.Conv2d and conv.weight.device.type == "meta"
    assert (conv.in_channels, conv.out_channels, conv.padding) == (5, 8, (0, 0))
    assert conv.padding_mode == "reflect" and conv.kernel_size == (3, 5)
    assert built.out_shape == (8, 38, 23)
    assert built.parameter_count == sum(p.numel() for p in conv.parameters())
    # min(k) = 5 >= 2 * max(p) = 4 -> padding kept.
    kept = build_layer(Layer("LazyConv2d", (4, 5, 5, 1, 1, 2, 1, 0, 1, 1, 1)), (3, 9, 9)).module
    assert kept.padding == (2, 1) and kept.padding_mode == "zeros"


def test_transposed_conv_forces_zero_padding_mode():
    layer = Layer("LazyConvTranspose2d", (6, 3, 3, 2, 2, 1, 1, 2, 1, 1, 1))
    built = build_layer(layer, (4, 10, 12))
    assert type(built.module) is nn.ConvTranspose2d
    assert built.module.padding_mode == "zeros" and built.module.in_channels == 4
    assert built.out_shape == (6, 19, 23)


def test_fractional_ratio_and_generic_branch():
    frac = build_layer(Layer("FractionalMaxPool2d", (2, 3, 0.2, 0.7)), (3, 20, 30))
    assert frac.module.output_ratio == (0.5, 0.7) and frac.out_shape == (3, 10, 21)
    bn = build_layer(Layer("LazyBatchNorm2d", (0.5, 0.25)), (7, 4, 4)).module
    assert type(bn) is nn.BatchNorm2d and (bn.num_features, bn.eps, bn.momentum) == (7, 0.5, 0.25)
    assert type(build_layer(Layer("Dropout_2D", (0.3,)), (1, 2, 2)).module) is nn.Dropout
    assert build_layer(Layer("LeakyReLU_2D", (42.0,)), (1, 2, 2)).module.negative_slope == 42.0
    threshold = build_layer(Layer("Threshold_2D", (3.0, 9.5)), (1, 2, 2)).module
    assert (threshold.threshold, threshold.value) == (3.0, 9.5)
    for name, cls in (("ReLU_2D", nn.ReLU), ("LogSigmoid_2D", nn.LogSigmoid),
                      ("Sigmoid_2D", nn.Sigmoid), ("Tanh_2D", nn.Tanh)):
        assert type(build_layer(Layer(name, ()), (1, 2, 2)).module) is cls


def _random_layer(rng: random.Random) -> Layer:
    name = rng.choice(sorted(LAYERS))
    k = lambda: rng.choice((1, 2, 3, 3, 5, 7, 11))  # noqa: E731
    s = lambda: rng.choice((1, 1, 2, 3, 9))  # noqa: E731
    p = lambda: rng.choice((0, 0, 1, 2, 4, 9))  # noqa: E731
    d = lambda: rng.choice((1, 1, 2, 10))  # noqa: E731
    f = lambda hi: rng.uniform(0, hi)  # noqa: E731
    args = {
        "LazyConv2d": lambda: (rng.randint(1, 6), k(), k(), s(), s(), p(), p(), rng.randint(0, 3),
                               d(), d(), 1),
        "MaxPool2d": lambda: (k(), k(), s(), s(), p(), p(), d(), d()),
        "AvgPool2d": lambda: (k(), k(), s(), s(), p(), p()),
        "FractionalMaxPool2d": lambda: (k(), k(), f(0.999), f(0.999)),
        "LPPool2d": lambda: (rng.choice((2, 2.5, 4.1)), k(), k(), s(), s()),
        "AdaptiveMaxPool2d": lambda: (rng.randint(1, 40), rng.randint(1, 40)),
        "Upsample_2D": lambda: (f(4), rng.randint(0, 4)),
        "LeakyReLU_2D": lambda: (f(100),), "Threshold_2D": lambda: (f(100), f(100)),
        "LazyBatchNorm2d": lambda: (f(100), f(100)), "Dropout_2D": lambda: (f(1),),
    }
    args["LazyConvTranspose2d"] = args["LazyConv2d"]
    args["AdaptiveAvgPool2d"] = args["AdaptiveMaxPool2d"]
    return Layer(name, args.get(name, lambda: ())())


def _original_module(layer: Layer) -> nn.Module:
    """Spec §2.2 taken literally: the lazy modules the original built (independent re-statement)."""
    a = layer.args

    def padding(k0: int, k1: int, p0: int, p1: int) -> tuple[int, int]:
        return (0, 0) if min(k0, k1) < 2 * max(p0, p1) else (p0, p1)

    if layer.name in ("LazyConv2d", "LazyConvTranspose2d"):
        cls = nn.LazyConv2d if layer.name == "LazyConv2d" else nn.LazyConvTranspose2d
        mode = ENUMS["PaddingMode"][a[7]] if layer.name == "LazyConv2d" else "zeros"
        return cls(a[0], (a[1], a[2]), (a[3], a[4]), padding(*a[1:3], *a[5:7]),
                   dilation=(a[8], a[9]), groups=a[10], padding_mode=mode, device="meta")
    if layer.name == "MaxPool2d":
        return nn.MaxPool2d((a[0], a[1]), (a[2], a[3]), padding(*a[0:2], *a[4:6]), (a[6], a[7]))
    if layer.name == "AvgPool2d":
        return nn.AvgPool2d((a[0], a[1]), (a[2], a[3]), padding(*a[0:2], *a[4:6]))
    if layer.name == "FractionalMaxPool2d":
        return nn.FractionalMaxPool2d((a[0], a[1]), output_ratio=(max(a[2], .5), max(a[3], .5)))
    if layer.name == "LPPool2d":
        return nn.LPPool2d(a[0], (a[1], a[2]), (a[3], a[4]))
    if layer.name.startswith("Adaptive"):
        return getattr(nn, layer.name)(output_size=(a[0], a[1]))
    if layer.name == "Upsample_2D":
        return nn.Upsample(scale_factor=a[0], mode=ENUMS["UpsampleMode"][a[1]])
    if layer.name == "LazyBatchNorm2d":
        return nn.LazyBatchNorm2d(*a, device="meta")
    return getattr(nn, layer.name.split("_")[0])(*a)


def test_custom_layers_match_the_original_lazy_modules_on_meta():
    rng = random.Random(7)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(600):
        layer = _random_layer(rng)
        in_shape = (rng.randint(1, 6), rng.randint(1, 40), rng.randint(1, 40))
        try:
            ours = build_layer(layer, in_shape)
        except ArchitectureError as err:
            assert err.code == "SHAPE_ERROR", (layer, err)
            try:
                out = _original_module(layer)(meta(1, *in_shape))
            except (RuntimeError, ValueError, NotImplementedError):
                outcomes["error"] += 1
                continue
            # We reject empty outputs where they are produced (the next op would crash).
            assert out.numel() == 0, (layer, in_shape, err)
            outcomes["error"] += 1
            continue
        original = _original_module(layer)
        out = original(meta(1, *in_shape))
        assert tuple(out.shape[1:]) == ours.out_shape, (layer, in_shape)
        assert type(original) is type(ours.module), layer  # lazy modules became their base class
        assert original.extra_repr() == ours.module.extra_repr(), layer
        assert sum(p.numel() for p in original.parameters()) == ours.parameter_count
        outcomes["ok"] += 1
    assert outcomes["ok"] > 300 and outcomes["error"] > 50


# ------------------------------------------------------------------------- backbone programs
def _real_shapes(variant, height: int, width: int) -> list | Exception:
    gm = variant.graph_module
    try:
        ShapeProp(gm).propagate(meta(1, variant.adapter_channels, height, width))
    except Exception as exc:
        return exc
    body = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    meta_of = [n.meta.get("tensor_meta") for n in body]
    return [tuple(m.shape) if hasattr(m, "shape") else None for m in meta_of]


@pytest.mark.parametrize("builder", CHECKED_VARIANTS)
def test_shape_program_matches_meta_forward(builder, capsys):
    variant = get_variant(all_builders()[builder], builder)
    rng = random.Random(builder)
    # A comfortable size, a small one (often failing) and a lopsided one (one axis failing).
    sizes = [(rng.randint(65, 2500), rng.randint(65, 2500)),
             (rng.randint(1, 64), rng.randint(1, 64)), (rng.randint(1, 40), rng.randint(200, 900))]
    for height, width in sizes:
        real = _real_shapes(variant, height, width)
        capsys.readouterr()  # ShapeProp prints the failing node's traceback
        try:
            result = variant.program.evaluate(height, width)
        except ShapeFailure as failure:
            assert isinstance(real, Exception), (builder, height, width, failure.message)
            continue
        assert not isinstance(real, Exception), (builder, height, width, real)
        ours = [result.node_shape(i) for i in range(len(real))]
        assert ours == real, (builder, height, width)


def test_resnet50_macs_match_the_published_count():
    # torchvision reports 4.09 GFLOPS (multiply-accumulates) for resnet50 at 224, fc included.
    result = get_variant("ResNet", "resnet50").program.evaluate(224, 224)
    fc = 2048 * 1000
    assert abs(result.macs + fc - 4.089e9) / 4.089e9 < 0.005


# ---------------------------------------------------------------------------------- compiler
def test_compile_shapes_costs_and_modules():
    net = compile_genome(load(genome("LazyBatchNorm2d(ResNet(MaxPool2d(IN0, 3, 3, 2, 2, 1, 1, "
                                     "1, 1), 2, 1), 0.5, 0.5)")))
    pool, resnet, bn = net.layers
    assert pool.out_shape == (3, 1024, 1224)
    assert resnet.in_shape == (3, 1024, 1224) and resnet.out_shape == (2048, 32, 39)
    assert resnet.weights == "IMAGENET1K_V1" and resnet.variant.builder == "resnet50"
    assert isinstance(resnet.module, BackboneFeatures)
    assert type(resnet.module.adapter) is nn.Conv2d and resnet.module.adapter.in_channels == 3
    assert bn.module.num_features == 2048 and net.output_shape == (2048, 32, 39)
    counted = sum(p.numel() for m in net.modules for p in m.parameters())
    assert net.parameter_count == counted
    assert net.macs == resnet.macs > 0
    assert all(p.device.type == "meta" for p in net.modules.parameters())


def test_every_real_genome_compiles(genomes):
    """Every CSV genome was trained by the evolution, so none may fail to compile."""
    for text in genomes:
        compile_genome(load(text))


def test_regnet_adapter_and_swin_quirk():
    regnet = compile_genome(load(genome("RegNet_Y(IN0, 4, 0)"))).layers[0]
    assert regnet.module.adapter.out_channels == 32 and regnet.out_shape == (440, 128, 153)
    net = compile_genome(load(genome("Swin_V2(MobileNet_V3(IN0, 1, 0), 2, 0)")))
    # Swin's NHWC output flows on as if it were NCHW: "channels" is H/32.
    assert net.output_shape == (2, 3, 768) and net.head.in_channels == 2


@pytest.mark.parametrize("head,anchors", [("FasterRCNN_Head", 21), ("RetinaNet_Head", 21),
                                          ("FCOS_Head", 1)])
def test_head_descriptor_and_detector(head, anchors):
    net = compile_genome(load(genome("AdaptiveAvgPool2d(DenseNet(IN0, 0, 0), 9, 11)", head)))
    spec = net.head
    assert (spec.type, spec.num_classes, spec.anchors_per_location) == (head, 7, anchors)
    assert spec.in_channels == 1024
    assert spec.parameter_count == sum(p.numel() for m in head_modules(head, 1024).values()
                                       for p in m.parameters())
    detector = net.to_detector()
    assert sum(p.numel() for p in detector.parameters()) == net.total_parameter_count


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("chain,failing,code", [
    ("LazyConv2d(AdaptiveMaxPool2d(IN0, 7, 7), 8, 11, 11, 1, 1, 0, 0, 0, 1, 1, 1)",
     "LazyConv2d", "SHAPE_ERROR"),
    ("Inception_V3(AdaptiveAvgPool2d(IN0, 7, 7), 0)", "Inception_V3", "SHAPE_ERROR"),
    ("Sigmoid_2D(ResNet(AdaptiveAvgPool2d(IN0, 7, 7), 2, 0))", "ResNet", "SHAPE_ERROR"),
    ("ReLU_2D(Upsample_2D(IN0, 2.0, 1))", "Upsample_2D", "SHAPE_ERROR"),
    ("LazyBatchNorm2d(AdaptiveMaxPool2d(IN0, 1, 1), 0.1, 0.1)", "LazyBatchNorm2d",
     "SHAPE_ERROR"),
    ("MaxPool2d(IN0, 9, 9, 1, 1, 0, 0, 10, 10)", None, None),
])
def test_failures_raise_with_code_and_offset(chain, failing, code):
    text = genome(chain)
    if failing is None:
        compile_genome(load(text))
        return
    with pytest.raises(ArchitectureError) as info:
        compile_genome(load(text))
    assert info.value.code == code
    assert info.value.offset == text.index(failing + "(")


def _evaluated(layers: tuple[Layer, ...], head: str = "RetinaNet_Head") -> EvaluatedGenome:
    return EvaluatedGenome(layers, head, {}, {}, (1.0,) * 7, head_offset=2)


@pytest.mark.parametrize("layers,head,code,offset", [
    ((Layer("Dropout_2D", (1.5,), 7),), "RetinaNet_Head", "INVALID_LAYER", 7),
    ((Layer("LazyConv2d", (8, 3.0, 3, 1, 1, 0, 0, 0, 1, 1, 1), 5),), "FCOS_Head",
     "INVALID_LAYER", 5),
    ((Layer("ReLU_2D", (), 9), Layer("ResNet", (5, 0), 3)), "FCOS_Head", "INVALID_LAYER", 3),
    ((Layer("Upsample_2D", (2.0, 9), 4),), "FCOS_Head", "INVALID_LAYER", 4),
    ((Layer("Skip_2D", (1,), 4),), "FCOS_Head", "UNSUPPORTED_LAYER", 4),
    ((Layer("ReLU_2D", (), 4),), "SSD_Head", "UNSUPPORTED_LAYER", 2),
    (tuple(Layer("Upsample_2D", (99.0, 0), 10 * i) for i in range(9)), "FCOS_Head",
     "ACTIVATION_BUDGET_EXCEEDED", 10),  # the second 99x upsample passes 2**38 elements
])
def test_compiler_codes_on_unvalidated_genomes(layers, head, code, offset):
    """The compiler is defensive about genomes that did not come through ``load``'s validation."""
    with pytest.raises(ArchitectureError) as info:
        compile_genome(_evaluated(layers, head))
    assert (info.value.code, info.value.offset) == (code, offset)


def test_backbone_failure_names_the_node():
    with pytest.raises(ArchitectureError) as info:
        compile_genome(load(genome("ResNet(AdaptiveAvgPool2d(IN0, 7, 7), 2, 0)")))
    assert info.value.context["node"].endswith(("bn1", "bn2", "bn3", "downsample.1"))
    assert "more than 1 value per channel" in info.value.message


def test_fcos_needs_channels_divisible_by_32():
    text = genome("LazyConv2d(IN0, 7, 3, 3, 1, 1, 1, 1, 0, 1, 1, 1)", "FCOS_Head")
    with pytest.raises(ArchitectureError) as info:
        compile_genome(load(text))
    assert info.value.code == "SHAPE_ERROR" and info.value.offset == 0
    compile_genome(load(genome("LazyConv2d(IN0, 7, 3, 3, 1, 1, 1, 1, 0, 1, 1, 1)")))


# ------------------------------------------------------------------------------------- cache
def test_variants_are_built_and_traced_once(monkeypatch):
    first = get_variant("MobileNet_V3", "mobilenet_v3_small")
    assert get_variant("MobileNet_V3", "mobilenet_v3_small") is first

    def no_tracing(*_args: object) -> None:
        raise AssertionError("a cached variant must not be traced again")

    monkeypatch.setattr(backbones, "trace_part", no_tracing)
    monkeypatch.setattr(backbones, "build_classifier", no_tracing)
    a = compile_genome(load(genome("MobileNet_V3(IN0, 1, 0)")))
    b = compile_genome(load(genome("MobileNet_V3(Tanh_2D(IN0), 1, 0)")))
    assert a.layers[0].module.model is b.layers[1].module.model is first.part
    # The compile memo (ml.memo) shares a layer compiled at the same input between genomes...
    assert a.layers[0].module.adapter is b.layers[1].module.adapter
    # ... but never puts one module object twice into one network.
    chain = "Tanh_2D(Tanh_2D(MobileNet_V3(MobileNet_V3(IN0, 1, 0), 1, 0)))"
    c = compile_genome(load(genome(chain)))
    ids = [id(m) for layer in c.layers for m in (layer.module, *layer.module.children())
           if m is not first.part]
    assert len(ids) == len(set(ids))
