"""``hierarchical_gnn``: the two-level encoder (cells once per variant, a flow-aware pass over
the genome's macro graph) trained like every neural predictor.

Only the data preparation differs from
:class:`~ml.models.neural.predictor.NeuralPredictor`: each record becomes its macro graph
(:func:`ml.encoding.macro.macro_graph`) whose cell nodes point into a
:class:`~ml.models.hierarchical.CellTable` of the cells' own graphs; trainer, losses, early
stopping, checkpoints, ensembles and device choice are the base class's. The cell table is
derived from the records (a content key per cell), so it is not part of the saved state: a
loaded bundle rebuilds it from whatever it predicts, with the saved scalers, and predicts the
same. On a graph that is not a layer chain (NAS-Bench-Graph) the macro graph is the graph.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.data import Data

from ml.encoding.macro import (
    CELL,
    EXTRA_COLUMNS,
    NUM_KINDS,
    Cell,
    local_edges,
    macro_graph,
    topological_levels,
)
from ml.features.vectors import GENOME_VECTOR_DIM, NODE_INPUT_DIM, ColumnScaler
from ml.models.hierarchical import CellTable, HierarchicalNet
from ml.models.neural.predictor import NeuralPredictor

#: The last columns of a node's input are its (log) output shape: per genome, not per variant.
_SHAPE_COLUMNS = 3


class HierarchicalGNNPredictor(NeuralPredictor):
    """Micro GNN per backbone cell + flow-aware macro encoder (issue 33)."""

    name = "hierarchical_gnn"
    version = 1
    defaults = {**NeuralPredictor.defaults, "epochs": 100, "patience": 25}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.cells = CellTable()
        self.extra_scaler = ColumnScaler()

    def build(self) -> nn.Module:
        return HierarchicalNet(self.cells, NODE_INPUT_DIM, NODE_INPUT_DIM, len(EXTRA_COLUMNS),
                               GENOME_VECTOR_DIM, len(self.metrics), NUM_KINDS,
                               int(self.config["hidden"]))

    # ----- data ------------------------------------------------------------------------------
    def _fit_scalers(self, records: list[Data]) -> None:
        super()._fit_scalers(records)
        graphs = [macro_graph(r) for r in records]
        self.extra_scaler.fit(np.concatenate([g.extra for g in graphs]),
                              np.concatenate([g.extra_present for g in graphs]))
        self.cells.clear()  # cell features depend on the hyper-parameter scaler just fitted

    def _prepare(self, records: list[Data], with_labels: bool) -> list[Data]:
        flat = super()._prepare(records, with_labels)
        return [self._macro_data(r, d) for r, d in zip(records, flat)]

    def _cell_graph(self, flat: Data, cell: Cell, edge_index: np.ndarray) -> Data:
        hp = flat.hp[cell.start:cell.stop].clone()
        hp[:, -_SHAPE_COLUMNS:] = 0.0
        return Data(x=flat.x[cell.start:cell.stop], hp=hp,
                    edge_index=torch.from_numpy(local_edges(edge_index, cell.start, cell.stop)),
                    num_nodes=cell.stop - cell.start)

    def _macro_data(self, record: Data, flat: Data) -> Data:
        m = macro_graph(record)
        rows = torch.from_numpy(m.rows)
        hp = flat.hp[rows].clone()
        hp[torch.from_numpy(m.kinds == CELL), :-_SHAPE_COLUMNS] = 0.0  # a cell node: its shape
        edge_index = record.edge_index.numpy()
        cell = torch.full((m.num_nodes,), -1, dtype=torch.long)
        for c, node in zip(m.cells, m.cell_nodes):
            cell[int(node)] = self.cells.add(
                c.key, lambda c=c: self._cell_graph(flat, c, edge_index))
        extra = np.clip(self.extra_scaler.transform(m.extra), -10, 10) * m.extra_present
        forward, backward = topological_levels(m.edges, m.num_nodes)
        d = Data(x=flat.x[rows], kind=torch.from_numpy(m.kinds).long(), hp=hp,
                 extra=torch.from_numpy(extra).float(),
                 extra_present=torch.from_numpy(m.extra_present).float(),
                 cell=cell, fwd_level=torch.from_numpy(forward),
                 bwd_level=torch.from_numpy(backward),
                 edge_index=torch.from_numpy(m.edges), g=flat.g, num_nodes=m.num_nodes)
        for key in ("z", "zmask", "failed"):
            if key in flat:
                d[key] = flat[key]
        return d

    # ----- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), **self.extra_scaler.state("extra.")}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.cells.clear()
        super().load_state_dict(state)
        self.extra_scaler.load(state, "extra.")

    def normalisation(self) -> dict[str, Any]:
        return {**super().normalisation(),
                "macro_extra": {"columns": list(EXTRA_COLUMNS),
                                "mean": self.extra_scaler.mean.tolist(),
                                "std": self.extra_scaler.std.tolist()}}
