"""The primitive catalogue of the surrogate-evolution grammar, as data.

Everything the parser, evaluator, validator, sampler and compiler need to know about a name lives
here: its kind, its argument types in order, its return type and (for optimizers and schedulers)
the ``transform_value`` bounds of every field.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

# ----------------------------------------------------------------------------------------- types
TENSOR3D = "Tensor3D"
FINAL_TENSOR = "FinalTensor"
OPTIMIZER = "Optimizer"
SCHEDULER = "Scheduler"

#: Int wrappers (subclasses of ``int`` in the original) and float wrappers.
INT_WRAPPERS = (
    "ChannelSize", "KernelSize", "StrideSize", "PaddingSize", "OutputSize", "DilationSize",
    "GroupSize", "SkipSize", "GenericInt",
)
FLOAT_WRAPPERS = ("PNorm", "ProbFloat", "BoundedFloat")

#: Enums, members in definition order; a genome stores the member's index as a plain int.
ENUMS: dict[str, tuple[str, ...]] = {
    "PaddingMode": ("zeros", "reflect", "replicate", "circular"),
    "UpsampleMode": ("nearest", "linear", "bilinear", "bicubic", "trilinear"),
    "SkipMergeType": ("concat", "add"),
    "ConvNeXtSize": ("Base", "Large", "Small", "Tiny"),
    "DenseNetSize": ("z121", "z161", "z169", "z201"),
    "EfficientNet_V2Size": ("L", "M", "S"),
    "MobileNet_V3Size": ("Large", "Small"),
    "RegNetSize": ("z_16GF", "z_1_6GF", "z_32GF", "z_3_2GF", "z_400MF", "z_800MF", "z_8GF"),
    "ResNeXtSize": ("z101_32X8D", "z50_32X4D"),
    "ResNetSize": ("z101", "z152", "z50"),
    "ShuffleNet_V2Size": ("X0_5", "X1_0", "X1_5", "X2_0"),
    "Swin_V2Size": ("B", "S", "T"),
    "ViTSize": ("B_16", "H_14", "L_16"),
    "Wide_ResNetSize": ("z101_2", "z50_2"),
    "Weights": ("WEIGHT0", "WEIGHT1", "WEIGHT2"),
    "BoolWeight": ("WEIGHTFALSE", "WEIGHTTRUE"),
    "AnnealStrategy": ("cos", "linear"),
    "CyclicLRMode": ("triangular", "triangular2", "exp_range"),
    "CyclicLRScaleMode": ("cycle", "iterations"),
}


def is_subtype(node_type: str, slot_type: str) -> bool:
    """DEAP's subtype rule: a slot of type T accepts a node whose type is a subclass of T."""
    if node_type == slot_type:
        return True
    if slot_type == "int":
        return node_type in INT_WRAPPERS or node_type == "bool"
    if slot_type == "float":
        return node_type in FLOAT_WRAPPERS
    return False


# ------------------------------------------------------------------------------------ primitives
class Kind(str, Enum):
    LAYER = "layer"          # custom layer (Tensor3D -> Tensor3D)
    BACKBONE = "backbone"    # torchvision backbone (Tensor3D -> Tensor3D)
    HEAD = "head"            # detection head (root, -> FinalTensor)
    OPTIMIZER = "optimizer"
    SCHEDULER = "scheduler"


@dataclass(frozen=True)
class Field:
    """One argument of a primitive (after the tensor argument)."""

    name: str
    type: str
    #: ``transform_value`` bounds for optimizer/scheduler numeric fields; None = passthrough.
    bounds: tuple[float, float] | None = None
    #: ``int(transform_value(..))`` rather than a float.
    integer: bool = False


@dataclass(frozen=True)
class Primitive:
    name: str
    kind: Kind
    fields: tuple[Field, ...]
    #: ``Codec.param_mapping`` index (the 54-way one-hot of String2Vec).
    index: int

    @property
    def takes_tensor(self) -> bool:
        return self.kind in (Kind.LAYER, Kind.BACKBONE, Kind.HEAD)

    @property
    def arity(self) -> int:
        return len(self.fields) + (1 if self.takes_tensor else 0)

    @property
    def return_type(self) -> str:
        return {Kind.HEAD: FINAL_TENSOR, Kind.OPTIMIZER: OPTIMIZER,
                Kind.SCHEDULER: SCHEDULER}.get(self.kind, TENSOR3D)

    @property
    def arg_types(self) -> tuple[str, ...]:
        """All argument types including the leading tensor, as the GP sees them."""
        head = (TENSOR3D,) if self.takes_tensor else ()
        return head + tuple(f.type for f in self.fields)


def _f(spec: str) -> tuple[Field, ...]:
    """Compact field list: ``"name:Type name:Type"``."""
    return tuple(Field(*item.split(":")) for item in spec.split())


