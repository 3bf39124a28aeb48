"""FR-NAS: forward and reverse graph agents trained by alternating updates and matched on their
in-batch distances (instance relationship graph). Its own optimiser recipe and per-agent loss
over :class:`~ml.models.neural.predictor.NeuralPredictor`'s loop."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

from ml.features.vectors import GENOME_VECTOR_DIM
from ml.models.gnn import FRNASNet, pairwise_distances
from ml.models.hyperparameters import Param
from ml.models.neural.predictor import NeuralPredictor


class FRNASPredictor(NeuralPredictor):
    """FR-NAS as released: forward/reverse GIN agents, IRG distance matching (convex weight 0.8),
    alternating updates, Adam betas (0, 0.9), lr 0.005 (bias 2x, no decay), cosine."""

    name = "frnas"
    node_input = "onehot"
    defaults = {**NeuralPredictor.defaults, "lr": 0.005, "irg_weight": 0.8, "rank_weight": 0.0}
    hyperparameters = {**NeuralPredictor.hyperparameters, "irg_weight": Param(float, 0.0, 100.0)}

    def build(self) -> nn.Module:
        return FRNASNet(self.make_input, GENOME_VECTOR_DIM, len(self.metrics))

    def optimizers(self, net: nn.Module, steps: int) -> list[tuple[list[nn.Parameter], Any, Any]]:
        c = self.config
        out = []
        for agent in net.agents():
            bias = [p for n, p in agent.named_parameters() if n.endswith("bias")]
            weights = [p for n, p in agent.named_parameters() if not n.endswith("bias")]
            opt = torch.optim.Adam([{"params": weights, "weight_decay": float(c["weight_decay"])},
                                    {"params": bias, "lr": 2 * float(c["lr"]),
                                     "weight_decay": 0.0}], lr=float(c["lr"]), betas=(0.0, 0.9))
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
            out.append((list(agent.parameters()), opt, sched))
        return out

    def group_loss(self, net: nn.Module, group: int, batch: Batch) -> torch.Tensor:
        """Agent ``group``'s step: regression/validity loss and IRG matching to the other agent."""
        z, fail, pooled = net.run_agent(group, batch)
        with torch.no_grad():
            _, _, other = net.run_agent(1 - group, batch)
        w = float(self.config["irg_weight"])
        irg = torch.stack([torch.nn.functional.mse_loss(pairwise_distances(a),
                                                        pairwise_distances(b))
                           for a, b in zip(pooled, other)]).mean()
        return (1 - w) * self.standard_loss(z, fail, batch) + w * irg
