"""Graph networks over encoded genomes, all ending in the same fused readout.

Every module maps a batch (``x`` node type index, ``hp`` standardised hyper-parameters,
``edge_index``, ``batch``, ``g`` standardised per-genome vector) to ``(z [B, M], fail_logit [B])``
where ``z`` are standardised targets (see :mod:`ml.models.targets`).
"""
from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, GINConv, global_mean_pool
from torch_geometric.utils import add_self_loops, scatter

from ml.encoding.vocab import NUM_NODE_TYPES


class Readout(nn.Module):
    """Fuse the pooled graph embedding with the per-genome vector; multi-task + validity heads."""

    def __init__(self, graph_dim: int, genome_dim: int, hidden: int, num_metrics: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.genome = nn.Sequential(nn.Linear(genome_dim, hidden), nn.ReLU())
        self.trunk = nn.Sequential(nn.Linear(graph_dim + hidden, hidden), nn.ReLU(),
                                   nn.Dropout(dropout))
        self.regression = nn.Linear(hidden, num_metrics)
        self.validity = nn.Linear(hidden, 1)

    def forward(self, pooled: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(torch.cat([pooled, self.genome(g)], dim=1))
        return self.regression(h), self.validity(h).squeeze(1)


class NodeInput(nn.Module):
    """Node features: 28-d one-hot, or a learned type embedding plus hyper-parameters."""

    def __init__(self, kind: str, embed_dim: int = 16, hp_dim: int = 0) -> None:
        super().__init__()
        self.kind = kind
        if kind == "onehot":
            self.dim = NUM_NODE_TYPES
        else:
            self.embed = nn.Embedding(NUM_NODE_TYPES, embed_dim)
            self.dim = embed_dim + hp_dim

    def forward(self, data) -> Tensor:
        if self.kind == "onehot":
            return nn.functional.one_hot(data.x, NUM_NODE_TYPES).to(torch.float32)
        return torch.cat([self.embed(data.x), data.hp], dim=1)


class GCNNet(nn.Module):
    """``simple_gcn`` (one-hot, 2 layers) and ``combined_gcn`` (embedding + hyper-parameters)."""

    def __init__(self, node_input: NodeInput, genome_dim: int, num_metrics: int,
                 hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        self.input = node_input
        dims = [node_input.dim] + [hidden] * layers
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in itertools.pairwise(dims))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.readout = Readout(hidden, genome_dim, hidden, num_metrics)

    def forward(self, data) -> tuple[Tensor, Tensor]:
        h = self.input(data)
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h, data.edge_index)))
        return self.readout(global_mean_pool(h, data.batch), data.g)


def _mean_aggregate(h: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """Row-normalised (A + I) h: the mean over a node's in-neighbours and itself."""
    ei, _ = add_self_loops(edge_index, num_nodes=num_nodes)
    return scatter(h[ei[0]], ei[1], dim=0, dim_size=num_nodes, reduce="mean")


class BiGCNLayer(nn.Module):
    """Wen et al.: ``(ReLU(norm(A) X W1) + ReLU(norm(A^T) X W2)) / 2``, dropout 0.1."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.forward_w = nn.Linear(d_in, d_out)
        self.backward_w = nn.Linear(d_in, d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, edge_index: Tensor) -> Tensor:
        n = h.shape[0]
        fwd = torch.relu(self.forward_w(_mean_aggregate(h, edge_index, n)))
        bwd = torch.relu(self.backward_w(_mean_aggregate(h, edge_index.flip(0), n)))
        return self.dropout((fwd + bwd) / 2)


class BiGCNNet(nn.Module):
    """The Neural Predictor's 4-layer bidirectional GCN, mean pooled, with the shared readout."""

    def __init__(self, node_input: NodeInput, genome_dim: int, num_metrics: int,
                 hidden: int = 64, layers: int = 4) -> None:
        super().__init__()
        self.input = node_input
        dims = [node_input.dim] + [hidden] * layers
        self.layers = nn.ModuleList(BiGCNLayer(a, b) for a, b in itertools.pairwise(dims))
        self.readout = Readout(hidden, genome_dim, hidden, num_metrics)

    def forward(self, data) -> tuple[Tensor, Tensor]:
        h = self.input(data)
        for layer in self.layers:
            h = layer(h, data.edge_index)
        return self.readout(global_mean_pool(h, data.batch), data.g)


class GINAgent(nn.Module):
    """One FR-NAS agent: 3 GINConv (Linear-ReLU-Linear, width 32) each followed by BatchNorm."""

    def __init__(self, node_input: NodeInput, genome_dim: int, num_metrics: int,
                 width: int = 32, layers: int = 3) -> None:
        super().__init__()
        self.input = node_input
        dims = [node_input.dim] + [width] * layers
        self.convs = nn.ModuleList(
            GINConv(nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b)))
            for a, b in itertools.pairwise(dims))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(layers))
        self.readout = Readout(width, genome_dim, 16, num_metrics)

    def forward(self, data, edge_index: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        h = self.input(data)
        pooled = []
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(conv(h, edge_index)))
            pooled.append(global_mean_pool(h, data.batch))
        z, fail = self.readout(pooled[-1], data.g)
        return z, fail, pooled


class FRNASNet(nn.Module):
    """Forward (A) and reverse (A^T) GIN agents; predictions are averaged."""

    def __init__(self, make_input, genome_dim: int, num_metrics: int) -> None:
        super().__init__()
        self.forward_agent = GINAgent(make_input(), genome_dim, num_metrics)
        self.reverse_agent = GINAgent(make_input(), genome_dim, num_metrics)

    def agents(self) -> tuple[GINAgent, GINAgent]:
        return self.forward_agent, self.reverse_agent

    def run_agent(self, which: int, data) -> tuple[Tensor, Tensor, list[Tensor]]:
        edges = data.edge_index if which == 0 else data.edge_index.flip(0)
        return self.agents()[which](data, edges)

    def forward(self, data) -> tuple[Tensor, Tensor]:
        z0, f0, _ = self.run_agent(0, data)
        z1, f1, _ = self.run_agent(1, data)
        return (z0 + z1) / 2, (f0 + f1) / 2


def pairwise_distances(h: Tensor) -> Tensor:
    """The instance relationship graph: in-batch Euclidean distances of pooled embeddings."""
    return torch.cdist(h, h)
