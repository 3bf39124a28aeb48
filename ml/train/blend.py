"""``blend``: average of a tree ensemble and a graph network in standardised target space.

Trees and GNNs err differently here (CV on the real data: trees rank uw_val_epoch_loss and
failures better, the combined GCN ranks average_precision better), so an OMNI-style average of
their standardised predictions ranks better than either. P(fail) comes from the members with
``fail_weights`` (default: trees only, whose failure AUC was far higher).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.datasets.records import as_records, labels
from ml.models.base import Prediction, Predictor
from ml.models.hyperparameters import COMMON, HyperparameterError, Param, validate
from ml.models.targets import TargetScaler
from ml.train.members import MEMBERS, create_member


class BlendPredictor(Predictor):
    name = "blend"
    version = 1
    #: Per-metric member weights from out-of-fold CV on the real data (trees rank uw_val best,
    #: the GCN ranks AP best, ciou gains from mixing); unlisted metrics use "default".
    defaults = {"members": ("trees", "combined_gcn"),
                "weights": {"uw_val_epoch_loss": (1.0, 0.0), "ciou_loss": (0.4, 0.6),
                            "average_precision": (0.0, 1.0), "default": (0.5, 0.5)},
                "fail_weights": (1.0, 0.0),
                "member_configs": {"combined_gcn": {"epochs": 40, "patience": 15}}}
    hyperparameters = {**COMMON, "members": Param(str, sequence=True, max_len=4),
                       "fail_weights": Param(float, 0.0, 1.0, sequence=True, max_len=4)}

    @classmethod
    def validate_hyperparameters(cls, config: dict[str, Any]) -> None:
        """The flat keys as usual; ``weights`` ({metric or "default": [w per member]}) and
        ``member_configs`` ({member: its own config}) against the members' own specs."""
        flat = {k: v for k, v in config.items() if k not in ("weights", "member_configs")}
        validate(cls.hyperparameters, flat)
        members = list(config.get("members") or cls.defaults["members"])
        for name in members:
            if name not in MEMBERS:
                raise HyperparameterError("members", f"{name!r} is not a predictor to blend")
        weights = config.get("weights", {})
        if not isinstance(weights, dict):
            raise HyperparameterError("weights", "must be an object {metric: [w, ...]}")
        for metric, pair in weights.items():
            Param(float, 0.0, 1.0, sequence=True, min_len=len(members),
                  max_len=len(members)).check(f"weights.{metric}", pair)
        configs = config.get("member_configs", {})
        if not isinstance(configs, dict):
            raise HyperparameterError("member_configs", "must be an object {member: config}")
        for name, member_config in configs.items():
            cls_ = MEMBERS.get(name)
            if name not in members or cls_ is None or not isinstance(member_config, dict):
                raise HyperparameterError(f"member_configs.{name}", "must be a config object "
                                                                    "of one of the members")
            try:
                cls_.validate_hyperparameters(member_config)
            except HyperparameterError as exc:
                raise HyperparameterError(f"member_configs.{name}.{exc.field}",
                                          exc.message) from None

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.targets = TargetScaler(self.metrics)
        self.parts: list[Predictor] = self._build_parts()

    def _build_parts(self) -> list[Predictor]:
        # Member defaults first, so a caller's explicit keys (e.g. epochs) still win.
        shared = {k: v for k, v in self.config.items()
                  if k not in ("members", "weights", "fail_weights", "member_configs")}
        extra = self.config.get("member_configs") or {}
        return [create_member(name, {**extra.get(name, {}), **shared})
                for name in self.config["members"]]

    def fit(self, train_records: Any, val_records: Any = None, config: dict[str, Any] | None = None,
            callbacks: Any = None, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Fit every member on the same records (``resume_from`` applies to the neural one)."""
        self._update_config(config)
        records = as_records(train_records)
        y, failed = labels(records)
        self.targets = TargetScaler(self.metrics).fit(y[~failed])
        self.parts = self._build_parts()
        history = {}
        for part in self.parts:
            resume = resume_from if part.name != "trees" and part.name != "gbt" else None
            history[part.name] = part.fit(records, val_records, callbacks=callbacks,
                                          resume_from=resume)
        return history

    def predict(self, records: Any) -> Prediction:
        records = as_records(records)
        preds = [p.predict(records) for p in self.parts]
        w = self._weights()
        z = sum(w[i] * self.targets.transform(p.mean) for i, p in enumerate(preds)) / w.sum(0)
        fw = np.asarray(self.config["fail_weights"], dtype=np.float64)
        p_fail = sum(wi * p.p_fail for wi, p in zip(fw, preds)) / fw.sum()
        stds = [p.std for p in preds if p.std is not None]
        std = np.mean(stds, axis=0) if stds else None
        return Prediction(self.targets.inverse(z), std, p_fail, self.metrics)

    def _weights(self) -> np.ndarray:
        """[members, M] weights; ``weights`` is one list for all metrics or a per-metric dict."""
        spec = self.config["weights"]
        if not isinstance(spec, dict):
            spec = {"default": spec}
        default = spec.get("default", [1.0] * len(self.parts))
        return np.asarray([spec.get(m, default) for m in self.metrics], dtype=np.float64).T

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = self.targets.state()
        for i, part in enumerate(self.parts):
            state.update({f"b{i}.{k}": v for k, v in part.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.targets = TargetScaler(self.metrics)
        self.targets.load(state)
        self.parts = self._build_parts()
        for i, part in enumerate(self.parts):
            prefix = f"b{i}."
            part.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                  if k.startswith(prefix)})

    def normalisation(self) -> dict[str, Any]:
        return {"targets": self.targets.describe(),
                **{part.name: part.normalisation() for part in self.parts}}
