"""Per-genome vectors: the seed's 34-d ``model_info`` and every training hyper-parameter.

``model_info`` reproduces the seed's vector bit for bit (checked against the reference graphs):
optimizer one-hot (11), head one-hot (4), scheduler one-hot (11), then
``log([lr, 7 normalised loss weights] + 1e-6)`` z-scored within the vector in float32 with the
unbiased standard deviation. The seed ignored every other optimizer/scheduler gene; the
``training_vector`` keeps them all, one column per dict key (as the original ``model_dict`` named
them ``optimizer_<k>`` / ``scheduler_<k>``).
"""
from __future__ import annotations

import numpy as np
import torch

from ml.genome import catalogue as cat
from ml.genome.model import EvaluatedGenome

MODEL_INFO_OPTIMIZERS = ("Adam", "Adamax", "SGD", "RMSprop", "Adagrad", "Adadelta", "NAdam",
                         "RAdam", "AdamW", "Rprop", "ASGD")
MODEL_INFO_HEADS = ("FasterRCNN_Head", "FCOS_Head", "RetinaNet_Head", "SSD_Head")
MODEL_INFO_SCHEDULERS = ("StepLR", "ExponentialLR", "CosineAnnealingLR",
                         "CosineAnnealingWarmRestarts", "ReduceLROnPlateau", "CyclicLR",
                         "OneCycleLR", "MultiStepLR", "ConstantLR", "PolynomialLR", "LinearLR")
MODEL_INFO_DIM = len(MODEL_INFO_OPTIMIZERS) + len(MODEL_INFO_HEADS) + len(
    MODEL_INFO_SCHEDULERS) + 1 + cat.NUM_LOSS_COMPONENTS
assert MODEL_INFO_DIM == 34


def model_info(genome: EvaluatedGenome) -> list[float]:
    """The seed's 34-d per-genome vector."""
    onehot = [0.0] * (MODEL_INFO_DIM - 8)
    onehot[MODEL_INFO_OPTIMIZERS.index(genome.optimizer["optimizer"])] = 1.0
    onehot[11 + MODEL_INFO_HEADS.index(genome.head)] = 1.0
    onehot[15 + MODEL_INFO_SCHEDULERS.index(genome.scheduler["lr_scheduler"])] = 1.0
    values = torch.tensor([genome.optimizer["lr"], *genome.loss_weights], dtype=torch.float32)
    values = torch.log(values + 1e-6)
    values = (values - values.mean()) / values.std()
    return onehot + values.tolist()


def _keys(kind: cat.Kind, prefix: str) -> tuple[str, ...]:
    keys: dict[str, None] = {}
    for prim in cat.PRIMITIVES.values():
        if prim.kind is kind:
            for field in prim.fields:
                keys.setdefault(f"{prefix}_{field.name}")
    return tuple(keys)


#: Column names of :func:`training_vector`: every optimizer key, then every scheduler key.
TRAINING_KEYS = _keys(cat.Kind.OPTIMIZER, "optimizer") + _keys(cat.Kind.SCHEDULER, "scheduler")
_TRAINING_INDEX = {k: i for i, k in enumerate(TRAINING_KEYS)}
#: Enum-valued scheduler keys are stored as the member's index.
_ENUM_FIELDS = {"scheduler_anneal_strategy": "AnnealStrategy", "scheduler_mode": "CyclicLRMode",
                "scheduler_scale_mode": "CyclicLRScaleMode"}


def training_vector(genome: EvaluatedGenome) -> np.ndarray:
    """Every optimizer/scheduler gene by key (0 where the chosen primitive lacks the key).

    Booleans are 0/1 and enum names their member index; values are raw (standardised later
    on training data).
    """
    out = np.zeros(len(TRAINING_KEYS), dtype=np.float64)
    for prefix, d in (("optimizer", genome.optimizer), ("scheduler", genome.scheduler)):
        for key, value in d.items():
            name = f"{prefix}_{key}"
            if name not in _TRAINING_INDEX:
                continue  # the 'optimizer' / 'lr_scheduler' name itself
            if name in _ENUM_FIELDS:
                value = cat.ENUMS[_ENUM_FIELDS[name]].index(value)
            out[_TRAINING_INDEX[name]] = float(value)
    return out
