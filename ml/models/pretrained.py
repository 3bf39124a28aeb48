"""A graph encoder pre-trained without labels, and the genome embedding it gives.

The grammar yields unlimited architectures but only a few hundred carry labels. The encoder is
trained (``ml.train.pretrain``) to reconstruct masked nodes of sampled genomes' graphs: the
node's module type (cross-entropy) and its hyper-parameter columns (squared error), from the
graph around it. Message passing runs both with and against the data flow (the Neural
Predictor's bidirectional layer, :class:`ml.models.gnn.BiGCNLayer`), with residual connections,
so a node's embedding summarises what feeds it and what it feeds.

A genome's embedding is the mean and the max of its node embeddings, projected on the leading
principal components of the pre-training corpus (``dims`` columns): a fixed-length row that a
tree model can take beside :func:`ml.features.vectors.tabular_features`.

The whole state (network, node-input scaler, projection) is tensors plus a small JSON config,
so it can live inside a model bundle.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import global_max_pool, global_mean_pool

from ml.datasets.atomic import atomic_write_bytes
from ml.encoding.vocab import NUM_NODE_TYPES
from ml.features.vectors import NODE_INPUT_DIM, ColumnScaler, node_inputs
from ml.models.gnn import BiGCNLayer

#: The type index a masked node shows the encoder (one past the real types).
MASK_TYPE = NUM_NODE_TYPES


class MaskedGraphEncoder(nn.Module):
    """Node embeddings from (type, node inputs) by bidirectional message passing, plus the two
    reconstruction heads used only while pre-training."""

    def __init__(self, hidden: int = 64, layers: int = 3, type_dim: int = 16,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden, self.layers_count = hidden, layers
        self.type_embed = nn.Embedding(NUM_NODE_TYPES + 1, type_dim)
        self.input = nn.Linear(type_dim + NODE_INPUT_DIM, hidden)
        self.layers = nn.ModuleList(BiGCNLayer(hidden, hidden, dropout) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.type_head = nn.Linear(hidden, NUM_NODE_TYPES)
        self.input_head = nn.Linear(hidden, NODE_INPUT_DIM)

    def nodes(self, x: Tensor, hp: Tensor, edge_index: Tensor) -> Tensor:
        h = torch.relu(self.input(torch.cat([self.type_embed(x), hp], dim=1)))
        for layer, norm in zip(self.layers, self.norms):
            h = norm(h + layer(h, edge_index))
        return h

    def forward(self, x: Tensor, hp: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(node embeddings, type logits, reconstructed node inputs)."""
        h = self.nodes(x, hp, edge_index)
        return h, self.type_head(h), self.input_head(h)

    def config(self) -> dict[str, int]:
        return {"hidden": self.hidden, "layers": self.layers_count,
                "type_dim": self.type_embed.embedding_dim}


def light_graph(record: Data, scaler: ColumnScaler) -> Data:
    """What the encoder reads of a graph record: type index, scaled node inputs, edges."""
    return Data(x=record.node_type.long(), edge_index=record.edge_index,
                hp=torch.from_numpy(node_inputs(record, scaler)), num_nodes=record.num_nodes)


class GraphEmbedder:
    """A pre-trained encoder turned into fixed-length genome rows (see the module docstring)."""

    def __init__(self, encoder: MaskedGraphEncoder, scaler: ColumnScaler,
                 centre: np.ndarray | None = None, components: np.ndarray | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.encoder = encoder.eval()
        self.scaler = scaler
        self.centre = centre
        self.components = components
        self.info = dict(info or {})

    @property
    def dims(self) -> int:
        return 0 if self.components is None else int(self.components.shape[0])

    @torch.no_grad()
    def pooled(self, graphs: Sequence[Data], batch_size: int = 64,
               device: str | torch.device = "cpu") -> np.ndarray:
        """[n, 2 * hidden]: mean and max of the node embeddings of light graphs."""
        out = []
        self.encoder.to(device)
        for start in range(0, len(graphs), batch_size):
            batch = Batch.from_data_list(list(graphs[start:start + batch_size])).to(device)
            h = self.encoder.nodes(batch.x, batch.hp, batch.edge_index)
            out.append(torch.cat([global_mean_pool(h, batch.batch),
                                  global_max_pool(h, batch.batch)], 1).cpu().numpy())
        self.encoder.to("cpu")
        if not out:
            return np.zeros((0, 2 * self.encoder.hidden))
        return np.concatenate(out).astype(np.float64)

    def fit_projection(self, pooled: np.ndarray, dims: int) -> None:
        """Principal components of pooled corpus embeddings (the rows' coordinates)."""
        self.centre = pooled.mean(axis=0)
        _, _, vt = np.linalg.svd(pooled - self.centre, full_matrices=False)
        self.components = vt[:dims].copy()

    def embed(self, records: Sequence[Data], batch_size: int = 64) -> np.ndarray:
        """[n, dims] rows for graph records (as the encoder gives them)."""
        if self.components is None or self.centre is None:
            raise RuntimeError("the embedder has no projection yet (fit_projection)")
        pooled = self.pooled([light_graph(r, self.scaler) for r in records], batch_size)
        if not len(pooled):
            return np.zeros((0, self.dims))
        return (pooled - self.centre) @ self.components.T

    def digest(self) -> str:
        """12 hex digits naming this embedder's weights and projection (a row-cache key part)."""
        h = hashlib.sha256()
        for key, value in sorted(self.state().items()):
            h.update(key.encode())
            h.update(value.contiguous().numpy().tobytes())
        return h.hexdigest()[:12]

    # --- state: tensors and a JSON config ------------------------------------------------------
    def state(self, prefix: str = "") -> dict[str, Tensor]:
        if self.components is None or self.centre is None:
            raise RuntimeError("the embedder has no projection yet (fit_projection)")
        meta = {"encoder": self.encoder.config(), "info": self.info}
        return {**{prefix + "net." + k: v.detach().cpu() for k, v in
                   self.encoder.state_dict().items()},
                **self.scaler.state(prefix + "scaler."),
                prefix + "centre": torch.from_numpy(self.centre.astype(np.float64)),
                prefix + "components": torch.from_numpy(self.components.astype(np.float64)),
                prefix + "meta": torch.frombuffer(bytearray(json.dumps(meta).encode()),
                                                  dtype=torch.uint8)}

    @classmethod
    def from_state(cls, state: dict[str, Tensor], prefix: str = "") -> GraphEmbedder:
        meta = json.loads(bytes(state[prefix + "meta"].numpy().tobytes()).decode())
        encoder = MaskedGraphEncoder(**meta["encoder"])
        net = {k[len(prefix) + 4:]: v for k, v in state.items() if k.startswith(prefix + "net.")}
        encoder.load_state_dict(net)
        scaler = ColumnScaler()
        scaler.load(state, prefix + "scaler.")
        return cls(encoder, scaler, state[prefix + "centre"].numpy(),
                   state[prefix + "components"].numpy(), meta.get("info"))

    def save(self, path: str | Path) -> None:
        """Write the state atomically (tensors only; loadable with ``weights_only``)."""
        state = self.state()
        atomic_write_bytes(Path(path), lambda tmp: torch.save(state, tmp))

    @classmethod
    def load(cls, path: str | Path) -> GraphEmbedder:
        return cls.from_state(torch.load(path, map_location="cpu", weights_only=True))
