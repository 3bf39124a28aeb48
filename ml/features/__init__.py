"""Feature engineering: what a genome's graph record becomes before a predictor sees it.

* :mod:`ml.features.vectors`: the per-genome vector, per-node network inputs, the column
  standardiser and the row models' design matrix (:func:`~ml.features.vectors.tabular_features`)
  with its column families;
* :mod:`ml.features.paths`: the path block of those rows (input -> output path statistics),
  memoised by graph structure;
* :mod:`ml.features.featurizers`: ``feature_key`` -> the function that computes those rows, so
  rows can be computed (and cached) without the model.

Predictors (:mod:`ml.models`) build on these; nothing here knows a predictor.
"""
