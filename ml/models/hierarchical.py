"""The two-level (hierarchical) network: a GNN embeds each backbone cell once per variant, and a
flow-aware encoder runs over the small macro graph of the genome's layers.

* Micro: a cell (a backbone variant's body, see :mod:`ml.encoding.macro`) is encoded by three
  residual bidirectional mean-aggregation layers over its node types and hyper-parameters,
  mean- and max-pooled into one embedding. A batch embeds each distinct cell once; outside
  training (no gradient) the embedding is also kept per cell key, until the network trains
  again or loads other weights.
* Macro: nodes carry their kind, node type, hyper-parameters and shapes, plus the cell
  statistics (parameters, MACs, size) or the head's features; a cell node adds its embedding.
* Flow-aware message passing (GATES / FlowerFormer): nodes are visited in topological order,
  level by level, forward then backward; a node's incoming message (the sum of its
  predecessors' states) is transformed by the node's own operation (a gate and a transform
  from its embedding) before a GRU cell folds it into the node's state. The macro graph is
  tens of nodes deep at most, so this is tens of sequential steps rather than the hundreds a
  genome's FX graph would take.
* Readout: mean and max of the node states, fused with the per-genome vector (optimizer,
  scheduler, loss weights, learning rate, global features) in the shared :class:`Readout`.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_max_pool, global_mean_pool
from torch_geometric.utils import add_self_loops, scatter

from ml.encoding.vocab import NUM_NODE_TYPES
from ml.models.gnn import Readout


class CellTable:
    """Cell graphs by id, shared by a predictor and its networks (ids index ``graphs``; a key
    names the content, so a cell met again anywhere gets its first id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a served model may prepare records in several threads
        self.ids: dict[str, int] = {}
        self.keys: list[str] = []
        self.graphs: list[Data] = []

    def add(self, key: str, make: Callable[[], Data]) -> int:
        """The id of ``key``, building its graph with ``make()`` the first time."""
        found = self.ids.get(key)
        if found is None:
            graph = make()
            with self._lock:
                found = self.ids.get(key)
                if found is None:
                    self.graphs.append(graph)
                    self.keys.append(key)
                    found = self.ids[key] = len(self.keys) - 1
        return found

    def clear(self) -> None:
        with self._lock:
            self.ids.clear()
            self.keys.clear()
            self.graphs.clear()

    def __len__(self) -> int:
        return len(self.keys)


def _mean_aggregate(h: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """The mean over a node's in-neighbours and itself."""
    ei, _ = add_self_loops(edge_index, num_nodes=num_nodes)
    return scatter(h[ei[0]], ei[1], dim=0, dim_size=num_nodes, reduce="mean")


class MicroEncoder(nn.Module):
    """Cell graph -> embedding: type embedding + hyper-parameters, then residual bidirectional
    mean aggregation (A and A^T, as :class:`ml.models.gnn.BiGCNLayer` without its dropout: a
    cell's graph is fixed, so its embedding is deterministic per weights), mean + max pooled."""

    def __init__(self, hp_dim: int, hidden: int, layers: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(NUM_NODE_TYPES, 16)
        self.inp = nn.Linear(16 + hp_dim, hidden)
        self.forward_w = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.backward_w = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.out = nn.Linear(2 * hidden, hidden)

    def forward(self, cells: Batch) -> Tensor:
        h = torch.relu(self.inp(torch.cat([self.embed(cells.x), cells.hp], dim=1)))
        n = h.shape[0]
        edges = cells.edge_index
        for fw, bw in zip(self.forward_w, self.backward_w):
            fwd = _mean_aggregate(h, edges, n)
            bwd = _mean_aggregate(h, edges.flip(0), n)
            h = h + (torch.relu(fw(fwd)) + torch.relu(bw(bwd))) / 2
        pooled = torch.cat([global_mean_pool(h, cells.batch), global_max_pool(h, cells.batch)], 1)
        return torch.relu(self.out(pooled))


class FlowPass(nn.Module):
    """One direction of flow-aware message passing, level by level."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, dim)
        self.transform = nn.Linear(dim, dim, bias=False)
        self.cell = nn.GRUCell(dim, dim)

    def forward(self, x: Tensor, src: Tensor, dst: Tensor, level: Tensor) -> Tensor:
        """States after visiting the levels in order; ``src -> dst`` are the edges a message
        follows (reversed for the backward pass)."""
        h = torch.zeros_like(x)
        edge_level = level[dst]
        for k in range(int(level.max()) + 1 if level.numel() else 0):
            nodes = torch.nonzero(level == k).reshape(-1)
            if k == 0:
                message = torch.zeros_like(x[nodes])
            else:
                e = edge_level == k
                incoming = scatter(h[src[e]], dst[e], dim=0, dim_size=x.shape[0],
                                   reduce="sum")[nodes]
                # The operation at the node transforms the message that reaches it.
                message = torch.sigmoid(self.gate(x[nodes])) * self.transform(incoming)
            h = h.index_copy(0, nodes, self.cell(x[nodes], message))
        return h


class FlowLayer(nn.Module):
    """A forward and a backward pass over the DAG, merged residually."""

    def __init__(self, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.forward_pass = FlowPass(dim)
        self.backward_pass = FlowPass(dim)
        self.merge = nn.Linear(2 * dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor, fwd_level: Tensor,
                bwd_level: Tensor) -> Tensor:
        src, dst = edge_index
        f = self.forward_pass(x, src, dst, fwd_level)
        b = self.backward_pass(x, dst, src, bwd_level)
        return self.norm(x + self.dropout(torch.relu(self.merge(torch.cat([f, b], dim=1)))))


class HierarchicalNet(nn.Module):
    """Cells embedded by :class:`MicroEncoder`, the macro graph by :class:`FlowLayer`s, then
    the shared readout; input: a batch of macro graphs (``x`` node type, ``kind``, ``hp``,
    ``extra``, ``cell`` id or -1, ``fwd_level`` / ``bwd_level``, ``g``)."""

    def __init__(self, cells: CellTable, hp_dim: int, micro_hp_dim: int, extra_dim: int,
                 genome_dim: int, num_metrics: int, num_kinds: int, hidden: int = 64,
                 layers: int = 2) -> None:
        super().__init__()
        self.cells = cells
        self.micro = MicroEncoder(micro_hp_dim, hidden)
        self.kind = nn.Embedding(num_kinds, hidden)
        self.node_type = nn.Embedding(NUM_NODE_TYPES, hidden)
        self.inp = nn.Linear(hp_dim + 2 * extra_dim, hidden)
        self.cell_proj = nn.Linear(hidden, hidden)
        self.flows = nn.ModuleList(FlowLayer(hidden) for _ in range(layers))
        self.readout = Readout(2 * hidden, genome_dim, hidden, num_metrics)
        self._cache: dict[str, Tensor] = {}

    def train(self, mode: bool = True) -> HierarchicalNet:
        if mode:
            self._cache.clear()  # the weights are about to change
        return super().train(mode)

    @property
    def cached_cells(self) -> int:
        """How many cell embeddings are kept for inference."""
        return len(self._cache)

    def load_state_dict(self, *args, **kwargs):
        self._cache.clear()
        return super().load_state_dict(*args, **kwargs)

    def cell_embeddings(self, ids: Tensor, device: torch.device) -> Tensor:
        """[len(ids), hidden]: one micro pass per distinct id not cached."""
        keys = [self.cells.keys[i] for i in ids.tolist()]
        caching = not self.training and not torch.is_grad_enabled()
        missing = [i for i, k in zip(ids.tolist(), keys) if not (caching and k in self._cache)]
        fresh: dict[str, Tensor] = {}
        if missing:
            batch = Batch.from_data_list([self.cells.graphs[i] for i in missing]).to(device)
            out = self.micro(batch)
            fresh = {self.cells.keys[i]: out[j] for j, i in enumerate(missing)}
            if caching:
                self._cache.update(fresh)
        return torch.stack([fresh[k] if k in fresh else self._cache[k].to(device) for k in keys])

    def forward(self, data) -> tuple[Tensor, Tensor]:
        h = self.kind(data.kind) + self.node_type(data.x) + self.inp(
            torch.cat([data.hp, data.extra, data.extra_present], dim=1))
        at = torch.nonzero(data.cell >= 0).reshape(-1)
        if at.numel():
            ids, inverse = torch.unique(data.cell[at], return_inverse=True)
            emb = self.cell_embeddings(ids.cpu(), h.device)
            h = h.index_add(0, at, self.cell_proj(emb)[inverse])
        h = torch.relu(h)
        for flow in self.flows:
            h = flow(h, data.edge_index, data.fwd_level, data.bwd_level)
        pooled = torch.cat([global_mean_pool(h, data.batch), global_max_pool(h, data.batch)], 1)
        return self.readout(pooled, data.g)
