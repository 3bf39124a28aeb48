"""From genome strings to predictions for a loaded predictor: the one engine.

* :mod:`ml.inference.engine`: :class:`Engine` (caches, encoder pool, chunks, budget) and
  :class:`EngineConfig`;
* :mod:`ml.inference.caches`: the byte-bounded LRUs (text → hash or error, hash → graph
  record, hash → feature row) and the encoder that fills them;
* :mod:`ml.inference.budget`: :class:`RequestBudget` (graph nodes, wall time) and
  :class:`BudgetExceeded`;
* :mod:`ml.inference.chunks`: one model call per chunk, item by item when it raises;
* :mod:`ml.inference.items`: the one predict-item shape (CLI and API);
* :mod:`ml.inference.pool`: the encoder processes (on :mod:`ml.processes`), their fork
  server's warm-up (:mod:`ml.inference.preload`) and row featurisers
  (:mod:`ml.features.featurizers`).

Importing this package imports neither torch nor the pool.
"""
from __future__ import annotations

from ml.inference.budget import BudgetExceeded, RequestBudget
from ml.inference.chunks import ChunkResult, predict_chunk, run_isolated
from ml.inference.engine import Engine, EngineConfig, Evaluated
from ml.inference.items import batch_items, error_item, ok_item

__all__ = ["BudgetExceeded", "ChunkResult", "Engine", "EngineConfig", "Evaluated",
           "RequestBudget", "batch_items", "error_item", "ok_item", "predict_chunk",
           "run_isolated"]
