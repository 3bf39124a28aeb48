"""What the engine remembers between batches, each an LRU bounded in bytes (a graph record is
~0.27 MB, so a count bound would let memory run away):

* ``text → canonical hash`` (or the genome's error): skips parsing a string seen before, and
  makes a resubmitted bad genome free;
* ``(canonical hash, encoder version) → graph record``: skips compiling and encoding a genome
  seen before in any spelling (kept only for predictors that read graphs);
* ``(canonical hash, encoder version, feature key) → feature row`` for predictors that take one
  row per genome (stack, trees, gbt): a warm batch needs neither the graph nor the
  featurisation.
"""
from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache

from ml.errors import GenomeError, internal_error

log = logging.getLogger(__name__)


class ByteLRU(LRUCache):
    """A thread-safe ``cachetools.LRUCache`` bounded by the summed ``size(key, value)`` of its
    entries (a text's size is its key's). An entry larger than the whole bound is not kept."""

    def __init__(self, max_bytes: int, size: Callable[[Any, Any], int]) -> None:
        super().__init__(max(1, max_bytes))
        self._size = size
        self._next_size = 0
        self._lock = threading.Lock()

    def getsizeof(self, value: Any) -> int:
        # cachetools asks the size of the value being stored; put() has computed it, key and all
        return self._next_size

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return super().get(key, default)

    def get_many(self, keys: Iterable[Any]) -> list[Any]:
        """``get`` of each key (None where absent) under one lock."""
        with self._lock:
            return [super(ByteLRU, self).get(key) for key in keys]

    def put(self, key: Any, value: Any) -> None:
        nbytes = self._size(key, value)
        with self._lock:
            self._next_size = nbytes
            try:
                self[key] = value
            except ValueError:  # larger than the whole cache
                self.pop(key, None)

    @property
    def bytes(self) -> int:
        return self.currsize


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
    """One genome's outcome: its canonical hash and (while its chunk is scored) its graph
    record, or its error."""

    canonical_hash: str | None
    record: Any = None
    error: dict[str, Any] | None = None
    num_nodes: int = 0


class EncodingCache:
    """The three LRUs and the encoder that fills them. ``max_length`` bounds a genome's text;
    ``*_mb`` bound each LRU. ``on_internal_error(message)`` is told of a genome that failed with
    ``INTERNAL_ERROR`` (a bug, logged by the caller with its request's context)."""

    def __init__(self, max_length: int | None, text_mb: int, encoding_mb: int, feature_mb: int,
                 on_internal_error: Callable[[str], None] | None = None) -> None:
        from ml.encoding.encoder import ENCODER_VERSION, GenomeEncoder

        mb = 2 ** 20
        self.encoder = GenomeEncoder(max_length=max_length)
        self.version = ENCODER_VERSION
        self.by_text = ByteLRU(text_mb * mb, text_bytes)
        self.by_hash = ByteLRU(encoding_mb * mb, record_bytes)
        self.rows = ByteLRU(feature_mb * mb, row_bytes)
        self.on_internal_error = on_internal_error or (lambda message: log.error(
            "genome failed with INTERNAL_ERROR: %s", message))
        self.hits = 0
        self.misses = 0

    def identify(self, text: str) -> Encoded | None:
        """The cached hash (or error) of ``text`` without its record; None if unseen."""
        return self.by_text.get(text)

    def has_row(self, digest: str | None, key: str) -> bool:
        return (digest, self.version, key) in self.rows

    def row_key(self, digest: str | None, key: str) -> tuple[str | None, str, str]:
        return (digest, self.version, key)

    def encode(self, text: str, keep_record: bool = True, tree: Any = None,
               row_key: str | None = None) -> tuple[Encoded, bool]:
        """``(outcome with its record, cache_hit)``; never raises for a bad genome.
        ``keep_record=False`` (row-based predictors) does not cache the graph record. ``tree``
        is the parsed tree of ``text`` when the caller has it (the search's offspring: no
        second parse). With ``row_key``, a new spelling of a genome whose feature row is
        cached (same canonical hash) is a hit without encoding."""
        from ml.genome import canonical_hash, load

        known = self.by_text.get(text)
        if known is not None:
            if known.error is not None:
                return known, True
            record = self.by_hash.get((known.canonical_hash, self.version))
            if record is not None:
                return Encoded(known.canonical_hash, record), True
        try:
            genome = load(text, max_length=self.encoder.max_length, tree=tree)
            digest = canonical_hash(genome)
            if row_key is not None and not keep_record and self.has_row(digest, row_key):
                self.by_text.put(text, Encoded(digest))
                return Encoded(digest), True
            record = self.by_hash.get((digest, self.version))
            hit = record is not None
            if record is None:
                record = self.encoder.record(genome, text, digest)
                if keep_record:
                    self.by_hash.put((digest, self.version), record)
        except Exception as exc:
            error = exc if isinstance(exc, GenomeError) else internal_error("encoding", exc)
            outcome = Encoded(None, error=error.to_dict())
            if error.code == "INTERNAL_ERROR":
                self.on_internal_error(error.message)
            if not isinstance(exc, MemoryError):
                self.by_text.put(text, outcome)
            return outcome, False
        self.by_text.put(text, Encoded(digest))
        return Encoded(digest, record, num_nodes=int(record.num_nodes)), hit

    def keep_pooled(self, text: str, outcome: Any, key: str) -> None:
        """Cache what an encoder process found for ``text`` (an
        :class:`ml.inference.pool.RowOutcome`): its error, or its hash and feature row."""
        if outcome.error is not None:
            self.by_text.put(text, Encoded(None, error=outcome.error))
            return
        self.by_text.put(text, Encoded(outcome.canonical_hash))
        if outcome.row is not None:
            self.rows.put((outcome.canonical_hash, self.version, key), outcome.row)

    def feature_rows(self, model: Any, texts: list[str], outcomes: list[Encoded]
                     ) -> tuple[list[np.ndarray | None], dict[int, dict[str, Any]]]:
        """``model.featurize`` rows, computed once per genome and feature key (re-encoding a
        genome whose row and record were both evicted meanwhile). Returns the rows and the
        ``INTERNAL_ERROR`` of each position whose featurisation raised (its row is None)."""
        from ml.inference.chunks import run_isolated

        key = model.feature_key
        rows: list[np.ndarray | None] = self.rows.get_many(
            [(o.canonical_hash, self.version, key) for o in outcomes])
        missing = [i for i, row in enumerate(rows) if row is None]
        failed: dict[int, dict[str, Any]] = {}
        if missing:
            records = []
            for i in missing:
                record = outcomes[i].record
                if record is None:
                    record = self.encode(texts[i], keep_record=False)[0].record
                records.append(record)
            kept, computed, errors = run_isolated(model.featurize, records, "featurising")
            for j, row in zip(kept, computed):
                i = missing[j]
                rows[i] = row
                self.rows.put((outcomes[i].canonical_hash, self.version, key), row)
            failed = {missing[j]: error for j, error in errors.items()}
        return rows, failed
