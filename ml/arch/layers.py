"""Custom layer primitives -> materialised torch.nn modules on the meta device.

The original built ``nn.Lazy*`` modules and let one forward at 1x3x2048x2448 materialise them.
Shapes are propagated analytically here, so each module is built directly as the class a lazy
module becomes after that forward (``LazyConv2d`` -> ``Conv2d`` ...) with its real input size, and
every check the forward would have failed is reproduced as an :class:`ArchitectureError`:
``SHAPE_ERROR`` where the forward would crash at that input, ``INVALID_LAYER`` where the
constructor itself would raise. The formulas mirror PyTorch's (checked against meta/CPU runs in
``tests/ml/arch/test_arch.py``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ml.errors import ArchitectureError
from ml.genome.catalogue import ENUMS, LAYERS, PRIMITIVES
from ml.genome.model import Layer

#: (channels, height, width) of the batch-1 tensor flowing between layers. After Swin_V2 the
#: tensor is NHWC and this is (H/32, W/32, C): the original treated dim 1 as channels regardless.
Shape = tuple[int, int, int]

META = torch.device("meta")


@dataclass(frozen=True)
class BuiltLayer:
    """A custom layer ready for the chain: its module, output shape and static costs."""

    module: nn.Module
    out_shape: Shape
    parameter_count: int
    #: Multiply-accumulates of one forward at the given input (conv layers only).
    macs: int


def _fail(layer: Layer, message: str, code: str = "SHAPE_ERROR") -> ArchitectureError:
    return ArchitectureError(f"{layer.name}: {message}", offset=layer.offset, code=code)


def _ints(layer: Layer, values: tuple, minimum: int) -> tuple[int, ...]:
    """Integer hyper-parameters, checked the way the torch constructor/forward would reject them."""
    for v in values:
        if not isinstance(v, int):
            raise _fail(layer, f"expected an integer hyper-parameter, got {v!r}", "INVALID_LAYER")
        if v < minimum:
            raise _fail(layer, f"hyper-parameter {v} is below {minimum}", "INVALID_LAYER")
    return tuple(int(v) for v in values)


def _spec_padding(kernel: tuple[int, int], padding: tuple[int, int]) -> tuple[int, int]:
    """The original's rule: no padding when ``min(kernel) < 2 * max(padding)``."""
    return (0, 0) if min(kernel) < 2 * max(padding) else padding


