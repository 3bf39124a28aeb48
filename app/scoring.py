"""The API process's predictor: the active model (reloaded when the alias moves) and an
encoding cache, scoring batches without Celery.

The cache has three levels, each an LRU bounded in bytes (a graph record is ~0.27 MB, so a
count bound would let memory run away):

* ``text → canonical hash`` (or the genome's error): skips parsing a string seen before, and
  makes a resubmitted bad genome free;
* ``(canonical hash, encoder version) → graph record``: skips compiling and encoding a genome
  seen before in any spelling;
* ``(canonical hash, encoder version, feature key) → feature row`` for predictors that take one
  row per genome (stack, trees, gbt): a warm batch needs neither the graph nor the
  featurisation.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from app.core.config import Settings
from app.core.errors import ServiceError
from ml.jsonsafe import json_safe

log = logging.getLogger(__name__)


class LRU:
    """A thread-safe LRU map bounded by the summed ``size(value)`` of its entries."""

    def __init__(self, max_bytes: int, size: Callable[[Any, Any], int]) -> None:
        self.max_bytes, self.size = max(1, max_bytes), size
        self.bytes = 0
        self._data: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            self._data.move_to_end(key)
            return entry[0]

    def put(self, key: Any, value: Any) -> None:
        nbytes = self.size(key, value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._data[key] = (value, nbytes)
            self.bytes += nbytes
            while self.bytes > self.max_bytes and len(self._data) > 1:
                _, (_, freed) = self._data.popitem(last=False)
                self.bytes -= freed

    def __contains__(self, key: Any) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)


def record_bytes(_: Any, record: Any) -> int:
    """Tensor bytes of a graph record (plus a little for the object itself)."""
    import torch
    return 1024 + sum(v.numel() * v.element_size() for v in record.to_dict().values()
                      if torch.is_tensor(v))


def text_bytes(text: str, _: Any) -> int:
    return sys.getsizeof(text) + 200


def row_bytes(_: Any, row: np.ndarray) -> int:
    return int(row.nbytes) + 112


@dataclass
class Encoded:
    """One genome's outcome: its canonical hash and (when needed) its graph record, or its
    error."""

    canonical_hash: str | None
    record: Any = None
    error: dict[str, Any] | None = None


class EncodingCache:
    def __init__(self, settings: Settings) -> None:
        from ml.encoding.encoder import ENCODER_VERSION, GenomeEncoder

        mb = 2 ** 20
        self.encoder = GenomeEncoder(max_length=settings.max_genome_length)
        self.version = ENCODER_VERSION
        self.by_text = LRU(settings.text_cache_mb * mb, text_bytes)
        self.by_hash = LRU(settings.encoding_cache_mb * mb, record_bytes)
        self.rows = LRU(settings.feature_cache_mb * mb, row_bytes)
        self.hits = 0
        self.misses = 0

    def identify(self, text: str) -> Encoded | None:
        """The cached hash (or error) of ``text`` without its record; None if unseen."""
        return self.by_text.get(text)

    def has_row(self, digest: str | None, key: str) -> bool:
        return (digest, self.version, key) in self.rows

    def encode(self, text: str) -> tuple[Encoded, bool]:
        """``(outcome with its record, cache_hit)``; never raises for a bad genome."""
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

    def feature_rows(self, model: Any, texts: list[str], outcomes: list[Encoded]) -> np.ndarray:
        """``model.featurize`` rows, computed once per genome and feature key (re-encoding a
        genome whose row and record were both evicted meanwhile)."""
        key = model.feature_key
        rows = [self.rows.get((o.canonical_hash, self.version, key)) for o in outcomes]
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            records = []
            for i in missing:
                record = outcomes[i].record
                if record is None:
                    record = self.encode(texts[i])[0].record
                records.append(record)
            for i, row in zip(missing, model.featurize(records)):
                rows[i] = row
                self.rows.put((outcomes[i].canonical_hash, self.version, key), row)
        return np.stack(rows)


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


class Scorer:
    """Encode (cached), predict in chunks, rank. One instance per API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = EncodingCache(settings)
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
        key = getattr(model, "feature_key", None)
        outcomes: list[Encoded] = []
        hits = 0
        for text in genomes:
            known = self.cache.identify(text)
            if known is not None and (known.error is not None or (
                    key is not None and self.cache.has_row(known.canonical_hash, key))):
                outcomes.append(known)   # nothing to encode: an error, or a cached row
                hits += 1
                continue
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
                    batch = [outcomes[i] for i in rows]
                    if key is not None:
                        x = self.cache.feature_rows(model, [genomes[i] for i in rows], batch)
                        pred = model.predict_features(x)
                    else:
                        pred = model.predict([o.record for o in batch])
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
                "p_fail": json_safe(p_fail[r]),
                "predictions": {k: json_safe(mean[r, j]) for j, k in enumerate(metrics)},
                "std": None if std is None else {k: json_safe(std[r, j])
                                                 for j, k in enumerate(metrics)},
                "rank": rank_of[i]})
        if top_k is not None:
            ranking = ranking[:top_k]
        return {"items": items, "ranking": ranking, "model_version": loaded.version,
                "model_name": loaded.name, "encoder_version": self.cache.version,
                "rank_by": rank_by, "cache_hits": hits}
