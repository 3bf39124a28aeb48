"""The graph-network predictors: :class:`~ml.models.neural.predictor.NeuralPredictor` (data
preparation, the epoch loop, early stopping, checkpoints, prediction) and its subclasses, which
choose a network of :mod:`ml.models.gnn` and an optimiser recipe; the losses, learning-rate
schedule and checkpoint files the loop uses are beside it.
"""
