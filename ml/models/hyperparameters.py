"""What a caller may set in a predictor's config: types and bounds per key, checked before any
work starts (a string for ``epochs`` or a million ensemble members must fail at submission, not
hours into a job).

Each predictor class declares ``hyperparameters: dict[str, Param]``; :func:`validate` checks a
config dict against it and raises :class:`HyperparameterError` naming the field. The bounds are
generous (an order of magnitude past anything useful on a few thousand genomes) and exist to stop
values that can only fail late or run for days.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Keys the training code owns (the data's metrics, where checkpoints go): never the caller's.
RESERVED = frozenset({"metrics", "checkpoint_dir"})


class HyperparameterError(ValueError):
    """A config value of the wrong type or out of bounds; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class DeviceUnavailable(HyperparameterError):
    """``device: "cuda"`` where torch sees no CUDA device."""


@dataclass(frozen=True)
class Param:
    """One key: ``kind`` is int, float, bool or str; ``lo``/``hi`` bound numbers (inclusive);
    ``choices`` lists the allowed strings; ``sequence`` asks for a list of ``kind`` of length
    ``min_len``..``max_len``; ``nullable`` admits null."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    sequence: bool = False
    min_len: int = 1
    max_len: int = 16

    def check(self, field: str, value: Any) -> None:
        if value is None:
            if not self.nullable:
                raise HyperparameterError(field, "may not be null")
            return
        if self.sequence:
            if not isinstance(value, (list, tuple)):
                raise HyperparameterError(field, f"must be a list of {self.kind.__name__}")
            if not self.min_len <= len(value) <= self.max_len:
                raise HyperparameterError(field, f"must have {self.min_len}..{self.max_len} "
                                                 f"items, got {len(value)}")
            for i, item in enumerate(value):
                self._check_one(f"{field}[{i}]", item)
            return
        self._check_one(field, value)

    def _check_one(self, field: str, value: Any) -> None:
        kind = self.kind
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise HyperparameterError(field, f"must be {kind.__name__}, got "
                                             f"{type(value).__name__}")
        if kind in (int, float):
            if value != value or value in (float("inf"), float("-inf")):
                raise HyperparameterError(field, "must be finite")
            if (self.lo is not None and value < self.lo) or \
                    (self.hi is not None and value > self.hi):
                raise HyperparameterError(field, f"must be in [{self.lo:g}, {self.hi:g}], "
                                                 f"got {value}")
        if self.choices is not None and value not in self.choices:
            raise HyperparameterError(field, f"must be one of {list(self.choices)}")


#: Keys every predictor understands (``ml.models.base.Predictor``).
COMMON: dict[str, Param] = {
    "seed": Param(int, 0, 2 ** 31 - 1),
    "ensemble": Param(int, 1, 32),
    "checkpoint_every": Param(int, 1, 100_000),
}
#: How the tree models treat each metric's targets (``ml.models.trees``): "robust"
#: (standardised, winsorised), "rank" (normal scores) or "auto" (per metric, on inner folds).
TARGET_TRANSFORM = Param(str, choices=("auto", "robust", "rank"))
EMBEDDING = Param(str, nullable=True)
TREES: dict[str, Param] = {
    "n_estimators": Param(int, 1, 5000),
    "min_samples_leaf": Param(int, 1, 10_000),
    "max_features": Param(float, 1e-6, 1.0),
    "target_transform": TARGET_TRANSFORM,
    "inner_folds": Param(int, 2, 10),
    "inner_estimators": Param(int, 1, 5000),
    #: A pre-trained embedder file (``nas-surrogate pretrain``); the service passes the id of a
    #: succeeded ``pretrain`` job instead and its worker resolves it.
    "embedding": EMBEDDING,
}
GBT: dict[str, Param] = {
    "max_iter": Param(int, 1, 10_000),
    "learning_rate": Param(float, 1e-6, 1.0),
    "max_depth": Param(int, 1, 64),
    "min_samples_leaf": Param(int, 1, 10_000),
    "l2_regularization": Param(float, 0.0, 1e4),
    "max_features": Param(float, 1e-6, 1.0),
    "target_transform": TARGET_TRANSFORM,
    "inner_folds": Param(int, 2, 10),
    "embedding": EMBEDDING,
}
STACK: dict[str, Param] = {
    **TREES,
    "svr_c": Param(float, 1e-6, 1e6),
    "svr_epsilon": Param(float, 0.0, 100.0),
    "tree_weights": Param(float, 0.0, 1.0, sequence=True, max_len=11),
}
NEURAL: dict[str, Param] = {
    "epochs": Param(int, 1, 5000),
    "batch_size": Param(int, 1, 4096),
    "lr": Param(float, 1e-8, 1.0),
    "weight_decay": Param(float, 0.0, 1.0),
    "hidden": Param(int, 1, 2048),
    "patience": Param(int, 0, 5000),
    "rank_weight": Param(float, 0.0, 100.0),
    "huber_delta": Param(float, 1e-6, 1e4),
    "warmup_epochs": Param(int, 0, 5000),
    "clip_norm": Param(float, 0.0, 1e4),
    "val_fraction": Param(float, 0.0, 0.5),
    "device": Param(str, choices=("cpu", "cuda"), nullable=True),
    "eval_every": Param(int, 1, 1000),
}


def validate(spec: Mapping[str, Param], config: Mapping[str, Any]) -> None:
    """Raise :class:`HyperparameterError` for an unknown or reserved key or a bad value."""
    for key, value in config.items():
        if key in RESERVED:
            raise HyperparameterError(key, "is set by the service, not the caller")
        param = spec.get(key)
        if param is None:
            raise HyperparameterError(key, f"is not a hyper-parameter of this predictor "
                                           f"(allowed: {sorted(spec)})")
        param.check(key, value)


def check_device(config: Mapping[str, Any]) -> None:
    """Fail now when the config asks for CUDA on a host without it (not hours into a job)."""
    if config.get("device") == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise DeviceUnavailable("device", "cuda was asked for, but this host has no CUDA "
                                              "device")
