"""Detection heads: a descriptor per genome, and the real torchvision parts on meta.

The head's size depends only on its type and the feature map's channel count (``shape[1]`` of the
chain's output, Swin's NHWC quirk included), so parameter counts are cached per ``(head, C)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

#: conf.toml [model] num_classes (the AOT classes).
NUM_CLASSES = 7
#: MultiScaleRoIAlign output size of the FasterRCNN box head.
ROI_OUTPUT_SIZE = 21
ROI_SAMPLING_RATIO = 4
REPRESENTATION_SIZE = 1024
#: GeneralizedRCNNTransform resize and post-processing arguments common to the three heads.
DETECTOR_KWARGS = {"min_size": 1200, "max_size": 2000}

_MULTI_SIZES = ((4, 8, 16, 32, 64, 128, 256),)
_MULTI_RATIOS = ((0.5, 1.0, 2.0),)
#: FCOS gets 8 single-size levels but one aspect-ratio tuple: zip() keeps only size 4.
_FCOS_SIZES = ((4,), (8,), (16,), (32,), (64,), (128,), (256,), (512,))
_FCOS_RATIOS = ((1.0,),)


def anchor_generator(head: str) -> AnchorGenerator:
    """The anchor generator the original passed to the detector."""
    if head == "FCOS_Head":
        return AnchorGenerator(sizes=_FCOS_SIZES, aspect_ratios=_FCOS_RATIOS)
    return AnchorGenerator(sizes=_MULTI_SIZES, aspect_ratios=_MULTI_RATIOS)


@cache
def anchors_per_location(head: str) -> int:
    """FasterRCNN/RetinaNet 21 (7 sizes x 3 ratios), FCOS 1 (zip truncation)."""
    return anchor_generator(head).num_anchors_per_location()[0]


@dataclass(frozen=True)
class HeadSpec:
    """What the detector on top of the chain looks like."""

    type: str
    num_classes: int
    anchors_per_location: int
    in_channels: int
    parameter_count: int


def head_modules(head: str, in_channels: int) -> dict[str, nn.Module]:
    """The trainable head parts the detector builds for ``in_channels``, on the meta device."""
    anchors = anchors_per_location(head)
    with torch.device("meta"):
        if head == "FasterRCNN_Head":
            return {"rpn_head": RPNHead(in_channels, anchors),
                    "box_head": TwoMLPHead(in_channels * ROI_OUTPUT_SIZE ** 2, REPRESENTATION_SIZE),
                    "box_predictor": FastRCNNPredictor(REPRESENTATION_SIZE, NUM_CLASSES)}
        if head == "RetinaNet_Head":
            return {"head": RetinaNetHead(in_channels, anchors, NUM_CLASSES)}
        if head == "FCOS_Head":
            return {"head": FCOSHead(in_channels, anchors, NUM_CLASSES)}
    raise ValueError(f"unknown head {head!r}")


#: Heads whose layers build only at multiples of this many input channels (FCOSHead's
#: ``GroupNorm(32, in_channels)``); elsewhere the build itself raises, as in the evolution.
_CHANNEL_MULTIPLE = {"FCOS_Head": 32}


def _built_parameter_count(head: str, in_channels: int) -> int:
    return sum(p.numel() for m in head_modules(head, in_channels).values() for p in m.parameters())


@cache
def _parameter_polynomial(head: str) -> tuple[int, int, int] | None:
    """``(a, b, d)`` with a head's parameter count ``a c^2 + b c + d`` for ``c`` input channels:
    every weight is a product of at most two channel counts, so three builds (c = 32, 64, 96)
    fix it, and a fourth (128) checks it. None if they disagree (then every count is built)."""
    f1, f2, f3, f4 = (_built_parameter_count(head, 32 * k) for k in (1, 2, 3, 4))
    a, rest = divmod(f3 - 2 * f2 + f1, 2 * 32 ** 2)
    b, rest_b = divmod(f2 - f1 - a * (64 ** 2 - 32 ** 2), 32)
    d = f1 - a * 32 ** 2 - b * 32
    if rest or rest_b or a * 128 ** 2 + b * 128 + d != f4:
        return None
    return a, b, d


@lru_cache(maxsize=8192)
def head_parameter_count(head: str, in_channels: int) -> int:
    """Trainable parameters of ``head`` on ``in_channels`` (what building it would count;
    a new channel count costs no build: ~2 ms each, paid by most never-seen genomes)."""
    polynomial = _parameter_polynomial(head)  # an unknown head raises as building it would
    if polynomial is None or in_channels < 1 or in_channels % _CHANNEL_MULTIPLE.get(head, 1):
        return _built_parameter_count(head, in_channels)
    a, b, d = polynomial
    return a * in_channels ** 2 + b * in_channels + d


def describe_head(head: str, in_channels: int) -> HeadSpec:
    return HeadSpec(head, NUM_CLASSES, anchors_per_location(head), in_channels,
                    head_parameter_count(head, in_channels))


def build_detector(head: str, backbone: nn.Module, out_channels: int) -> nn.Module:
    """The full torchvision detector around ``backbone`` on the meta device (for inspection).

    ``backbone`` must return one feature map; torchvision wraps it as ``{'0': features}`` as the
    original did. The original's Custom* subclasses only replaced forward methods.
    """
    backbone.out_channels = out_channels
    common = dict(DETECTOR_KWARGS)
    with torch.device("meta"):
        if head == "FasterRCNN_Head":
            return FasterRCNN(backbone, num_classes=NUM_CLASSES,
                              rpn_anchor_generator=anchor_generator(head),
                              box_roi_pool=MultiScaleRoIAlign(["0"], ROI_OUTPUT_SIZE,
                                                              ROI_SAMPLING_RATIO),
                              box_score_thresh=0, box_nms_thresh=1, box_detections_per_img=100,
                              **common)
        detector = {"FCOS_Head": FCOS, "RetinaNet_Head": RetinaNet}.get(head)
        if detector is None:
            raise ValueError(f"unknown head {head!r}")
        return detector(backbone, NUM_CLASSES, anchor_generator=anchor_generator(head),
                        score_thresh=0, nms_thresh=1, detections_per_img=100, **common)