def _window(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_positive(layer: Layer, in_shape: Shape, out_hw: tuple[int, int], why: str) -> None:
    if min(out_hw) < 1:
        raise _fail(layer, f"input {in_shape[1]}x{in_shape[2]} gives output "
                           f"{out_hw[0]}x{out_hw[1]} ({why})")


# -------------------------------------------------------------------------------- convolutions
def _conv(layer: Layer, in_shape: Shape) -> BuiltLayer:
    c, h, w = in_shape
    out_c, k0, k1, s0, s1 = _ints(layer, layer.args[0:5], 1)
    p0, p1 = _ints(layer, layer.args[5:7], 0)
    mode_index, = _ints(layer, layer.args[7:8], 0)
    d0, d1, groups = _ints(layer, layer.args[8:11], 1)
    modes = ENUMS["PaddingMode"]
    if mode_index >= len(modes):
        raise _fail(layer, f"padding mode index {mode_index} out of range", "INVALID_LAYER")
    kernel, stride, dilation = (k0, k1), (s0, s1), (d0, d1)
    padding = _spec_padding(kernel, (p0, p1))
    if c % groups or out_c % groups:
        raise _fail(layer, f"channels {c}->{out_c} not divisible by groups={groups}",
                    "INVALID_LAYER")
    transposed = layer.name == "LazyConvTranspose2d"
    if transposed:
        # The original forced padding_mode='zeros' for transposed convolutions.
        hw = tuple((size - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + 1
                   for i, size in enumerate((h, w)))
        _check_positive(layer, in_shape, hw, "transposed convolution output too small")
        module = nn.ConvTranspose2d(c, out_c, kernel, stride, padding, dilation=dilation,
                                    groups=groups, device=META)
        macs = c * h * w * (out_c // groups) * k0 * k1
    else:
        mode = modes[mode_index]
        for i, size in enumerate((h, w)):
            if mode == "reflect" and padding[i] >= size:
                raise _fail(layer, f"reflect padding {padding[i]} needs input larger than {size}")
            if mode == "circular" and padding[i] > size:
                raise _fail(layer, f"circular padding {padding[i]} wraps around input {size}")
        hw = tuple(_window(size, kernel[i], stride[i], padding[i], dilation[i])
                   for i, size in enumerate((h, w)))
        _check_positive(layer, in_shape, hw, "kernel larger than padded input")
        module = nn.Conv2d(c, out_c, kernel, stride, padding, dilation, groups,
                           padding_mode=mode, device=META)
        macs = out_c * hw[0] * hw[1] * (c // groups) * k0 * k1
    params = (c * out_c // groups) * k0 * k1 + out_c
    return BuiltLayer(module, (out_c, hw[0], hw[1]), params, macs)


# ------------------------------------------------------------------------------------- pooling
def _pool_padding_check(layer: Layer, kernel: tuple, padding: tuple, dilation: tuple) -> None:
    for k, p, d in zip(kernel, padding, dilation):
        if p > ((k - 1) * d + 1) // 2:
            raise _fail(layer, f"pad {p} exceeds half of effective kernel size {k}")


def _max_pool(layer: Layer, in_shape: Shape) -> BuiltLayer:
    c, h, w = in_shape
    k0, k1, s0, s1 = _ints(layer, layer.args[0:4], 1)
    p0, p1 = _ints(layer, layer.args[4:6], 0)
    d0, d1 = _ints(layer, layer.args[6:8], 1)
    kernel, stride, dilation = (k0, k1), (s0, s1), (d0, d1)
    padding = _spec_padding(kernel, (p0, p1))
    _pool_padding_check(layer, kernel, padding, dilation)
    hw = tuple(_window(size, kernel[i], stride[i], padding[i], dilation[i])
               for i, size in enumerate((h, w)))
    _check_positive(layer, in_shape, hw, "output size is too small")
    module = nn.MaxPool2d(kernel, stride, padding, dilation)
    return BuiltLayer(module, (c, hw[0], hw[1]), 0, 0)


def _avg_pool(layer: Layer, in_shape: Shape) -> BuiltLayer:
    c, h, w = in_shape
    k0, k1, s0, s1 = _ints(layer, layer.args[0:4], 1)
    p0, p1 = _ints(layer, layer.args[4:6], 0)
    kernel, stride = (k0, k1), (s0, s1)
    padding = _spec_padding(kernel, (p0, p1))
    _pool_padding_check(layer, kernel, padding, (1, 1))
    hw = tuple(_window(size, kernel[i], stride[i], padding[i]) for i, size in enumerate((h, w)))
    _check_positive(layer, in_shape, hw, "output size is too small")
    return BuiltLayer(nn.AvgPool2d(kernel, stride, padding), (c, hw[0], hw[1]), 0, 0)


def _fractional_max_pool(layer: Layer, in_shape: Shape) -> BuiltLayer:
    c, h, w = in_shape
    k0, k1 = _ints(layer, layer.args[0:2], 1)
    # The original replaced a ratio <= 0.5 by 0.5.
    ratio = tuple(0.5 if r <= 0.5 else r for r in (_number(layer, v) for v in layer.args[2:4]))
    if not all(0 < r < 1 for r in ratio):
        raise _fail(layer, f"output_ratio must be between 0 and 1, got {ratio}", "INVALID_LAYER")
    hw = (int(h * ratio[0]), int(w * ratio[1]))
    for size, out, k in zip((h, w), hw, (k0, k1)):
        if out + k - 1 > size:
            raise _fail(layer, f"pool size {k} too large relative to input size {size}")
    # An empty map would crash the next layer or the head; report it where it is produced.
    _check_positive(layer, in_shape, hw, "empty output")
    module = nn.FractionalMaxPool2d((k0, k1), output_ratio=ratio)
    return BuiltLayer(module, (c, hw[0], hw[1]), 0, 0)


def _lp_pool(layer: Layer, in_shape: Shape) -> BuiltLayer:
    c, h, w = in_shape
    norm_type = _number(layer, layer.args[0])
    k0, k1, s0, s1 = _ints(layer, layer.args[1:5], 1)
    if norm_type == 0:
        raise _fail(layer, f"norm_type must be a non-zero number, got {norm_type!r}",
                    "INVALID_LAYER")
    # lp_pool2d is avg_pool2d(x ** p, kernel, stride, padding=0) underneath.
    hw = (_window(h, k0, s0, 0), _window(w, k1, s1, 0))
    _check_positive(layer, in_shape, hw, "output size is too small")
    return BuiltLayer(nn.LPPool2d(norm_type, (k0, k1), (s0, s1)), (c, hw[0], hw[1]), 0, 0)


def _adaptive_pool(layer: Layer, in_shape: Shape) -> BuiltLayer:
    o0, o1 = _ints(layer, layer.args[0:2], 0)
    _check_positive(layer, in_shape, (o0, o1), "empty output size")
    cls = nn.AdaptiveMaxPool2d if layer.name == "AdaptiveMaxPool2d" else nn.AdaptiveAvgPool2d
    return BuiltLayer(cls(output_size=(o0, o1)), (in_shape[0], o0, o1), 0, 0)


# ----------------------------------------------------------------------------------- resampling
def _upsample(layer: Layer, in_shape: Shape) -> BuiltLayer:
    c, h, w = in_shape
    scale, mode_index = layer.args
    modes = ENUMS["UpsampleMode"]
    if not isinstance(mode_index, int) or not 0 <= mode_index < len(modes):
        raise _fail(layer, f"upsample mode index {mode_index!r} out of range", "INVALID_LAYER")
    scale = _number(layer, scale)
    mode = modes[mode_index]
    module = nn.Upsample(scale_factor=scale, mode=mode)
    if mode in ("linear", "trilinear"):
        raise _fail(layer, f"mode '{mode}' does not accept a 4-D input")
    if not scale:
        raise _fail(layer, "scale factor 0 leaves neither size nor scale_factor defined")
    # ATen: output = (int64) (double(input) * scale), for each spatial dim.
    hw = (int(float(h) * float(scale)), int(float(w) * float(scale)))
    _check_positive(layer, in_shape, hw, "output size must be greater than 0")
    return BuiltLayer(module, (c, hw[0], hw[1]), 0, 0)


# ----------------------------------------------------------------------- same-shape primitives
def _same_shape(factory: Callable[[Layer], nn.Module]) -> Callable[[Layer, Shape], BuiltLayer]:
    def build(layer: Layer, in_shape: Shape) -> BuiltLayer:
        return BuiltLayer(factory(layer), in_shape, 0, 0)

    return build


def _number(layer: Layer, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(layer, f"expected a finite number, got {value!r}", "INVALID_LAYER")
    return value


def _dropout(layer: Layer) -> nn.Module:
    p = _number(layer, layer.args[0])
    if not 0 <= p <= 1:
        raise _fail(layer, f"dropout probability has to be between 0 and 1, got {p}",
                    "INVALID_LAYER")
    return nn.Dropout(p)


def _batch_norm(layer: Layer, in_shape: Shape) -> BuiltLayer:
    c, h, w = in_shape
    eps, momentum = (_number(layer, v) for v in layer.args)
    if h * w == 1:
        # The original's materialising forward ran in training mode with batch size 1.
        raise _fail(layer, f"expected more than 1 value per channel when training (input "
                           f"{c}x{h}x{w})")
    module = nn.BatchNorm2d(c, eps, momentum, device=META)
    return BuiltLayer(module, in_shape, 2 * c, 0)


_BUILDERS: dict[str, Callable[[Layer, Shape], BuiltLayer]] = {
    "LazyConv2d": _conv,
    "LazyConvTranspose2d": _conv,
    "MaxPool2d": _max_pool,
    "AvgPool2d": _avg_pool,
    "FractionalMaxPool2d": _fractional_max_pool,
    "LPPool2d": _lp_pool,
    "AdaptiveMaxPool2d": _adaptive_pool,
    "AdaptiveAvgPool2d": _adaptive_pool,
    "Upsample_2D": _upsample,
    "ReLU_2D": _same_shape(lambda layer: nn.ReLU()),
    "LeakyReLU_2D": _same_shape(lambda layer: nn.LeakyReLU(_number(layer, layer.args[0]))),
    "LogSigmoid_2D": _same_shape(lambda layer: nn.LogSigmoid()),
    "Sigmoid_2D": _same_shape(lambda layer: nn.Sigmoid()),
    "Tanh_2D": _same_shape(lambda layer: nn.Tanh()),
    "Threshold_2D": _same_shape(lambda layer: nn.Threshold(
        _number(layer, layer.args[0]), _number(layer, layer.args[1]))),
    "LazyBatchNorm2d": _batch_norm,
    "Dropout_2D": _same_shape(_dropout),
}
assert set(_BUILDERS) == set(LAYERS), "every custom layer primitive needs a builder"


def build_layer(layer: Layer, in_shape: Shape) -> BuiltLayer:
    """Build ``layer`` for a batch-1 ``in_shape`` input; ArchitectureError if it cannot run."""
    builder = _BUILDERS.get(layer.name)
    if builder is None:
        raise _fail(layer, "not a custom layer primitive", "UNSUPPORTED_LAYER")
    expected = len(PRIMITIVES[layer.name].fields)
    if len(layer.args) != expected:
        raise _fail(layer, f"expected {expected} hyper-parameters, got {len(layer.args)}",
                    "INVALID_LAYER")
    return builder(layer, in_shape)
