"""Graph-convolution predictors: the seed's two GCNs and Wen et al.'s bidirectional GCN. Each
only chooses its network (:mod:`ml.models.gnn`) and node input; training is
:class:`~ml.models.neural.predictor.NeuralPredictor`'s."""
from __future__ import annotations

from torch import nn

from ml.features.vectors import GENOME_VECTOR_DIM
from ml.models.gnn import BiGCNNet, GCNNet
from ml.models.neural.predictor import NeuralPredictor


class SimpleGCNPredictor(NeuralPredictor):
    """The seed's SimpleGCN: 2 GCNConv on the 28-d one-hot, mean pooling, shared readout."""

    name = "simple_gcn"
    node_input = "onehot"

    def build(self) -> nn.Module:
        return GCNNet(self.make_input(), GENOME_VECTOR_DIM, len(self.metrics),
                      int(self.config["hidden"]), layers=2)


class CombinedGCNPredictor(NeuralPredictor):
    """The seed's CombinedFeatureGCN, stabilised: standardised, clipped hyper-parameters,
    LayerNorm between convolutions, Huber loss on standardised targets and gradient clipping."""

    name = "combined_gcn"

    def build(self) -> nn.Module:
        return GCNNet(self.make_input(), GENOME_VECTOR_DIM, len(self.metrics),
                      int(self.config["hidden"]), layers=3)


class BiGCNPredictor(NeuralPredictor):
    """Wen et al.'s Neural Predictor: 4 bidirectional GCN layers (A and A^T averaged)."""

    name = "bigcn"

    def build(self) -> nn.Module:
        return BiGCNNet(self.make_input(), GENOME_VECTOR_DIM, len(self.metrics),
                        int(self.config["hidden"]), layers=4)
