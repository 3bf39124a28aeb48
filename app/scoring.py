"""The API process's predictor: the active model (reloaded when the alias moves) and an
encoding cache, scoring batches without Celery.

The cache has three levels, each an LRU bounded in bytes (a graph record is ~0.27 MB, so a
count bound would let memory run away):

* ``text → canonical hash`` (or the genome's error): skips parsing a string seen before, and
  makes a resubmitted bad genome free;
* ``(canonical hash, encoder version) → graph record``: skips compiling and encoding a genome
  seen before in any spelling (kept only for predictors that read graphs);
* ``(canonical hash, encoder version, feature key) → feature row`` for predictors that take one
  row per genome (stack, trees, gbt): a warm batch needs neither the graph nor the
  featurisation.

A batch is worked through in chunks (``predict_chunk`` genomes or ``predict_chunk_mb`` of graph
records, whichever comes first): encode, featurise, predict, then drop the chunk's records, so a
request holds at most one chunk of graphs whatever its size. A :class:`RequestBudget` bounds the
encoding work (graph nodes) and the wall time of one request; what was done before it ran out
is cached, so a retry continues where it stopped. Whatever a genome holds, it fails alone: a
``GenomeError`` (or, for a bug below the encoder, ``INTERNAL_ERROR``) is that item's answer.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from app.telemetry import current_request_id
from service.config import Settings
from service.errors import ServiceError

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
    """One genome's outcome: its canonical hash and (while its chunk is scored) its graph
    record, or its error."""

    canonical_hash: str | None
    record: Any = None
    error: dict[str, Any] | None = None
    num_nodes: int = 0


@dataclass
class Evaluated:
    """What :meth:`Scorer.evaluate` found for a batch: one outcome per genome and the model's
    arrays; ``has_std`` is False when the model gives no std."""

    outcomes: list[Encoded]
    mean: np.ndarray
    std: np.ndarray
    p_fail: np.ndarray
    has_std: bool
    hits: int
    #: [n, M, 2] 95 % intervals (NaN rows for failed genomes), None when the model has none
    interval: np.ndarray | None = None


class SearchScorer:
    """The search's view of the served model (:class:`ml.search.scoring.CandidateScorer`):
    candidates go through the same encoding cache, chunking and budget as ``/predict``."""

    def __init__(self, scorer: "Scorer", loaded: "LoadedModel", budget: "RequestBudget") -> None:
        self.scorer, self.model, self.budget = scorer, loaded.model, budget
        self.metrics = list(loaded.model.metrics)

    def score(self, genomes: Sequence[str], trees: Sequence[Any] | None = None) -> Any:
        from ml.search.scoring import Scores

        scored = self.scorer.evaluate(list(genomes), self.model, self.budget, trees)
        return Scores([o.canonical_hash if o.error is None else None for o in scored.outcomes],
                      [o.error for o in scored.outcomes], scored.mean,
                      scored.std if scored.has_std else None, scored.p_fail)


class RequestBudget:
    """The work one request may cause: graph nodes encoded (cache misses) and wall time.

    Exceeding either answers with a code (413 ``REQUEST_TOO_LARGE``, 503 ``DEADLINE_EXCEEDED``
    with ``Retry-After``) instead of letting memory or latency run away; the genomes encoded so
    far stay cached."""

    def __init__(self, max_nodes: int, deadline_s: float) -> None:
        self.max_nodes, self.deadline_s = max_nodes, deadline_s
        self.nodes = 0
        self.started = time.monotonic()

    def spend(self, nodes: int, index: int) -> None:
        self.nodes += nodes
        if self.max_nodes and self.nodes > self.max_nodes:
            raise ServiceError("REQUEST_TOO_LARGE", f"the genomes up to index {index} already "
                               f"need {self.nodes} graph nodes of encoding (limit "
                               f"{self.max_nodes}); send smaller batches",
                               details={"max_request_nodes": self.max_nodes, "index": index})

    def check_time(self, index: int) -> None:
        if self.deadline_s and time.monotonic() - self.started > self.deadline_s:
            raise ServiceError("DEADLINE_EXCEEDED", f"the request ran past its {self.deadline_s:g}"
                               f" s deadline at index {index}; the work done is cached, retry to "
                               "continue", details={"deadline_s": self.deadline_s,
                                                    "index": index},
                               headers={"Retry-After": "1"})


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

    def encode(self, text: str, keep_record: bool = True, tree: Any = None,
               row_key: str | None = None) -> tuple[Encoded, bool]:
        """``(outcome with its record, cache_hit)``; never raises for a bad genome.
        ``keep_record=False`` (row-based predictors) does not cache the graph record. ``tree``
        is the parsed tree of ``text`` when the caller has it (the search's offspring: no
        second parse). With ``row_key``, a new spelling of a genome whose feature row is
        cached (same canonical hash) is a hit without encoding."""
        from ml.errors import GenomeError, internal_error
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
                try:
                    encoded = self.encoder.encode_genome(genome, text)
                    record = encoded.to_data("combined", layer_segments=encoded.layer_segments)
                except GenomeError as exc:
                    raise exc.with_text(text) from None
                if keep_record:
                    self.by_hash.put((digest, self.version), record)
        except Exception as exc:  # noqa: BLE001 - whatever the text holds, it fails alone
            error = exc if isinstance(exc, GenomeError) else internal_error("encoding", exc)
            outcome = Encoded(None, error=error.to_dict())
            if error.code == "INTERNAL_ERROR":
                log.error("request %s: genome failed with INTERNAL_ERROR: %s",
                          current_request_id(), error.message)
            if not isinstance(exc, MemoryError):
                self.by_text.put(text, outcome)
            return outcome, False
        self.by_text.put(text, Encoded(digest))
        return Encoded(digest, record, num_nodes=int(record.num_nodes)), hit

    def keep_pooled(self, text: str, outcome: Any, key: str) -> None:
        """Cache what an encoder process found for ``text`` (an
        :class:`ml.models.encoding_pool.RowOutcome`): its error, or its hash and feature row."""
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
        from ml.inference import run_isolated

        key = model.feature_key
        rows: list[np.ndarray | None] = [self.rows.get((o.canonical_hash, self.version, key))
                                         for o in outcomes]
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


@dataclass
class LoadedModel:
    name: str
    version: int
    predictor_name: str
    encoder_version: str
    model: Any
    #: The bundle directory (its training hashes are what a search must not propose).
    path: str | None = None
    _training_hashes: list[str] | None = None

    def training_hashes(self) -> list[str]:
        """Canonical hashes of the genomes this version was trained on (read once)."""
        if self._training_hashes is None:
            from ml.train.bundle import read_training_hashes

            self._training_hashes = read_training_hashes(self.path) if self.path else []
        return self._training_hashes


@dataclass
class _LoadFailure:
    retry_at: float
    delay: float
    message: str


class ModelCache:
    """The loaded model versions of this process, by ``(name, version)``: an LRU of at most
    ``max_loaded_models`` bundles, so several names serve side by side.

    A version that cannot be loaded never takes a name down while another of its versions is in
    memory: that one keeps serving, and the load is retried with exponential backoff
    (``model_load_backoff_s`` doubling up to 5 minutes) instead of on every request. While one
    request loads, the others keep serving what is loaded. An active version that cannot be
    loaded with nothing of its name in memory (a corrupt bundle at start-up) is served by the
    newest older version that loads, and :meth:`fallback` says so (``/readyz``)."""

    MAX_BACKOFF_S = 300.0
    #: Older versions tried, newest first, for an active version that cannot be loaded.
    FALLBACK_TRIES = 10

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._models: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._latest: dict[str, LoadedModel] = {}
        self._failures: dict[tuple[str, int], _LoadFailure] = {}
        #: name -> what serves in place of its active version, and why.
        self._fallbacks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def fallback(self, name: str) -> dict[str, Any] | None:
        """``{"active", "serving", "reason", "message"}`` while an older version of ``name``
        serves because its active version cannot be loaded; None otherwise."""
        return self._fallbacks.get(name)

    def latest(self, name: str) -> LoadedModel | None:
        """The version of ``name`` served last (what serves while its alias cannot be read)."""
        return self._latest.get(name)

    def current(self, name: str, wanted: int | None, active: bool = True) -> LoadedModel:
        """The model for ``name`` at version ``wanted`` (None: the database was unreachable,
        serve what is loaded). ``active``: ``wanted`` is the name's active version (what keeps
        serving through an outage); False for an explicitly pinned version."""
        key = (name, wanted) if wanted is not None else None
        loaded = self._models.get(key) if key else None
        if loaded is not None:
            return self._served(loaded, active)
        fallback = self._latest.get(name)
        if wanted is None:
            if fallback is not None:
                return fallback
            raise ServiceError("NO_ACTIVE_MODEL", f"no version of {name!r} is active; train one "
                               "with POST /jobs/train (or activate a version)")
        if not active:
            fallback = None  # a pinned version is that version or an error, never another
        failure = self._failures.get(key)
        if failure is not None and time.monotonic() < failure.retry_at:
            return self._fallback(fallback, name, wanted, failure.message)
        if not self._lock.acquire(blocking=fallback is None):
            return fallback  # another request is loading it; serve what is loaded meanwhile
        try:
            if key in self._models:
                return self._served(self._models[key], active)
            try:
                model = self.load(name, wanted)
            except ServiceError as exc:
                if exc.code != "NO_ACTIVE_MODEL":
                    raise  # no such version: nothing to back off from
                previous = self._failures.get(key)
                delay = min(self.MAX_BACKOFF_S, previous.delay * 2 if previous
                            else self.settings.model_load_backoff_s)
                self._failures[key] = _LoadFailure(time.monotonic() + delay, delay, exc.message)
                if active and fallback is None:
                    fallback = self._newest_loadable(name, wanted)
                if active and fallback is not None:
                    self._latest[name] = fallback
                    self._fallbacks[name] = {"active": wanted, "serving": fallback.version,
                                             "reason": "MODEL_NOT_LOADABLE",
                                             "message": exc.message}
                log.error("%s; %s (retry in %.0f s)", exc.message,
                          f"v{fallback.version} keeps serving" if fallback else
                          "nothing to serve", delay)
                return self._fallback(fallback, name, wanted, exc.message)
            self._failures.pop(key, None)
            self._store(model)
            return self._served(model, active)
        finally:
            self._lock.release()

    def install(self, model: LoadedModel) -> None:
        """Serve ``model`` now (activation already loaded it to check it)."""
        with self._lock:
            self._failures.pop((model.name, model.version), None)
            self._store(model)
            self._latest[model.name] = model

    def _store(self, model: LoadedModel) -> None:
        self._models[(model.name, model.version)] = model
        self._models.move_to_end((model.name, model.version))
        while len(self._models) > max(1, self.settings.max_loaded_models):
            old_key, old = self._models.popitem(last=False)
            if self._latest.get(old_key[0]) is old:
                del self._latest[old_key[0]]

    def _newest_loadable(self, name: str, below: int) -> LoadedModel | None:
        """The newest version of ``name`` older than ``below`` that loads (kept loaded)."""
        from service.db import session_scope
        from service.store import model_registry as registry

        with session_scope() as session:
            rows, _ = registry.list_versions(session, name, limit=self.FALLBACK_TRIES + 1)
            older = [row.version for row in rows if row.version < below]
        for version in older[:self.FALLBACK_TRIES]:
            try:
                model = self.load(name, version)
            except ServiceError as exc:
                log.error("fallback: %s", exc.message)
                continue
            self._store(model)
            return model
        return None

    def _served(self, model: LoadedModel, active: bool) -> LoadedModel:
        if active:
            self._latest[model.name] = model
            self._fallbacks.pop(model.name, None)
        key = (model.name, model.version)
        if key in self._models:
            self._models.move_to_end(key)
        return model

    @staticmethod
    def _fallback(fallback: LoadedModel | None, name: str, wanted: int,
                  message: str) -> LoadedModel:
        if fallback is not None:
            return fallback
        raise ServiceError("NO_ACTIVE_MODEL", message, details={"name": name,
                                                                "version": wanted})

    def load(self, name: str, version: int) -> LoadedModel:
        """Load a registered version (no caching); any failure is ``NO_ACTIVE_MODEL``."""
        from ml.train import load_bundle
        from service.db import session_scope
        from service.store import model_registry as registry

        with session_scope() as session:
            row = registry.get_version(session, name, version)
            path, predictor, encoder = row.source_path, row.predictor, row.encoder_version
        started = time.perf_counter()
        try:
            model = load_bundle(path)
        except Exception as exc:  # noqa: BLE001 - a bad bundle is a refused version, not a 500
            raise ServiceError("NO_ACTIVE_MODEL", f"model {name} v{version} cannot be loaded: "
                               f"{type(exc).__name__}") from exc
        log.info("loaded %s v%d (%s) in %.2fs", name, version, predictor,
                 time.perf_counter() - started)
        return LoadedModel(name, version, predictor, encoder, model, path=str(path))


_POOLS: dict[tuple[int, int, bool], Any] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(settings: Settings) -> Any:
    """This process's encoder pool for ``settings`` (not started; None when
    ``encoder_processes`` is 0). One per process, shared by every scorer in it: workers cost
    memory and seconds to start, and a second app in the process (tests) needs no more. Its
    workers build every backbone first when ``warm_up`` is set."""
    if settings.encoder_processes <= 0:
        return None
    from ml.models.encoding_pool import EncodingPool

    key = (settings.encoder_processes, settings.max_genome_length, settings.warm_up)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = EncodingPool(*key)
        return pool


def close_pools() -> None:
    """Stop this process's encoder pools now (their workers are terminated; the fork server
    then exits, its last client gone): a stopping service leaves no process behind. A later
    :func:`shared_pool` makes a fresh pool."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close(wait=False)


