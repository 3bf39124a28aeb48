"""The API process's predictor: the active model (reloaded when the alias moves) and an
encoding cache, scoring batches without Celery.

The cache has two levels. ``text → canonical hash`` skips parsing for a genome string seen
before; ``(canonical hash, encoder version) → graph record`` skips compiling and featurising a
genome seen before in any spelling. Bad genomes are cached by text with their error, so a batch
that resubmits them costs nothing either. Both are LRU-bounded by ``encoding_cache_size``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core.config import Settings
from app.core.errors import ServiceError

log = logging.getLogger(__name__)


class LRU:
    """A small thread-safe LRU map."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class Encoded:
    """One genome's outcome: a record to predict on, or its error."""

    canonical_hash: str | None
    record: Any = None
    error: dict[str, Any] | None = None


class EncodingCache:
    def __init__(self, capacity: int, max_genome_length: int) -> None:
        from ml.encoding.encoder import ENCODER_VERSION, GenomeEncoder

        self.encoder = GenomeEncoder(max_length=max_genome_length)
        self.version = ENCODER_VERSION
        self.by_text = LRU(capacity)
        self.by_hash = LRU(capacity)
        self.hits = 0
        self.misses = 0

    def encode(self, text: str) -> tuple[Encoded, bool]:
        """``(outcome, cache_hit)``; never raises for a bad genome."""
        from ml.errors import GenomeError
        from ml.genome import canonical_hash, load

        known = self.by_text.get(text)
        if known is not None:
            if known.error is not None:
                return known, True
            record = self.by_hash.get((known.canonical_hash, self.version))
            if record is not None:
                return Encoded(known.canonical_hash, record), True
        try:
            genome = load(text, max_length=self.encoder.max_length)
            digest = canonical_hash(genome)
            record = self.by_hash.get((digest, self.version))
            hit = record is not None
            if record is None:
                try:
                    record = self.encoder.encode_genome(genome, text).to_data("combined")
                except GenomeError as exc:
                    raise exc.with_text(text) from None
                self.by_hash.put((digest, self.version), record)
        except GenomeError as exc:
            outcome = Encoded(None, error=exc.to_dict())
            self.by_text.put(text, outcome)
            return outcome, False
        self.by_text.put(text, Encoded(digest))
        return Encoded(digest, record), hit


@dataclass
class LoadedModel:
    name: str
    version: int
    predictor_name: str
    encoder_version: str
    model: Any


class ActiveModel:
    """Holds the active model version; ``current()`` reloads when the alias has moved."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    def current(self, wanted: int | None) -> LoadedModel:
        """The model for alias target ``wanted`` (None: the database was unreachable, keep what
        is loaded)."""
        loaded = self.loaded
        if loaded is not None and (wanted is None or wanted == loaded.version):
            return loaded
        if wanted is None:
            raise ServiceError("NO_ACTIVE_MODEL", "no model is active; train one with "
                               "POST /jobs/train (or activate a version)")
        with self._lock:
            if self.loaded is None or self.loaded.version != wanted:
                self.loaded = self._load(wanted)
            return self.loaded

    def _load(self, version: int) -> LoadedModel:
        from app.core.db import session_scope
        from app.store import registry
        from ml.train import load_bundle

        with session_scope() as session:
            row = registry.get_version(session, self.settings.model_name, version)
            path, predictor, encoder = row.source_path, row.predictor, row.encoder_version
        started = time.perf_counter()
        try:
            model = load_bundle(path)
        except (OSError, ValueError) as exc:
            raise ServiceError("NO_ACTIVE_MODEL", f"model v{version} cannot be loaded: {exc}") \
                from exc
        log.info("loaded %s v%d (%s) in %.2fs", self.settings.model_name, version, predictor,
                 time.perf_counter() - started)
        return LoadedModel(self.settings.model_name, version, predictor, encoder, model)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


class Scorer:
    """Encode (cached), predict in chunks, rank. One instance per API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = EncodingCache(settings.encoding_cache_size, settings.max_genome_length)
        self.active = ActiveModel(settings)
        self._predict_lock = threading.Lock()

    def score(self, genomes: list[str], loaded: LoadedModel, rank_by: str = "nsga2",
              direction: str | None = None, top_k: int | None = None) -> dict[str, Any]:
        from ml.ranking import rank_candidates

        model = loaded.model
        metrics = list(model.metrics)
        if rank_by != "nsga2" and rank_by not in metrics:
            raise ServiceError("UNKNOWN_METRIC", f"rank_by {rank_by!r} is not predicted by "
                               f"model v{loaded.version}", details={"metrics": metrics})
        outcomes: list[Encoded] = []
        hits = 0
        for text in genomes:
            outcome, hit = self.cache.encode(text)
            outcomes.append(outcome)
            hits += hit
        self.cache.hits += hits
        self.cache.misses += len(genomes) - hits
        ok_rows = [i for i, o in enumerate(outcomes) if o.error is None]
        n, m = len(ok_rows), len(metrics)
        mean, std, p_fail = np.zeros((n, m)), None, np.zeros(n)
        chunk = max(1, self.settings.predict_chunk)
        if n:
            std = np.zeros((n, m))
            with self._predict_lock:
                for start in range(0, n, chunk):
                    rows = ok_rows[start:start + chunk]
                    pred = model.predict([outcomes[i].record for i in rows])
                    mean[start:start + len(rows)] = pred.mean
                    p_fail[start:start + len(rows)] = pred.p_fail
                    if pred.std is None:
                        std = None
                    elif std is not None:
                        std[start:start + len(rows)] = pred.std
        if direction is None and rank_by != "nsga2":
            from ml.datasets.labels import DIRECTIONS
            direction = "max" if DIRECTIONS.get(rank_by, -1) > 0 else "min"
        order = rank_candidates(mean, p_fail, metrics, rank_by, direction)
        ranking = [ok_rows[i] for i in order]
        rank_of = {index: r + 1 for r, index in enumerate(ranking)}
        row_of = {index: r for r, index in enumerate(ok_rows)}
        items = []
        for i, outcome in enumerate(outcomes):
            if outcome.error is not None:
                items.append({"index": i, "ok": False, "error": outcome.error,
                              "canonical_hash": None, "p_fail": None, "predictions": None,
                              "std": None, "rank": None})
                continue
            r = row_of[i]
            items.append({
                "index": i, "ok": True, "error": None, "canonical_hash": outcome.canonical_hash,
                "p_fail": _finite(p_fail[r]),
                "predictions": {k: _finite(mean[r, j]) for j, k in enumerate(metrics)},
                "std": None if std is None else {k: _finite(std[r, j])
                                                 for j, k in enumerate(metrics)},
                "rank": rank_of[i]})
        if top_k is not None:
            ranking = ranking[:top_k]
        return {"items": items, "ranking": ranking, "model_version": loaded.version,
                "model_name": loaded.name, "encoder_version": self.cache.version,
                "rank_by": rank_by, "cache_hits": hits}
