"""The one predictor contract (every learned model, and the evaluation's reference floors,
implement it) and the few types it exchanges: :class:`Prediction`, :class:`TrainingCancelled`
and the callback helpers."""
from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ml.datasets.labels import DEFAULT_METRICS
from ml.models.hyperparameters import COMMON, Param, validate


class TrainingCancelled(RuntimeError):
    """Raised when a callback's ``should_stop()`` asked to stop; ``checkpoint`` resumes it."""

    def __init__(self, epoch: int, checkpoint: Path | None) -> None:
        super().__init__(f"training cancelled at epoch {epoch}"
                         + (f"; checkpoint {checkpoint}" if checkpoint else ""))
        self.epoch = epoch
        self.checkpoint = checkpoint


def notify(callbacks: Any, epoch: int, metrics: dict[str, float]) -> None:
    """Call ``on_epoch_end`` when the callback object has it."""
    hook = getattr(callbacks, "on_epoch_end", None)
    if hook is not None:
        hook(epoch, metrics)


def stop_requested(callbacks: Any) -> bool:
    hook = getattr(callbacks, "should_stop", None)
    return bool(hook()) if hook is not None else False


@dataclass
class Prediction:
    """Predictions in original metric units; ``std`` is the spread across ensemble members
    (for forests: across all their trees), None when the model has no spread."""

    mean: np.ndarray            # [n, M]
    std: np.ndarray | None      # [n, M] or None
    p_fail: np.ndarray          # [n]
    metrics: tuple[str, ...] = ()
    #: [n, M, 2]: a 95 % interval per metric (lower, upper) computed where the model works
    #: (e.g. log space) and mapped back; None when the model has none.
    interval: np.ndarray | None = None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Predictor(abc.ABC):
    """Construct from a config dict; ``fit`` then ``predict``; ``state_dict`` is flat tensors.

    Subclasses set ``name`` and ``version`` (bump it when the state layout changes) and keep
    everything needed to predict (weights *and* normalisation statistics) in ``state_dict``.
    """

    name: str = "base"
    version: int = 1
    defaults: dict[str, Any] = {}
    #: What a caller may set, with types and bounds (``ml.models.hyperparameters``).
    hyperparameters: dict[str, Param] = COMMON
    #: Set by predictors whose input is one feature row per genome: they implement
    #: ``featurize(records) -> [n, d]`` and ``predict_features(x) -> Prediction``, and the
    #: service caches the rows per genome under this key (bump it when the rows change).
    feature_key: str | None = None
    #: True for predictors that fit on their validation records too (they neither early-stop
    #: nor select on them): their predictions there are in-sample, so a composite choosing
    #: weights on a validation set must fit a copy without it (``ml.models.blend``).
    trains_on_validation: bool = False

    @classmethod
    def validate_hyperparameters(cls, config: dict[str, Any]) -> None:
        """Raise ``HyperparameterError`` (naming the field) for a key or value a caller may
        not set."""
        validate(cls.hyperparameters, config)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        merged = {"metrics": tuple(DEFAULT_METRICS), "seed": 0, "ensemble": 1,
                  "checkpoint_dir": None, "checkpoint_every": 10, **self.defaults,
                  **(config or {})}
        merged["metrics"] = tuple(merged["metrics"])
        self.config: dict[str, Any] = merged
        self.metrics: tuple[str, ...] = merged["metrics"]

    @abc.abstractmethod
    def fit(self, train_records: Iterable[Data] | Any, val_records: Iterable[Data] | Any = None,
            config: dict[str, Any] | None = None, callbacks: Any = None,
            resume_from: str | Path | None = None) -> dict[str, Any]:
        """Train; returns a history dict (per-epoch metrics and the final validation scores)."""

    @abc.abstractmethod
    def predict(self, records: Iterable[Data] | Any) -> Prediction:
        """Predict metrics (original units) and P(failed) for unlabelled or labelled records."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A flat dict of tensors: weights plus normalisation statistics (what a bundle keeps).
        Predictors that are never saved (the evaluation's floors) need not implement it."""
        raise NotImplementedError(f"{self.name} cannot be saved as a bundle")

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict` (a model built with the same config)."""
        raise NotImplementedError(f"{self.name} cannot be loaded from a bundle")

    def normalisation(self) -> dict[str, Any]:
        """Human-readable normalisation statistics (written to ``normalisation.json``)."""
        return {}

    def _update_config(self, config: dict[str, Any] | None) -> None:
        if config:
            self.config.update(config)
            self.config["metrics"] = tuple(self.config["metrics"])
            self.metrics = self.config["metrics"]