_CONV = _f("out_channels:ChannelSize k0:KernelSize k1:KernelSize s0:StrideSize s1:StrideSize "
           "p0:PaddingSize p1:PaddingSize padding_mode:PaddingMode d0:DilationSize d1:DilationSize "
           "groups:GroupSize")
_HEAD_FIELDS = (Field("optimizer", OPTIMIZER), Field("scheduler", SCHEDULER)) + tuple(
    Field(f"w{i}", "ProbFloat") for i in range(1, 8))

_LAYER_SPECS: list[tuple[str, Kind, tuple[Field, ...]]] = [
    ("LazyConv2d", Kind.LAYER, _CONV),
    ("LazyConvTranspose2d", Kind.LAYER, _CONV),
    ("MaxPool2d", Kind.LAYER, _f("k0:KernelSize k1:KernelSize s0:StrideSize s1:StrideSize "
                                 "p0:PaddingSize p1:PaddingSize d0:DilationSize d1:DilationSize")),
    ("AvgPool2d", Kind.LAYER, _f("k0:KernelSize k1:KernelSize s0:StrideSize s1:StrideSize "
                                 "p0:PaddingSize p1:PaddingSize")),
    ("FractionalMaxPool2d", Kind.LAYER, _f("k0:KernelSize k1:KernelSize r0:ProbFloat "
                                           "r1:ProbFloat")),
    ("LPPool2d", Kind.LAYER, _f("norm_type:PNorm k0:KernelSize k1:KernelSize s0:StrideSize "
                                "s1:StrideSize")),
    ("AdaptiveMaxPool2d", Kind.LAYER, _f("o0:OutputSize o1:OutputSize")),
    ("AdaptiveAvgPool2d", Kind.LAYER, _f("o0:OutputSize o1:OutputSize")),
    ("ReLU_2D", Kind.LAYER, ()),
    ("LeakyReLU_2D", Kind.LAYER, _f("negative_slope:BoundedFloat")),
    ("LogSigmoid_2D", Kind.LAYER, ()),
    ("Sigmoid_2D", Kind.LAYER, ()),
    ("Tanh_2D", Kind.LAYER, ()),
    ("Threshold_2D", Kind.LAYER, _f("threshold:BoundedFloat value:BoundedFloat")),
    ("LazyBatchNorm2d", Kind.LAYER, _f("eps:BoundedFloat momentum:BoundedFloat")),
    ("Dropout_2D", Kind.LAYER, _f("p:ProbFloat")),
    ("FasterRCNN_Head", Kind.HEAD, _HEAD_FIELDS),
    ("FCOS_Head", Kind.HEAD, _HEAD_FIELDS),
    ("RetinaNet_Head", Kind.HEAD, _HEAD_FIELDS),
    ("Upsample_2D", Kind.LAYER, _f("scale_factor:BoundedFloat mode:UpsampleMode")),
    ("ConvNeXt", Kind.BACKBONE, _f("size:ConvNeXtSize weights:BoolWeight")),
    ("DenseNet", Kind.BACKBONE, _f("size:DenseNetSize weights:BoolWeight")),
    ("EfficientNet_V2", Kind.BACKBONE, _f("size:EfficientNet_V2Size weights:BoolWeight")),
    ("Inception_V3", Kind.BACKBONE, _f("weights:BoolWeight")),
    ("MobileNet_V3", Kind.BACKBONE, _f("size:MobileNet_V3Size weights:BoolWeight")),
    ("RegNet_X", Kind.BACKBONE, _f("size:RegNetSize weights:Weights")),
    ("RegNet_Y", Kind.BACKBONE, _f("size:RegNetSize weights:Weights")),
    ("ResNeXt", Kind.BACKBONE, _f("size:ResNeXtSize weights:Weights")),
    ("ResNet", Kind.BACKBONE, _f("size:ResNetSize weights:Weights")),
    ("ShuffleNet_V2", Kind.BACKBONE, _f("size:ShuffleNet_V2Size weights:BoolWeight")),
    ("Swin_V2", Kind.BACKBONE, _f("size:Swin_V2Size weights:BoolWeight")),
    ("Wide_ResNet", Kind.BACKBONE, _f("size:Wide_ResNetSize weights:Weights")),
]


def _tv(name: str, lo: float, hi: float, integer: bool = False, type_: str = "float") -> Field:
    return Field(name, type_, (lo, hi), integer)


def _b(name: str) -> Field:
    return Field(name, "bool")


def _e(name: str, enum: str) -> Field:
    return Field(name, enum)


_LR_1 = _tv("lr", 1e-4, 1e-1)
_LR_3 = _tv("lr", 1e-4, 1e-3)
_WD = _tv("weight_decay", 0, 1e-2)
_GAMMA = _tv("gamma", 0.01, 0.99)

