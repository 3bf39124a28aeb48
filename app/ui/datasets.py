"""Datasets in the dashboard: versions with lineage and counts per status, and one version's
per-metric distributions (histograms of every row of its lineage, read from the shards' label
tensors only) and a sample of its genomes to open in the inspector.

A ready version never changes, so its distributions are computed once per process (an LRU of
``DISTRIBUTION_CACHE`` versions); a version still building is never cached.
"""
from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from cachetools import LRUCache
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.services.datasets import dataset_view
from app.ui import plots
from app.ui.jobs import Ident
from app.ui.session import COOKIE_PATH, TrainViewer
from app.ui.templating import page
from service.db import session_scope
from service.store import datasets as dataset_store
from service.tables import INT32_MAX

router = APIRouter(prefix=COOKIE_PATH, include_in_schema=False)

DISTRIBUTION_CACHE = 16
#: Genomes of the source CSV listed on a dataset page (each opens in the inspector).
SAMPLE_ROWS = 25
_cache: LRUCache[str, list[dict[str, Any]]] = LRUCache(DISTRIBUTION_CACHE)
_lock = threading.Lock()


def distributions(dataset_id: str, path: str) -> list[dict[str, Any]]:
    """Per metric: count, quantiles and the histogram SVG, over non-failed rows."""
    with _lock:
        cached = _cache.get(dataset_id)
    if cached is not None:
        return cached
    import numpy as np

    from ml.datasets.reader import GraphDataset
    from ml.datasets.show import lineage_labels

    dataset = GraphDataset(path)
    y, failed, _ = lineage_labels(dataset)
    good = y[failed == 0] if len(y) else y
    out = []
    for j, metric in enumerate(dataset.metrics):
        column = good[:, j][np.isfinite(good[:, j])] if len(good) else good
        quantiles = [float(q) for q in np.quantile(column, [0, .25, .5, .75, 1])] \
            if column.size else []
        out.append({"metric": metric, "n": int(column.size), "quantiles": quantiles,
                    "direction": dataset.manifest.get("directions", {}).get(metric),
                    "svg": plots.histogram(column.tolist(), metric)})
    with _lock:
        _cache[dataset_id] = out
    return out


def _source_rows(handle: Any, path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a version's source: a built version's CSV, or an appended version's
    ``evaluations.jsonl`` (one screened record a line, as ``POST /evaluations`` wrote it)."""
    if path.suffix == ".jsonl":
        for line in handle:
            if line.strip():
                yield json.loads(line)
    else:
        yield from csv.DictReader(handle)


def genome_sample(source_path: str, limit: int = SAMPLE_ROWS) -> list[dict[str, Any]]:
    """The first genomes of the version's own source (row numbers as in that file)."""
    path = Path(source_path)
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for i, row in enumerate(_source_rows(handle, path)):
                if i >= limit:
                    break
                genome = row.get("genome") or ""
                generation = row.get("generation")
                out.append({"row": i, "genome": genome,
                            "generation": "" if generation is None else generation})
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):
        return out
    return out


def source_genome(dataset_id: str, row: int) -> str | None:
    """One genome of a dataset's source CSV, for the inspector's "pick from a dataset"."""
    with session_scope() as session:
        source = dataset_store.get_dataset(session, dataset_id).source_path
    sample = genome_sample(source, row + 1)
    return sample[row]["genome"] if len(sample) > row else None


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, viewer: TrainViewer,
                  offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0) -> HTMLResponse:
    with session_scope() as session:
        rows, total = dataset_store.list_datasets(session, 50, offset)
        datasets = [dataset_view(session, r, viewer.principal) for r in rows]
    return page(request, "datasets.html", viewer, datasets=datasets, total=total,
                offset=offset)


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(dataset_id: Ident, request: Request, viewer: TrainViewer) -> HTMLResponse:
    with session_scope() as session:
        row = dataset_store.get_dataset(session, dataset_id)
        dataset = dataset_view(session, row, viewer.principal)
        path, source, ready = row.path, row.source_path, row.status == "ready"
    charts = distributions(dataset_id, path) if ready and dataset["metrics"] else []
    return page(request, "dataset.html", viewer, dataset=dataset, charts=charts,
                sample=genome_sample(source))
