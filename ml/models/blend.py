"""``blend``: average of a tree ensemble and a graph network in standardised target space.

Trees and GNNs err differently here (CV on the real data: trees rank uw_val_epoch_loss and
failures better, the combined GCN ranks average_precision better), so an OMNI-style average of
their standardised predictions ranks better than either.

The weights are chosen in ``fit`` from the training records alone (``weights`` /
``fail_weights`` "auto", the default): on the validation records (given, or a grouped 15 % of
the training records), per metric the member weights on a simplex grid in quarters whose blend
ranks the validation genomes best (Kendall tau-b), and the P(fail) weights with the best
validity AUC. A member that trains on its validation records (the tree models) is scored by a
copy fitted without them, so every member is judged out of sample (weights read off the
folds that report the results would flatter the blend). Explicit weights (a list, or
``{metric or "default": [w per member]}``) are accepted too.

A blend does not look its members up by name itself: the registry gives it the predictors it
may combine (:meth:`BlendPredictor.over`), so the registry (which names the blend) and the blend
never import each other.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from ml.datasets.records import as_records, labels
from ml.datasets.splits import grouped_split
from ml.metrics import kendall_tau_b, validity_auc
from ml.models.base import Prediction, Predictor
from ml.models.hyperparameters import COMMON, HyperparameterError, Param, validate
from ml.models.targets import TargetScaler

#: ``weights`` / ``fail_weights``: chosen in ``fit`` on validation genomes.
AUTO = "auto"


def simplex_grid(members: int, step: float = 0.25) -> np.ndarray:
    """[k, members] non-negative weight vectors in multiples of ``step`` summing to 1, in
    lexicographic order (the first member's weight descending)."""
    units = round(1 / step)
    rows = [w for w in itertools.product(range(units, -1, -1), repeat=members)
            if sum(w) == units]
    return np.asarray(rows, dtype=np.float64) / units


def _best(scores: list[float], default: int | None = None) -> int:
    """Index of the best finite score (the first on a tie); ``default`` (else an even
    blend's index, else 0) when none is finite."""
    finite = [i for i, s in enumerate(scores) if np.isfinite(s)]
    if finite:
        return max(finite, key=lambda i: (scores[i], -i))
    return default if default is not None else len(scores) // 2


class BlendPredictor(Predictor):
    name = "blend"
    #: 2: weights chosen in ``fit`` on validation genomes ("auto") and kept in the state
    version = 2
    defaults = {"members": ("trees", "combined_gcn"), "weights": AUTO, "fail_weights": AUTO,
                "val_fraction": 0.15,
                "member_configs": {"combined_gcn": {"epochs": 40, "patience": 15}}}
    hyperparameters = {**COMMON, "members": Param(str, sequence=True, max_len=4),
                       "val_fraction": Param(float, 0.05, 0.5)}
    #: The single predictors a blend may combine, by name (set by :meth:`over`).
    member_classes: Mapping[str, type[Predictor]] = MappingProxyType({})

    @classmethod
    def over(cls, members: Mapping[str, type[Predictor]]) -> type[BlendPredictor]:
        """This blend over ``members`` (name -> class): the class the registry lists."""
        return type(cls.__name__, (cls,), {"member_classes": MappingProxyType(dict(members))})

    @classmethod
    def create_member(cls, name: str, config: dict[str, Any] | None = None) -> Predictor:
        """A fresh member predictor ``name`` with ``config``."""
        if name not in cls.member_classes:
            raise ValueError(f"{name!r} is not a predictor to blend; choose from "
                             f"{list(cls.member_classes)}")
        return cls.member_classes[name](config)

    @classmethod
    def validate_hyperparameters(cls, config: dict[str, Any]) -> None:
        """The flat keys as usual; ``weights`` ({metric or "default": [w per member]}) and
        ``member_configs`` ({member: its own config}) against the members' own specs."""
        flat = {k: v for k, v in config.items()
                if k not in ("weights", "fail_weights", "member_configs")}
        validate(cls.hyperparameters, flat)
        members = list(config.get("members") or cls.defaults["members"])
        for name in members:
            if name not in cls.member_classes:
                raise HyperparameterError("members", f"{name!r} is not a predictor to blend")
        per_member = Param(float, 0.0, 1.0, sequence=True, min_len=len(members),
                           max_len=len(members))
        fail = config.get("fail_weights", AUTO)
        if fail != AUTO:
            per_member.check("fail_weights", fail)
        weights = config.get("weights", AUTO)
        if weights == AUTO:
            weights = {}
        elif isinstance(weights, (list, tuple)):
            weights = {"default": weights}
        if not isinstance(weights, dict):
            raise HyperparameterError("weights", 'must be "auto", a list [w per member] or an '
                                                 "object {metric: [w, ...]}")
        for metric, pair in weights.items():
            per_member.check(f"weights.{metric}", pair)
        configs = config.get("member_configs", {})
        if not isinstance(configs, dict):
            raise HyperparameterError("member_configs", "must be an object {member: config}")
        for name, member_config in configs.items():
            cls_ = cls.member_classes.get(name)
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
        #: [members, M] metric weights and [members] P(fail) weights in use
        self.weights = self._configured_weights()
        self.fail_weights = self._configured_fail_weights()

    def _build_parts(self) -> list[Predictor]:
        # Member defaults first, so a caller's explicit keys (e.g. epochs) still win.
        shared = {k: v for k, v in self.config.items()
                  if k not in ("members", "weights", "fail_weights", "member_configs")}
        extra = self.config.get("member_configs") or {}
        return [self.create_member(name, {**extra.get(name, {}), **shared})
                for name in self.config["members"]]

    def fit(self, train_records: Any, val_records: Any = None, config: dict[str, Any] | None = None,
            callbacks: Any = None, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Fit every member on the same records (``resume_from`` applies to the neural ones),
        then choose the weights left "auto" on the validation records."""
        self._update_config(config)
        records = as_records(train_records)
        val = as_records(val_records)
        choosing = self.config["weights"] == AUTO or self.config["fail_weights"] == AUTO
        if choosing and not val:
            records, val = grouped_split(records, float(self.config["val_fraction"]),
                                         int(self.config["seed"]))
        y, failed = labels(records + val)
        self.targets = TargetScaler(self.metrics).fit(y[~failed])
        self.parts = self._build_parts()
        history: dict[str, Any] = {}
        for part in self.parts:
            resume = None if part.trains_on_validation else resume_from
            history[part.name] = part.fit(records, val or None, callbacks=callbacks,
                                          resume_from=resume)
        self.weights = self._configured_weights()
        self.fail_weights = self._configured_fail_weights()
        if choosing:
            scores = self._choose_weights(records, val)
            history["weights"] = {m: self.weights[:, j].tolist()
                                  for j, m in enumerate(self.metrics)}
            history["fail_weights"] = self.fail_weights.tolist()
            history["validation_scores"] = scores
        return history

    def _validation_predictions(self, records: list[Any], val: list[Any]) -> list[Prediction]:
        """Each member's out-of-sample predictions of ``val``: the fitted member's, or for one
        that trained on ``val`` a fresh copy's fitted on ``records`` only."""
        preds = []
        for name, part in zip(self.config["members"], self.parts):
            if part.trains_on_validation:
                shared = dict(part.config.items())
                part = self.create_member(name, shared)
                part.fit(records, None)
            preds.append(part.predict(val))
        return preds

    def _choose_weights(self, records: list[Any], val: list[Any]) -> dict[str, Any]:
        """Set the "auto" weights from validation scores; returns the scores (history)."""
        preds = self._validation_predictions(records, val)
        y, failed = labels(val)
        ok = ~failed
        z = [self.targets.transform(np.asarray(p.mean, dtype=np.float64)) for p in preds]
        grid = simplex_grid(len(preds))
        out: dict[str, Any] = {}
        if self.config["weights"] == AUTO:
            truth = self.targets.transform(y)
            for j, metric in enumerate(self.metrics):
                rows = ok & np.isfinite(truth[:, j])
                scores = [kendall_tau_b(truth[rows, j], sum(w[i] * z[i][rows, j]
                                                            for i in range(len(z))))
                          for w in grid]
                self.weights[:, j] = grid[_best(scores)]
                out[metric] = max((s for s in scores if np.isfinite(s)), default=float("nan"))
        if self.config["fail_weights"] == AUTO:
            fails = [np.asarray(p.p_fail, dtype=np.float64).reshape(-1) for p in preds]
            scores = [validity_auc(failed, sum(w[i] * fails[i] for i in range(len(fails))))
                      for w in grid]
            self.fail_weights = grid[_best(scores, default=0)]
            out["validity_auc"] = max((s for s in scores if np.isfinite(s)),
                                      default=float("nan"))
        return out

    def predict(self, records: Any) -> Prediction:
        records = as_records(records)
        preds = [p.predict(records) for p in self.parts]
        w = self.weights
        z = sum(w[i] * self.targets.transform(p.mean) for i, p in enumerate(preds)) / w.sum(0)
        fw = self.fail_weights
        p_fail = sum(wi * p.p_fail for wi, p in zip(fw, preds)) / fw.sum()
        stds = [p.std for p in preds if p.std is not None]
        std = np.mean(stds, axis=0) if stds else None
        return Prediction(self.targets.inverse(z), std, p_fail, self.metrics)

    def _configured_weights(self) -> np.ndarray:
        """[members, M] weights from the config: one list for all metrics or a per-metric
        dict; equal weights where "auto" (until ``fit`` chooses)."""
        spec = self.config["weights"]
        if spec == AUTO:
            spec = {}
        elif not isinstance(spec, dict):
            spec = {"default": spec}
        default = spec.get("default", [1.0] * len(self.parts))
        return np.asarray([spec.get(m, default) for m in self.metrics], dtype=np.float64).T

    def _configured_fail_weights(self) -> np.ndarray:
        spec = self.config["fail_weights"]
        return np.asarray([1.0] * len(self.parts) if spec == AUTO else spec, dtype=np.float64)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = self.targets.state()
        state["blend.weights"] = torch.from_numpy(self.weights.copy())
        state["blend.fail_weights"] = torch.from_numpy(self.fail_weights.copy())
        for i, part in enumerate(self.parts):
            state.update({f"b{i}.{k}": v for k, v in part.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.targets = TargetScaler(self.metrics)
        self.targets.load(state)
        self.parts = self._build_parts()
        self.weights = (state["blend.weights"].numpy().astype(np.float64)
                        if "blend.weights" in state else self._configured_weights())
        self.fail_weights = (state["blend.fail_weights"].numpy().astype(np.float64)
                             if "blend.fail_weights" in state
                             else self._configured_fail_weights())
        for i, part in enumerate(self.parts):
            prefix = f"b{i}."
            part.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                  if k.startswith(prefix)})

    def normalisation(self) -> dict[str, Any]:
        return {"targets": self.targets.describe(),
                "weights": {m: self.weights[:, j].tolist() for j, m in enumerate(self.metrics)},
                "fail_weights": self.fail_weights.tolist(),
                **{part.name: part.normalisation() for part in self.parts}}