_TRAINING_SPECS: list[tuple[str, Kind, tuple[Field, ...]]] = [
    ("SGD", Kind.OPTIMIZER, (_LR_1, _tv("momentum", 0, 0.9), _WD, _tv("dampening", 0, 0.9))),
    ("Adadelta", Kind.OPTIMIZER, (_LR_1, _tv("rho", 0.9, 0.999), _WD)),
    ("Adagrad", Kind.OPTIMIZER, (_LR_1, _WD)),
    ("Adam", Kind.OPTIMIZER, (_LR_3, _WD, _b("amsgrad"))),
    ("AdamW", Kind.OPTIMIZER, (_LR_3, _WD, _b("amsgrad"))),
    ("Adamax", Kind.OPTIMIZER, (_LR_3, _WD)),
    ("ASGD", Kind.OPTIMIZER, (_LR_1, _tv("lambd", 1e-5, 1e-1), _tv("alpha", 1e-5, 1e-1),
                              _tv("t0", 1, 1e3), _WD)),
    ("NAdam", Kind.OPTIMIZER, (_LR_3, _WD, _tv("momentum_decay", 0.9, 0.999),
                               _b("decoupled_weight_decay"))),
    ("RAdam", Kind.OPTIMIZER, (_LR_3, _WD, _b("decoupled_weight_decay"))),
    ("RMSprop", Kind.OPTIMIZER, (_LR_1, _tv("momentum", 0, 0.9), _tv("alpha", 0.9, 0.999),
                                 _b("centered"), _WD)),
    ("Rprop", Kind.OPTIMIZER, (_LR_1, _tv("eta_lower", 0.5, 1), _tv("eta_upper", 1.1, 1.5),
                               _tv("step_lower", 1e-6, 1), _tv("step_upper", 1, 50))),
    ("StepLR", Kind.SCHEDULER, (_tv("step_size", 1, 100, True, "int"), _GAMMA)),
    ("MultiStepLR", Kind.SCHEDULER, (_GAMMA,)),
    ("ExponentialLR", Kind.SCHEDULER, (_GAMMA,)),
    ("ReduceLROnPlateau", Kind.SCHEDULER, (
        _tv("factor", 0.01, 0.99), _tv("patience", 1, 100, True, "int"),
        _tv("threshold", 1e-5, 1e-2), _tv("cooldown", 0, 10, True, "int"),
        _tv("min_lr", 0, 1e-2), _tv("eps", 1e-8, 1e-4))),
    ("CosineAnnealingLR", Kind.SCHEDULER, (_tv("T_max", 1, 100, True, "int"),
                                           _tv("eta_min", 0, 1e-2))),
    ("CosineAnnealingWarmRestarts", Kind.SCHEDULER, (
        _tv("T_0", 1, 100, True, "int"), _tv("T_mult", 1, 10, True, "int"),
        _tv("eta_min", 0, 1e-2))),
    ("OneCycleLR", Kind.SCHEDULER, (
        _tv("max_lr", 1e-3, 1), _tv("pct_start", 0, 1), _e("anneal_strategy", "AnnealStrategy"),
        _b("cycle_momentum"), _tv("base_momentum", 0.5, 1), _tv("max_momentum", 0.5, 1),
        _tv("div_factor", 1, 100), _tv("final_div_factor", 1, 1e5), _b("three_phase"))),
    ("ConstantLR", Kind.SCHEDULER, (_tv("factor", 0.01, 1),
                                    _tv("total_iters", 1, 100, True, "int"))),
    ("LinearLR", Kind.SCHEDULER, (_tv("start_factor", 0.01, 1), _tv("end_factor", 0.01, 1),
                                  _tv("total_iters", 1, 100, True, "int"))),
    ("PolynomialLR", Kind.SCHEDULER, (_tv("max_lr", 1e-4, 1),
                                      _tv("total_steps", 1, 1000, True, "int"),
                                      _tv("power", 0.5, 3))),
    # CyclicLR's max_lr is bounded below by the evaluated base_lr (bounds resolved at evaluation).
    ("CyclicLR", Kind.SCHEDULER, (
        _tv("base_lr", 1e-4, 1), _tv("max_lr", float("nan"), 1),
        _tv("step_size_up", 1e3, 1e4, True, "int"), _tv("step_size_down", 1e3, 1e4, True, "int"),
        _e("mode", "CyclicLRMode"), _tv("gamma", 0.5, 1), _e("scale_mode", "CyclicLRScaleMode"),
        _b("cycle_momentum"), _tv("base_momentum", 0.5, 1), _tv("max_momentum", 0.5, 1))),
]

