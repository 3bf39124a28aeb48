"""Node-type vocabulary of the seed's encodings: 27 leaf-module types + "other" at 0."""
from __future__ import annotations

#: The 27 leaf-module classes, sorted (identical to ``shared/data/module_types.json``).
MODULE_TYPES: tuple[str, ...] = (
    "torch.nn.modules.activation.GELU",
    "torch.nn.modules.activation.Hardsigmoid",
    "torch.nn.modules.activation.Hardswish",
    "torch.nn.modules.activation.LeakyReLU",
    "torch.nn.modules.activation.LogSigmoid",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.activation.SiLU",
    "torch.nn.modules.activation.Sigmoid",
    "torch.nn.modules.activation.Tanh",
    "torch.nn.modules.activation.Threshold",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.conv.ConvTranspose2d",
    "torch.nn.modules.dropout.Dropout",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.normalization.LayerNorm",
    "torch.nn.modules.pooling.AdaptiveAvgPool2d",
    "torch.nn.modules.pooling.AdaptiveMaxPool2d",
    "torch.nn.modules.pooling.AvgPool2d",
    "torch.nn.modules.pooling.FractionalMaxPool2d",
    "torch.nn.modules.pooling.LPPool2d",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.upsampling.Upsample",
    "torchvision.models.convnext.LayerNorm2d",
    "torchvision.ops.misc.Permute",
    "torchvision.ops.stochastic_depth.StochasticDepth",
)
NUM_NODE_TYPES = len(MODULE_TYPES) + 1  # index 0 = not a leaf module of the vocabulary
_INDEX = {name: i + 1 for i, name in enumerate(MODULE_TYPES)}


def type_index(module_type: str | None) -> int:
    """1 + position in :data:`MODULE_TYPES`, or 0 for non-module nodes and unknown classes."""
    return _INDEX.get(module_type, 0) if module_type else 0
