"""Every predictor: the one contract (:mod:`ml.models.base`), the row-based models (trees, gbt,
stack) and their target scaling, the graph predictors (:mod:`ml.models.neural`: the epoch loop
and its subclasses; their networks are :mod:`ml.models.gnn`), the composite ``blend``
(:mod:`ml.models.blend`), and the registry of them all by name (:mod:`ml.models.registry`).
Feature rows are :mod:`ml.features`.

Public API (stable; ``ml.evaluation`` and the CLI build on it)::

    from ml.models.base import Prediction, Predictor, TrainingCancelled
    from ml.models.registry import create, available_models   # every predictor by name
    from ml.train import fit_predictor, save_bundle, load_bundle
    from ml.datasets.records import as_records

    model: Predictor = create("auto" | "stack" | "trees" | "gbt" | "blend" | "simple_gcn"
                              | "combined_gcn" | "bigcn" | "frnas",
                              config={"metrics": ("uw_val_epoch_loss", ...), "seed": 0,
                                      "epochs": 200, "ensemble": 1, ...})
    history: dict = model.fit(train_records, val_records=None, callbacks=None, resume_from=None)
    pred: Prediction = model.predict(records)
    pred.mean      # np.ndarray [n, M] float64, original metric units, columns = model.metrics
    pred.std       # np.ndarray [n, M]: spread over ensemble members (forests: over their
                   # trees); None for a single non-forest member
    pred.p_fail    # np.ndarray [n] probability that the evaluation fails
    state = model.state_dict(); model.load_state_dict(state)   # flat dict[str, Tensor]

* ``records``: a list of ``torch_geometric`` ``Data`` from :func:`ml.datasets.records.load_csv`
  (fields ``y`` [1, M] raw metrics in ``config["metrics"]`` order, ``failed`` [1]), or any object
  with ``.records()`` (the sharded ``GraphDataset``); :func:`ml.datasets.records.as_records`
  normalises both.
  ``predict`` needs only the encoder fields (no labels).
* Failed rows (``failed == 1``) train only the validity head; regression uses the other rows.
* ``fit`` ignores ``val_records=None`` by carving a grouped 15 % validation split (by
  ``canonical_hash``) for early stopping when the model needs one.
* ``callbacks``: any object with optional ``on_epoch_end(epoch: int, metrics: dict)`` and
  ``should_stop() -> bool``; when ``should_stop()`` is true the trainer saves a checkpoint (if a
  checkpoint directory is configured) and raises :class:`TrainingCancelled` (``.checkpoint`` =
  path or None). ``resume_from=<checkpoint path>`` continues a neural fit exactly.
* ``config`` keys every model understands: ``metrics``, ``seed``, ``ensemble`` (K members; mean
  and std across members, p_fail averaged), ``checkpoint_dir``, ``checkpoint_every``.
  Neural models add ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``hidden``,
  ``patience``, ``rank_weight`` (pairwise hinge), ``device`` ("cpu"/"cuda"; default CUDA when
  present). ``trees`` adds ``n_estimators``, ``min_samples_leaf``, ``max_features``,
  ``target_transform`` ("auto" | "robust" | "rank": each metric's target kind, "auto" chosen on
  ``inner_folds`` grouped folds of ``inner_estimators`` trees, at most ``n_estimators``);
  ``gbt`` adds ``max_iter``, ``learning_rate``, ``max_depth``, ``min_samples_leaf``,
  ``target_transform``, ``inner_folds``; ``stack`` adds to the trees' keys ``svr_c``,
  ``svr_epsilon``, ``tree_weights`` (the grid its per-metric blend weight is chosen from);
  ``blend`` adds ``members``, ``weights`` and ``fail_weights`` ("auto": chosen on validation
  genomes), ``val_fraction``, ``member_configs``.
* Bundles: ``save_bundle(model, out_dir, manifest_hash=None, metrics=None) -> Path`` writes a
  versioned directory (``config.json``, ``weights.pt`` flat tensors loadable with
  ``torch.load(weights_only=True)``, ``normalisation.json``, ``training_metrics.json``,
  ``bundle.json`` with encoder version, model name/version, created time);
  ``load_bundle(dir) -> Predictor`` is ready to ``predict``.

Models (see ``available_models()``):

* ``stack`` (what ``auto`` means): per metric, ``trees`` blended with an RBF SVR on the same
  rows (``ml.models.kernel``), the trees' weight (0.5, 0.75 or 1) chosen by Kendall tau on
  inner grouped folds of the training rows (``ml.models.stack``); P(fail) from the trees.
* ``trees``: extremely randomised trees on per-genome + op-histogram + hyper-parameter summary
  + path features (``ml.features.vectors.tabular_features``), on winsorised targets.
* ``gbt``: histogram gradient boosting on the same features.
* ``blend``: trees + combined_gcn averaged in standardised target space; P(fail) from trees.
* ``auto``: whichever of these measured best (``ml.models.registry.AUTO_MODEL``).
* ``simple_gcn``: the seed's SimpleGCN (2 GCNConv on the 28-d one-hot, mean pool).
* ``combined_gcn``: type embedding + standardised hyper-parameters -> GCN (the seed's
  CombinedFeatureGCN, made stable).
* ``bigcn``: Wen et al.'s bidirectional GCN (A and A^T messages averaged, 4 layers).
* ``frnas``: FR-NAS (forward + reverse GIN, IRG distance matching, alternating updates).

Every neural model shares one readout: the per-genome vector (model_info + standardised training
genes + global features) fused with the pooled graph embedding, then multi-task regression heads
for the selected metrics and a validity head (logit of P(failed)).
"""
from __future__ import annotations

from ml.models.base import Prediction, Predictor, TrainingCancelled

__all__ = ["Prediction", "Predictor", "TrainingCancelled"]
