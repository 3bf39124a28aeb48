"""Train a predictor from a dataset directory, a CSV or records, and hash what it saw."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from torch_geometric.data import Data

from ml.datasets.records import as_records, mean_repeats
from ml.models.base import Predictor
from ml.models.registry import create, resolve_name


def load_training_records(dataset: str | Path | None = None, csv: str | Path | None = None,
                          metrics: tuple[str, ...] | None = None) -> tuple[list[Data], dict]:
    """Records plus a manifest-like dict (``metrics``, ``hash``) from a built dataset or a CSV."""
    if dataset is not None:
        from ml.datasets.reader import GraphDataset

        ds = GraphDataset(dataset)
        manifest = dict(ds.manifest)
        stored = tuple(manifest.get("metrics", ()))
        if metrics and tuple(metrics) != stored:
            raise ValueError(f"{dataset}: built with metrics {stored}, asked for {metrics}")
        text = json.dumps(manifest, sort_keys=True, default=str)
        return as_records(ds), {"metrics": stored,
                                "hash": hashlib.sha256(text.encode()).hexdigest()}
    if csv is None:
        raise ValueError("give a dataset directory or a CSV")
    from ml.datasets.labels import DEFAULT_METRICS
    from ml.datasets.records import load_csv

    chosen = tuple(metrics or DEFAULT_METRICS)
    records, _ = load_csv(csv, chosen)
    digest = hashlib.sha256(Path(csv).read_bytes()).hexdigest()
    return records, {"metrics": chosen, "hash": digest}


def fit_predictor(records: Any, model: str = "auto", config: dict[str, Any] | None = None,
                  val_records: Any = None, callbacks: Any = None,
                  resume_from: str | Path | None = None) -> tuple[Predictor, dict[str, Any]]:
    """Create and fit ``model`` on one record per genome (repeated measurements averaged,
    :func:`ml.datasets.records.mean_repeats`); returns the predictor and ``{"history",
    "fit_seconds"}``."""
    predictor = create(resolve_name(model), config)
    start = time.perf_counter()
    history = predictor.fit(mean_repeats(as_records(records)),
                            mean_repeats(as_records(val_records)) if val_records else None,
                            callbacks=callbacks, resume_from=resume_from)
    return predictor, {"history": history, "fit_seconds": time.perf_counter() - start}
