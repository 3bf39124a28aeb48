"""The base of the graph predictors: data preparation, the epoch loop, checkpoints and prediction.

One class, :class:`NeuralPredictor`, trains every graph network in :mod:`ml.models.gnn`; its
subclasses (:mod:`ml.models.neural.gcn`, :mod:`ml.models.neural.frnas`) only choose the network
and the optimiser recipe. The loop lives with the predictors, below :mod:`ml.train`, because a
predictor must fit itself wherever it is used (training jobs, evaluation folds, a blend).
Training:

* targets standardised by :class:`~ml.models.targets.TargetScaler`, per-genome vector and
  hyper-parameters standardised on the training split (signed log first);
* Huber on non-failed rows + optional pairwise hinge (``rank_weight``) + validity BCE on all rows;
* AdamW, warm-up + cosine, gradient clipping, early stopping on validation mean Kendall tau of
  the objectives (the best epoch's weights are kept);
* K ensemble members trained one after another with seeds ``seed + k``;
* checkpoints (every ``checkpoint_every`` epochs and on cancellation) hold model, optimiser,
  scheduler and RNG states, so ``resume_from`` continues exactly.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data

from ml.datasets.records import as_records, labels
from ml.datasets.splits import grouped_split
from ml.features.vectors import (
    NODE_INPUT_DIM,
    ColumnScaler,
    genome_vector,
    node_inputs,
    node_inputs_presence,
    node_inputs_raw,
)
from ml.metrics import kendall_per_metric, objective_tau
from ml.models.base import (
    Prediction,
    Predictor,
    TrainingCancelled,
    default_device,
    notify,
    stop_requested,
)
from ml.models.gnn import NodeInput
from ml.models.hyperparameters import COMMON, NEURAL
from ml.models.neural.checkpoint import load_checkpoint, save_checkpoint
from ml.models.neural.losses import masked_huber, pairwise_hinge, validity_bce
from ml.models.neural.schedule import warmup_cosine
from ml.models.targets import TargetScaler


class NeuralPredictor(Predictor):
    """Base of the graph predictors; subclasses implement :meth:`build`."""

    version = 1
    node_input = "combined"
    defaults: dict[str, Any] = {
        "epochs": 150, "batch_size": 16, "lr": 2e-3, "weight_decay": 1e-4, "hidden": 64,
        "patience": 40, "rank_weight": 0.2, "huber_delta": 1.0, "warmup_epochs": 5,
        "clip_norm": 5.0, "val_fraction": 0.15, "device": None, "eval_every": 1,
    }
    hyperparameters = {**COMMON, **NEURAL}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.targets = TargetScaler(self.metrics)
        self.genome_scaler = ColumnScaler()
        self.hp_scaler = ColumnScaler()
        self.networks: list[nn.Module] = []

    # ----- what subclasses choose -------------------------------------------------------------
    def build(self) -> nn.Module:
        raise NotImplementedError

    def make_input(self) -> NodeInput:
        return NodeInput(self.node_input, hp_dim=NODE_INPUT_DIM)

    def optimizers(self, net: nn.Module, steps: int) -> list[tuple[list[nn.Parameter], Any, Any]]:
        """``[(params, optimizer, scheduler)]``; more than one entry means alternating updates."""
        c = self.config
        decay = [p for n, p in net.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(c["weight_decay"])},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=float(c["lr"]))
        per_epoch = steps // max(int(c["epochs"]), 1)
        sched = warmup_cosine(opt, steps, int(c["warmup_epochs"]) * per_epoch)
        return [(list(net.parameters()), opt, sched)]

    def group_loss(self, net: nn.Module, group: int, batch: Batch) -> torch.Tensor:
        z, fail = net(batch)
        return self.standard_loss(z, fail, batch)

    # ----- losses ----------------------------------------------------------------------------
    def standard_loss(self, z: torch.Tensor, fail: torch.Tensor, batch: Batch) -> torch.Tensor:
        c = self.config
        mask = batch.zmask
        loss = masked_huber(z, batch.z, mask, float(c["huber_delta"]))
        if float(c["rank_weight"]) > 0:
            loss = loss + float(c["rank_weight"]) * pairwise_hinge(z, batch.z, mask)
        return loss + validity_bce(fail, batch.failed)

    # ----- data ------------------------------------------------------------------------------
    def _fit_scalers(self, records: list[Data]) -> None:
        y, failed = labels(records)
        self.targets = TargetScaler(self.metrics).fit(y[~failed])
        self.genome_scaler.fit(np.stack([genome_vector(r) for r in records]))
        hp = np.concatenate([node_inputs_raw(r) for r in records])
        present = np.concatenate([node_inputs_presence(r) for r in records])
        self.hp_scaler.fit(hp, present)

    def _prepare(self, records: list[Data], with_labels: bool) -> list[Data]:
        """Light copies carrying only what the networks read (standardised, float32)."""
        out = []
        for r in records:
            hp = node_inputs(r, self.hp_scaler)
            g = self.genome_scaler.transform(genome_vector(r)[None])
            d = Data(x=r.node_type.long(), edge_index=r.edge_index,
                     hp=torch.from_numpy(hp),
                     g=torch.from_numpy(np.clip(g, -10, 10)).float(), num_nodes=r.num_nodes)
            if with_labels:
                y = r.y.numpy().astype(np.float64)
                failed = float(r.failed.reshape(-1)[0])
                z = self.targets.transform(y)
                ok = np.isfinite(z) & (failed != 1.0)
                d.z = torch.from_numpy(np.where(ok, z, 0.0)).float()
                d.zmask = torch.from_numpy(ok)
                d.failed = torch.tensor([failed], dtype=torch.float32)
            out.append(d)
        return out

    # ----- training --------------------------------------------------------------------------
    def fit(self, train_records: Any, val_records: Any = None, config: dict[str, Any] | None = None,
            callbacks: Any = None, resume_from: str | Path | None = None) -> dict[str, Any]:
        self._update_config(config)
        c = self.config
        train = as_records(train_records)
        val = as_records(val_records)
        if not val and float(c["val_fraction"]) > 0 and len(train) >= 20:
            train, val = grouped_split(train, float(c["val_fraction"]), int(c["seed"]))
        self._fit_scalers(train)
        device = torch.device(c["device"] or default_device())
        train_d = self._prepare(train, True)
        val_d = self._prepare(val, True) if val else []
        val_y, val_failed = labels(val) if val else (None, None)
        state = load_checkpoint(resume_from) if resume_from else None
        histories: list[list[dict[str, float]]] = []
        self.networks = []
        start_member = 0
        if state is not None:
            start_member = int(state["member"])
            for net_state in state["finished"]:
                net = self.build()
                net.load_state_dict(net_state)
                self.networks.append(net.eval())
            histories = state["histories"]
        deterministic = device.type == "cpu"
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            for member in range(start_member, int(c["ensemble"])):
                member_state = state if state is not None and member == start_member else None
                net, history = self._fit_member(member, train_d, val_d, val_y, val_failed, device,
                                                callbacks, member_state, histories)
                self.networks.append(net.cpu().eval())
                histories.append(history)
        finally:
            torch.use_deterministic_algorithms(previous)
        return {"members": histories, "val_tau": [h[-1].get("best_val_tau") for h in histories
                                                  if h]}

    def _fit_member(self, member: int, train_d: list[Data], val_d: list[Data],
                    val_y: np.ndarray | None, val_failed: np.ndarray | None, device: torch.device,
                    callbacks: Any, state: dict[str, Any] | None,
                    histories: list[list[dict[str, float]]]) -> tuple[nn.Module, list[dict]]:
        c = self.config
        seed = int(c["seed"]) + member
        torch.manual_seed(seed)
        net = self.build().to(device)
        bs = int(c["batch_size"])
        epochs = int(c["epochs"])
        steps = epochs * max(len(train_d) // bs, 1)
        groups = self.optimizers(net, steps)
        gen = torch.Generator().manual_seed(seed)
        history: list[dict[str, float]] = []
        best = {"tau": float("-inf"), "state": copy.deepcopy(net.state_dict()), "epoch": -1}
        start = 0
        if state is not None:
            net.load_state_dict(state["net"])
            for (_, opt, sched), o, s in zip(groups, state["optimizers"], state["schedulers"]):
                opt.load_state_dict(o)
                sched.load_state_dict(s)
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history, best, start = state["history"], state["best"], int(state["epoch"]) + 1
        for epoch in range(start, epochs):
            net.train()
            order = torch.randperm(len(train_d), generator=gen).tolist()
            losses = []
            for i in range(0, len(order) - bs + 1 if len(order) >= bs else 1, bs):
                batch = Batch.from_data_list([train_d[j] for j in order[i:i + bs]]).to(device)
                for g, (params, opt, sched) in enumerate(groups):
                    opt.zero_grad(set_to_none=True)
                    loss = self.group_loss(net, g, batch)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, float(c["clip_norm"]))
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
            row = {"epoch": float(epoch), "member": float(member),
                   "train_loss": float(np.mean(losses)) if losses else float("nan")}
            if val_d and (epoch % int(c["eval_every"]) == 0 or epoch == epochs - 1):
                z = self._predict_z([net], val_d, device)[0][0]
                taus = kendall_per_metric(self.targets.transform(val_y), z, val_failed,
                                          self.metrics)
                row.update({f"val_tau_{m}": t for m, t in taus.items()})
                row["val_tau"] = objective_tau(taus)
                if row["val_tau"] > best["tau"]:
                    best = {"tau": row["val_tau"], "state": copy.deepcopy(net.state_dict()),
                            "epoch": epoch}
            row["best_val_tau"] = best["tau"]
            history.append(row)
            notify(callbacks, epoch, row)
            def snapshot(epoch: int = epoch, best: dict = best) -> dict[str, Any]:
                """Built only when a checkpoint is written (this iteration's state)."""
                return {
                    "member": member, "epoch": epoch, "net": net.state_dict(),
                    "optimizers": [o.state_dict() for _, o, _ in groups],
                    "schedulers": [s.state_dict() for _, _, s in groups],
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": history, "best": best, "histories": histories,
                    "finished": [n.state_dict() for n in self.networks]}
            cancelled = stop_requested(callbacks)
            every = int(c["checkpoint_every"])
            path = None
            if c["checkpoint_dir"] and (cancelled or (every > 0 and (epoch + 1) % every == 0)):
                path = save_checkpoint(Path(c["checkpoint_dir"]) / "checkpoint.pt", snapshot())
            if cancelled:
                raise TrainingCancelled(epoch, path)
            if val_d and epoch - best["epoch"] > int(c["patience"]):
                break
        if val_d:
            net.load_state_dict(best["state"])
        return net, history

    # ----- prediction ------------------------------------------------------------------------
    @torch.no_grad()
    def _predict_z(self, networks: list[nn.Module], data: list[Data], device: torch.device,
                   batch_size: int = 256) -> tuple[list[np.ndarray], list[np.ndarray]]:
        zs, fails = [], []
        for net in networks:
            was_training = net.training
            net.eval()
            z_parts, f_parts = [], []
            for i in range(0, len(data), batch_size):
                batch = Batch.from_data_list(data[i:i + batch_size]).to(device)
                z, fail = net(batch)
                z_parts.append(z.double().cpu().numpy())
                f_parts.append(torch.sigmoid(fail).double().cpu().numpy())
            net.train(was_training)
            zs.append(np.concatenate(z_parts) if z_parts else np.zeros((0, len(self.metrics))))
            fails.append(np.concatenate(f_parts) if f_parts else np.zeros(0))
        return zs, fails

    def predict(self, records: Any) -> Prediction:
        data = self._prepare(as_records(records), False)
        device = torch.device(self.config["device"] or default_device())
        nets = [n.to(device) for n in self.networks]
        zs, fails = self._predict_z(nets, data, device)
        for n in nets:
            n.cpu()
        means = np.stack([self.targets.inverse(z) for z in zs])
        std = means.std(axis=0) if len(means) > 1 else None
        return Prediction(means.mean(axis=0), std, np.mean(fails, axis=0), self.metrics)

    # ----- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {**self.targets.state(), **self.genome_scaler.state("genome."),
                 **self.hp_scaler.state("hp."), "members": torch.tensor(len(self.networks))}
        for i, net in enumerate(self.networks):
            state.update({f"m{i}.{k}": v.detach().cpu().clone()
                          for k, v in net.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.targets = TargetScaler(self.metrics)
        self.targets.load(state)
        self.genome_scaler.load(state, "genome.")
        self.hp_scaler.load(state, "hp.")
        self.networks = []
        for i in range(int(state["members"])):
            prefix = f"m{i}."
            net = self.build()
            net.load_state_dict({k[len(prefix):]: v for k, v in state.items()
                                 if k.startswith(prefix)})
            self.networks.append(net.eval())

    def normalisation(self) -> dict[str, Any]:
        return {"targets": self.targets.describe(),
                "genome_vector": {"mean": self.genome_scaler.mean.tolist(),
                                  "std": self.genome_scaler.std.tolist()},
                "hyperparams": {"mean": self.hp_scaler.mean.tolist(),
                                "std": self.hp_scaler.std.tolist()}}