PRIMITIVES: dict[str, Primitive] = {
    name: Primitive(name, kind, fields, index)
    for index, (name, kind, fields) in enumerate(_LAYER_SPECS + _TRAINING_SPECS)
}
assert len(PRIMITIVES) == 54

LAYERS = frozenset(n for n, p in PRIMITIVES.items() if p.kind is Kind.LAYER)
BACKBONES = frozenset(n for n, p in PRIMITIVES.items() if p.kind is Kind.BACKBONE)
HEADS = frozenset(n for n, p in PRIMITIVES.items() if p.kind is Kind.HEAD)
OPTIMIZERS = frozenset(n for n, p in PRIMITIVES.items() if p.kind is Kind.OPTIMIZER)
SCHEDULERS = frozenset(n for n, p in PRIMITIVES.items() if p.kind is Kind.SCHEDULER)

#: Defined in the original but never registered: recognised so they get their own error.
DISABLED_PRIMITIVES = frozenset({"Skip_2D", "SSD_Head", "MaxViT_T", "ViT", "RReLU_2D"})

# --------------------------------------------------------------------------------------- helpers
#: The 16 helper primitives. ``arity`` and a short signature; values are computed by the evaluator.
HELPERS: dict[str, int] = {
    "add": 2, "protectedSub": 2, "mul": 2, "protectedDiv": 2,
    "toChannel": 1, "toKernel": 1, "toStride": 1, "toPadding": 1, "toOutput": 1,
    "toDilation": 1, "toGroup": 1, "toSkip": 1, "toPNorm": 1, "toProbFloat": 1,
    "toBoundedFloat": 1, "dummyOp": 1,
}
assert len(HELPERS) == 16

#: Return type of each conversion helper (the GP type its result carries).
CONVERSION_RETURN: dict[str, str] = {
    "toChannel": "ChannelSize", "toKernel": "KernelSize", "toStride": "StrideSize",
    "toPadding": "PaddingSize", "toOutput": "OutputSize", "toDilation": "DilationSize",
    "toGroup": "GroupSize", "toSkip": "SkipSize", "toPNorm": "PNorm",
    "toProbFloat": "ProbFloat", "toBoundedFloat": "BoundedFloat",
}
#: Argument type of each conversion helper.
CONVERSION_ARG: dict[str, str] = {name: ("float" if name in ("toPNorm", "toProbFloat",
                                                            "toBoundedFloat") else "GenericInt")
                                  for name in CONVERSION_RETURN}

#: Ephemeral constant generators: type -> (kind, lo, hi).
EPHEMERALS: dict[str, tuple[str, float, float]] = {
    "ProbFloat": ("uniform", 0, 1), "BoundedFloat": ("uniform", 0, 100),
    "float": ("uniform", 0, 100), "GenericInt": ("randint", 0, 100), "bool": ("bool", 0, 1),
    "ChannelSize": ("randint", 1, 64), "KernelSize": ("randint", 1, 9),
    "StrideSize": ("randint", 1, 9), "PaddingSize": ("randint", 0, 9),
    "OutputSize": ("randint", 1, 3000), "DilationSize": ("randint", 1, 10),
    "GroupSize": ("randint", 1, 1), "SkipSize": ("randint", 1, 5), "PNorm": ("uniform", 1, 3),
    **{enum: ("randint", 0, len(members) - 1) for enum, members in ENUMS.items()},
}

#: Weight-enum values available per torchvision builder (V2 exists only for these).
V2_WEIGHT_BUILDERS = frozenset({
    "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
    "wide_resnet50_2", "wide_resnet101_2", "mobilenet_v3_large",
    *(f"regnet_{xy}_{s}" for xy in "xy" for s in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf",
                                                  "16gf", "32gf")),
})

#: Maximum number of generic layers (String2Vec's 13 columns).
MAX_LAYERS = 13
#: Number of loss-weight genes of a head (conf.toml [model] num_loss_components).
NUM_LOSS_COMPONENTS = 7
LOSS_COMPONENTS = ("iou", "giou", "diou", "ciou", "center", "size", "obj")


def backbone_builder(name: str, size_index: int | None) -> str:
    """torchvision builder for a backbone gene (the evolution's name rule)."""
    if name == "Inception_V3":
        return "inception_v3"
    enum = PRIMITIVES[name].fields[0].type
    s = ENUMS[enum][size_index].lower()
    base = name.lower()
    return base + s[1:] if s.startswith("z") else base + "_" + s


def weights_name(layer_name: str, weights_gene: int) -> str | None:
    """The weights the original would have requested (architecture only; never loaded)."""
    if layer_name == "Inception_V3":
        return None if int(weights_gene) == 0 else "IMAGENET1K_V1"
    return {1: "IMAGENET1K_V1", 2: "IMAGENET1K_V2"}.get(int(weights_gene))
