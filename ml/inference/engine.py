"""The one engine that turns genome strings into predictions for a loaded predictor.

Every caller (``POST /predict`` and the search's scorers in the service, ``nas-surrogate
predict``, the CLI's and the ``propose`` job's :class:`ml.search.scoring.BundleScorer`) goes
through :meth:`Engine.evaluate`: text → hash or error (cached), hash → feature row or graph
record (cached), never-seen genomes of a row predictor encoded in the encoder processes when
there are enough of them, then predicted in chunks.

A batch is worked through in chunks (``predict_chunk`` genomes or ``predict_chunk_mb`` of graph
records, whichever comes first): encode, featurise, predict, then drop the chunk's records, so a
batch holds at most one chunk of graphs whatever its size. A :class:`RequestBudget` bounds the
encoding work (graph nodes) and the wall time of one batch; what was done before it ran out is
cached, so a retry continues where it stopped. Whatever a genome holds, it fails alone: a
``GenomeError`` (or, for a bug below the encoder, ``INTERNAL_ERROR``) is that item's answer.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.inference.budget import RequestBudget
from ml.inference.caches import Encoded, EncodingCache, record_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """Bounds of the engine. The service fills every field from its settings of the same name;
    the library's own callers (CLI, jobs) keep these defaults, under which a batch is bounded
    by neither nodes nor time (0)."""

    max_genome_length: int | None = None
    text_cache_mb: int = 64
    encoding_cache_mb: int = 256
    feature_cache_mb: int = 256
    predict_chunk: int = 512
    predict_chunk_mb: int = 64
    encoder_pool_min_misses: int = 64
    max_request_nodes: int = 0
    request_deadline_s: float = 0.0


@dataclass
class Evaluated:
    """What :meth:`Engine.evaluate` found for a batch: one outcome per genome and the model's
    arrays (NaN rows for failed genomes); ``has_std`` is False when the model gives no std."""

    outcomes: list[Encoded]
    mean: np.ndarray
    std: np.ndarray
    p_fail: np.ndarray
    has_std: bool
    hits: int
    #: [n, M, 2] 95 % intervals (NaN rows for failed genomes), None when the model has none
    interval: np.ndarray | None = None

    @property
    def hashes(self) -> list[str | None]:
        return [o.canonical_hash if o.error is None else None for o in self.outcomes]

    @property
    def errors(self) -> list[dict[str, Any] | None]:
        return [o.error for o in self.outcomes]


class Engine:
    """Encode (cached), featurise (cached) and predict batches for any loaded predictor.

    ``pool``: an :class:`ml.inference.pool.EncodingPool` for the never-seen genomes of row
    predictors (None: everything is encoded in this process). ``request_id()`` names the
    current request in the log line of a genome that failed with ``INTERNAL_ERROR``."""

    def __init__(self, config: EngineConfig = EngineConfig(), pool: Any = None,
                 request_id: Callable[[], str | None] = lambda: None) -> None:
        self.config, self.pool, self.request_id = config, pool, request_id
        self.cache = EncodingCache(config.max_genome_length, config.text_cache_mb,
                                   config.encoding_cache_mb, config.feature_cache_mb,
                                   on_internal_error=self._log_internal)
        self._predict_lock = threading.Lock()

    def _log_internal(self, message: str) -> None:
        log.error("request %s: genome failed with INTERNAL_ERROR: %s", self.request_id(),
                  message)

    def budget(self) -> RequestBudget:
        """A fresh budget with the configured bounds."""
        return RequestBudget(self.config.max_request_nodes, self.config.request_deadline_s)

    def evaluate(self, genomes: Sequence[str], model: Any, budget: RequestBudget | None = None,
                 trees: Sequence[Any] | None = None) -> Evaluated:
        """Encode (cached) and predict ``genomes`` in bounded chunks, without ranking: the
        outcome of every genome and the model's arrays (NaN rows for the failed ones).
        ``trees``: the parsed tree of each genome where the caller has it (no second parse).
        Raises :class:`ml.inference.budget.BudgetExceeded` past ``budget``, the work done so
        far cached."""
        genomes = list(genomes)
        budget = budget or self.budget()
        cache = self.cache
        key = getattr(model, "feature_key", None)
        n, m = len(genomes), len(model.metrics)
        outcomes: list[Encoded] = []
        mean, std, p_fail = np.full((n, m), np.nan), np.full((n, m), np.nan), np.ones(n)
        interval = np.full((n, m, 2), np.nan)
        flags = {"std": True, "interval": True}
        hits = 0
        chunk: list[int] = []
        chunk_bytes = 0
        chunk_limit = max(1, self.config.predict_chunk)
        bytes_limit = self.config.predict_chunk_mb * 2 ** 20
        # The batch's cached hashes and rows, looked up at once: a warm batch needs nothing
        # else from the caches. A row found here is held for its chunk (evicted meanwhile or
        # not); positions unknown now (the pool's, or new) are looked up as they come.
        known_now = cache.by_text.get_many(genomes)
        held: dict[int, np.ndarray] = {}
        if key is not None:
            ok = [i for i, k in enumerate(known_now) if k is not None and k.error is None]
            for i, row in zip(ok, cache.rows.get_many(
                    [cache.row_key(known_now[i].canonical_hash, key) for i in ok])):
                if row is not None:
                    held[i] = row

        def flush() -> None:
            nonlocal chunk, chunk_bytes
            if chunk:
                gave_std, gave_interval = self._predict(model, key, chunk, genomes, outcomes,
                                                        held, mean, std, p_fail, interval)
                flags["std"] &= gave_std
                flags["interval"] &= gave_interval
            for i in chunk:
                outcomes[i].record = None  # the graph is not needed past its chunk
                held.pop(i, None)
            chunk, chunk_bytes = [], 0

        pooled: set[int] = set()
        done = 0  # genomes[:done] are encoded (or known) and in a chunk

        def advance(upto: int) -> None:
            """Take genomes[done:upto] in order: cached or encoded here, then chunked and
            predicted as chunks fill (called as the encoder processes' results arrive, so the
            model predicts while they encode the rest)."""
            nonlocal done, hits, chunk_bytes
            while done < upto:
                i = done
                done += 1
                text = genomes[i]
                budget.check_time(i)
                known = known_now[i] or cache.identify(text)
                if known is not None and key is not None and known.error is None \
                        and i not in held:
                    row = cache.rows.get(cache.row_key(known.canonical_hash, key))
                    if row is not None:
                        held[i] = row
                if known is not None and (known.error is not None or i in held):
                    outcome, hit = Encoded(known.canonical_hash, error=known.error), True
                else:
                    outcome, hit = cache.encode(
                        text, keep_record=key is None,
                        tree=None if trees is None else trees[i], row_key=key)
                outcomes.append(outcome)
                hits += hit and i not in pooled
                if outcome.error is None:
                    chunk.append(i)
                    if outcome.record is not None:
                        chunk_bytes += record_bytes(None, outcome.record)
                if not hit:  # after the append: a genome that trips the budget is kept too
                    budget.spend(outcome.num_nodes, i)
                if len(chunk) >= chunk_limit or chunk_bytes >= bytes_limit:
                    flush()

        try:
            self._encode_in_pool(genomes, key, budget, pooled, advance)
            advance(n)
        except Exception:
            # Out of budget or time: keep the pending chunk's work (its feature rows) so the
            # retry the error invites continues from here instead of starting over.
            self._keep(model, key, chunk, genomes, outcomes)
            raise
        flush()
        cache.hits += hits
        cache.misses += n - hits
        return Evaluated(outcomes, mean, std, p_fail, flags["std"], hits,
                         interval if flags["interval"] else None)

    def _encode_in_pool(self, genomes: list[str], key: str | None, budget: RequestBudget,
                        pooled: set[int], ready: Callable[[int], None]) -> None:
        """Encode and featurise the batch's never-seen texts in the encoder processes when
        there are enough of them (their hash or error and row then sit in the cache, where
        the caller finds them). ``pooled`` gets the positions sent (cache misses) before any
        result; ``ready(p + 1)`` is called as position ``p``'s result arrives (in order; a
        task retried after a worker died comes last, and the caller has meanwhile encoded
        its genomes in process). A pool still starting is started, not waited for: this batch
        encodes in process."""
        pool = self.pool
        if pool is None or key is None:
            return
        from ml.inference.pool import supports

        if not supports(key):
            return
        first: dict[str, int] = {}
        for i, text in enumerate(genomes):
            if text not in first and self.cache.identify(text) is None:
                first[text] = i
        if len(first) < self.config.encoder_pool_min_misses:
            return
        if not pool.ready():
            pool.start()
            return
        texts, positions = list(first), list(first.values())
        pooled.update(positions)

        def keep(j: int, outcome: Any) -> None:
            self.cache.keep_pooled(texts[j], outcome, key)
            budget.spend(outcome.num_nodes, positions[j])
            ready(positions[j] + 1)

        try:
            pool.encode(texts, key, deadline=budget.deadline, on_result=keep)
        except TimeoutError:
            budget.check_time(positions[-1])  # past the deadline: DEADLINE_EXCEEDED
        except RuntimeError as exc:  # closed meanwhile (shutdown): encode in process
            log.warning("encoding pool unavailable: %s", exc)

    def _keep(self, model: Any, key: str | None, chunk: list[int], genomes: list[str],
              outcomes: list[Encoded]) -> None:
        """Cache the feature rows of a chunk that will not be predicted (graph records of
        graph-reading models are cached when encoded)."""
        pending = [i for i in chunk if i < len(outcomes) and outcomes[i].record is not None]
        if key is None or not pending:
            return
        with self._predict_lock:
            self.cache.feature_rows(model, [genomes[i] for i in pending],
                                    [outcomes[i] for i in pending])

    def _predict(self, model: Any, key: str | None, chunk: list[int], genomes: list[str],
                 outcomes: list[Encoded], held: dict[int, np.ndarray], mean: np.ndarray,
                 std: np.ndarray, p_fail: np.ndarray, interval: np.ndarray
                 ) -> tuple[bool, bool]:
        """Predict one chunk into the batch's arrays; an item whose featurisation or prediction
        raises becomes ``INTERNAL_ERROR``. ``held``: rows already in hand by position. Returns
        whether the model gave a std and an interval."""
        from ml.inference.chunks import predict_chunk

        failed: dict[int, dict[str, Any]] = {}
        positions = list(range(len(chunk)))
        with self._predict_lock:
            if key is not None:
                rows: list[np.ndarray | None] = [held.get(i) for i in chunk]
                missing = [j for j, row in enumerate(rows) if row is None]
                if missing:
                    found, failed_missing = self.cache.feature_rows(
                        model, [genomes[chunk[j]] for j in missing],
                        [outcomes[chunk[j]] for j in missing])
                    for j, row in zip(missing, found):
                        rows[j] = row
                    failed = {missing[k]: error for k, error in failed_missing.items()}
                if failed:
                    positions = [j for j in positions if j not in failed]
                result = predict_chunk(model, [rows[j] for j in positions], rows=True)
            else:
                result = predict_chunk(model, [outcomes[i].record for i in chunk], rows=False)
        for j, error in result.failed.items():
            failed[positions[j]] = error
        if result.kept:
            at = np.asarray([chunk[positions[j]] for j in result.kept], dtype=np.int64)
            mean[at], p_fail[at] = result.mean, result.p_fail
            if result.std is not None:
                std[at] = result.std
            if result.interval is not None:
                interval[at] = result.interval
        for j, error in failed.items():
            log.error("request %s: genome %d failed with INTERNAL_ERROR: %s",
                      self.request_id(), chunk[j], error["message"])
            outcomes[chunk[j]] = Encoded(None, error=error)
        return (result.std is not None or not result.kept,
                result.interval is not None or not result.kept)