class Scorer:
    """Encode (cached), predict in chunks, rank. One instance per API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = EncodingCache(settings)
        self.models = ModelCache(settings)
        self.pool = shared_pool(settings)
        self._predict_lock = threading.Lock()

    def start_pool(self) -> None:
        """Spawn the encoder processes in the background (batches encode in process until
        every worker has built its backbones and answered)."""
        if self.pool is not None:
            self.pool.start()

    def budget(self) -> RequestBudget:
        return RequestBudget(self.settings.max_request_nodes, self.settings.request_deadline_s)

    def score(self, genomes: list[str], loaded: LoadedModel, rank_by: str = "nsga2",
              direction: str | None = None, top_k: int | None = None,
              budget: RequestBudget | None = None) -> dict[str, Any]:
        from ml.inference import error_item, ok_item
        from ml.ranking import rank_candidates, ranking_objectives

        model = loaded.model
        metrics = list(model.metrics)
        if rank_by == "nsga2":
            if not ranking_objectives(metrics):
                raise ServiceError("UNKNOWN_METRIC", f"model v{loaded.version} predicts none of "
                                   "the evolution's objectives; rank by one of its metrics",
                                   details={"metrics": metrics})
        elif rank_by not in metrics:
            raise ServiceError("UNKNOWN_METRIC", f"rank_by {rank_by!r} is not predicted by "
                               f"model v{loaded.version}", details={"metrics": metrics})
        scored = self.evaluate(genomes, model, budget)
        outcomes, mean, std, p_fail = scored.outcomes, scored.mean, scored.std, scored.p_fail
        ok_rows = [i for i, o in enumerate(outcomes) if o.error is None]
        if direction is None and rank_by != "nsga2":
            from ml.datasets.labels import DIRECTIONS
            direction = "max" if DIRECTIONS.get(rank_by, -1) > 0 else "min"
        order = rank_candidates(mean[ok_rows], p_fail[ok_rows], metrics, rank_by, direction)
        ranking = [ok_rows[i] for i in order]
        rank_of = {index: r + 1 for r, index in enumerate(ranking)}
        items = []
        for i, outcome in enumerate(outcomes):
            if outcome.error is not None:
                items.append({**error_item(i, outcome.error), "rank": None})
                continue
            items.append({**ok_item(i, outcome.canonical_hash, metrics, mean[i],
                                    std[i] if scored.has_std else None, p_fail[i],
                                    None if scored.interval is None else scored.interval[i]),
                          "rank": rank_of[i]})
        if top_k is not None:
            ranking = ranking[:top_k]
        return {"items": items, "ranking": ranking, "model_version": loaded.version,
                "model_name": loaded.name, "encoder_version": self.cache.version,
                "rank_by": rank_by, "cache_hits": scored.hits}

    def evaluate(self, genomes: list[str], model: Any, budget: RequestBudget | None = None,
                 trees: Sequence[Any] | None = None) -> "Evaluated":
        """Encode (cached) and predict ``genomes`` in bounded chunks, without ranking: the
        outcome of every genome and the model's arrays (NaN rows for the failed ones)."""
        budget = budget or self.budget()
        key = getattr(model, "feature_key", None)
        n, m = len(genomes), len(model.metrics)
        outcomes: list[Encoded] = []
        mean, std, p_fail = np.full((n, m), np.nan), np.full((n, m), np.nan), np.ones(n)
        interval = np.full((n, m, 2), np.nan)
        has_std = has_interval = True
        hits = 0
        chunk: list[int] = []
        chunk_bytes = 0
        chunk_limit = max(1, self.settings.predict_chunk)
        bytes_limit = self.settings.predict_chunk_mb * 2 ** 20

        def flush() -> None:
            nonlocal has_std, has_interval, chunk, chunk_bytes
            if chunk:
                gave_std, gave_interval = self._predict(model, key, chunk, genomes, outcomes,
                                                        mean, std, p_fail, interval)
                has_std &= gave_std
                has_interval &= gave_interval
            for i in chunk:
                outcomes[i].record = None  # the graph is not needed past its chunk
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
                known = self.cache.identify(text)
                if known is not None and (known.error is not None or (
                        key is not None and self.cache.has_row(known.canonical_hash, key))):
                    outcome, hit = Encoded(known.canonical_hash, error=known.error), True
                else:
                    outcome, hit = self.cache.encode(
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
        except ServiceError:
            # Out of budget or time: keep the pending chunk's work (its feature rows) so the
            # retry the error invites continues from here instead of starting over.
            self._keep(model, key, chunk, genomes, outcomes)
            raise
        flush()
        self.cache.hits += hits
        self.cache.misses += n - hits
        return Evaluated(outcomes, mean, std, p_fail, has_std, hits,
                         interval if has_interval else None)

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
        from ml.models.encoding_pool import supports

        if not supports(key):
            return
        first: dict[str, int] = {}
        for i, text in enumerate(genomes):
            if text not in first and self.cache.identify(text) is None:
                first[text] = i
        if len(first) < self.settings.encoder_pool_min_misses:
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

        deadline = budget.started + budget.deadline_s if budget.deadline_s else None
        try:
            pool.encode(texts, key, deadline=deadline, on_result=keep)
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
                 outcomes: list[Encoded], mean: np.ndarray, std: np.ndarray,
                 p_fail: np.ndarray, interval: np.ndarray) -> tuple[bool, bool]:
        """Predict one chunk into the request's arrays; an item whose featurisation or
        prediction raises becomes ``INTERNAL_ERROR``. Returns whether the model gave a std and
        an interval."""
        from ml.inference import predict_chunk

        failed: dict[int, dict[str, Any]] = {}
        positions = list(range(len(chunk)))
        with self._predict_lock:
            if key is not None:
                rows, failed = self.cache.feature_rows(
                    model, [genomes[i] for i in chunk], [outcomes[i] for i in chunk])
                positions = [j for j in positions if j not in failed]
                result = predict_chunk(model, [rows[j] for j in positions], rows=True)
            else:
                result = predict_chunk(model, [outcomes[i].record for i in chunk], rows=False)
        for j, error in result.failed.items():
            failed[positions[j]] = error
        for r, j in enumerate(result.kept):
            i = chunk[positions[j]]
            mean[i], p_fail[i] = result.mean[r], result.p_fail[r]
            if result.std is not None:
                std[i] = result.std[r]
            if result.interval is not None:
                interval[i] = result.interval[r]
        for j, error in failed.items():
            log.error("request %s: genome %d failed with INTERNAL_ERROR: %s",
                      current_request_id(), chunk[j], error["message"])
            outcomes[chunk[j]] = Encoded(None, error=error)
        return (result.std is not None or not result.kept,
                result.interval is not None or not result.kept)
