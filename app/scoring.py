"""The API process's scoring: the HTTP side of :mod:`ml.inference`'s engine.

What is here is what only a service knows: which model a request means (:class:`ModelCache`:
loaded bundles by name and version, reloaded when an alias moves, a version that cannot load
never taking its name down), one engine and encoder pool per process, the settings that bound
them, budget errors as service errors (413 ``REQUEST_TOO_LARGE``, 503 ``DEADLINE_EXCEEDED``
with ``Retry-After``), the request id in the log, and the ``/predict`` answer (ranked, in the
response schema's shape). Encoding, caching, chunking and prediction are the engine's.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pydantic_core

from app.telemetry import current_request_id
from ml.inference import budget as engine_budget
from ml.inference.budget import BudgetExceeded
from ml.inference.engine import Engine, EngineConfig, Evaluated
from ml.search.scoring import EngineScorer
from service.config import Settings
from service.errors import ServiceError

log = logging.getLogger(__name__)


def service_error(exc: BudgetExceeded) -> ServiceError:
    """The service's answer to a batch past its budget."""
    headers = None if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    return ServiceError(exc.code, exc.message, details=exc.details, headers=headers)


@contextmanager
def service_errors() -> Iterator[None]:
    """Budget errors raised inside as :class:`ServiceError`."""
    try:
        yield
    except BudgetExceeded as exc:
        raise service_error(exc) from None


class RequestBudget(engine_budget.RequestBudget):
    """The engine's budget of one request, its errors raised as :class:`ServiceError` (the
    routes that spend it directly, ``/genomes/encode`` and the searches, answer them as any
    other service error)."""

    def spend(self, nodes: int, index: int) -> None:
        try:
            super().spend(nodes, index)
        except BudgetExceeded as exc:
            raise service_error(exc) from None

    def check_time(self, index: int) -> None:
        try:
            super().check_time(index)
        except BudgetExceeded as exc:
            raise service_error(exc) from None


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's bounds: the settings of the same names."""
    return EngineConfig(**{f.name: getattr(settings, f.name) for f in fields(EngineConfig)})


#: The top-level fields of ``POST /predict``'s answer (``app.schemas.PredictResponse``).
ANSWER_FIELDS = ("items", "ranking", "model_name", "model_version", "encoder_version", "rank_by")


def predict_json(result: dict[str, Any]) -> bytes:
    """:meth:`Scorer.score`'s ``result`` as ``PredictResponse`` serialises it (its fields, in
    its order, errors as ``GenomeErrorOut``, ``interval`` null where absent), written by
    pydantic's JSON serialiser without validating each of the thousands of items first: the
    answer is built here in that shape, and a test holds it byte-equal to the model's."""
    items = [{"index": item["index"], "ok": item["ok"],
              "error": None if item["error"] is None else {
                  "code": item["error"]["code"], "message": item["error"]["message"],
                  "offset": item["error"].get("offset")},
              "canonical_hash": item["canonical_hash"], "p_fail": item["p_fail"],
              "predictions": item["predictions"], "std": item["std"], "rank": item["rank"],
              "interval": item.get("interval")} for item in result["items"]]
    return pydantic_core.to_json({**{k: result[k] for k in ANSWER_FIELDS}, "items": items})


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
        except Exception as exc:
            raise ServiceError("NO_ACTIVE_MODEL", f"model {name} v{version} cannot be loaded: "
                               f"{type(exc).__name__}") from exc
        log.info("loaded %s v%d (%s) in %.2fs", name, version, predictor,
                 time.perf_counter() - started)
        return LoadedModel(name, version, predictor, encoder, model, path=str(path))


def shared_pool(settings: Settings) -> Any:
    """This process's encoder pool for ``settings`` (:func:`ml.inference.pool.shared_pool`;
    None when ``encoder_processes`` is 0). Its workers build every backbone first when
    ``warm_up`` is set."""
    if settings.encoder_processes <= 0:
        return None
    from ml.inference.pool import shared_pool as pool_for

    return pool_for(settings.encoder_processes, settings.max_genome_length, settings.warm_up)


def close_pools() -> None:
    """Stop this process's encoder pools now: a stopping service leaves no process behind."""
    pool = sys.modules.get("ml.inference.pool")  # never imported here: no pool was made
    if pool is not None:
        pool.close_pools()


class Scorer:
    """The served models and this process's engine; :meth:`score` is ``POST /predict``'s
    answer. One instance per API process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models = ModelCache(settings)
        self.engine = Engine(engine_config(settings), shared_pool(settings), current_request_id)

    @property
    def cache(self) -> Any:
        """The engine's caches (hashes, graph records, feature rows) and encoder."""
        return self.engine.cache

    @property
    def pool(self) -> Any:
        """The encoder pool (None when ``encoder_processes`` is 0)."""
        return self.engine.pool

    @pool.setter
    def pool(self, pool: Any) -> None:
        self.engine.pool = pool

    def start_pool(self) -> None:
        """Spawn the encoder processes in the background (batches encode in process until
        every worker has built its backbones and answered)."""
        if self.pool is not None:
            self.pool.start()

    def budget(self) -> RequestBudget:
        return RequestBudget(self.settings.max_request_nodes, self.settings.request_deadline_s)

    def evaluate(self, genomes: Sequence[str], model: Any, budget: RequestBudget | None = None,
                 trees: Sequence[Any] | None = None) -> Evaluated:
        """The engine's :meth:`~ml.inference.engine.Engine.evaluate` under this request's
        budget, its errors as service errors."""
        with service_errors():
            return self.engine.evaluate(genomes, model, budget or self.budget(), trees)

    def score(self, genomes: list[str], loaded: LoadedModel, rank_by: str = "nsga2",
              direction: str | None = None, top_k: int | None = None,
              budget: RequestBudget | None = None) -> dict[str, Any]:
        """Score and rank ``genomes``: ``POST /predict``'s answer (``items`` in the predict-item
        shape plus ``rank``) and ``cache_hits`` for the metrics."""
        from ml.inference.items import batch_items
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
        errors = scored.errors
        ok_rows = np.flatnonzero(np.fromiter((e is None for e in errors), dtype=bool,
                                             count=len(errors)))
        if direction is None and rank_by != "nsga2":
            from ml.datasets.labels import DIRECTIONS
            direction = "max" if DIRECTIONS.get(rank_by, -1) > 0 else "min"
        order = rank_candidates(scored.mean[ok_rows], scored.p_fail[ok_rows], metrics, rank_by,
                                direction)
        ranking = ok_rows[order].tolist()
        rank = np.zeros(len(errors), dtype=np.int64)
        rank[ok_rows[order]] = np.arange(1, len(order) + 1)
        items = batch_items(scored.hashes, errors, metrics, scored.mean,
                            scored.std if scored.has_std else None, scored.p_fail,
                            scored.interval)
        for item, r in zip(items, rank.tolist()):
            item["rank"] = r if item["ok"] else None
        if top_k is not None:
            ranking = ranking[:top_k]
        return {"items": items, "ranking": ranking, "model_version": loaded.version,
                "model_name": loaded.name, "encoder_version": self.cache.version,
                "rank_by": rank_by, "cache_hits": scored.hits}


class SearchScorer(EngineScorer):
    """The search's view of the served model: candidates go through ``/predict``'s engine,
    caches and chunks under the proposal's ``budget``, its errors as service errors."""

    def __init__(self, scorer: Scorer, loaded: LoadedModel, budget: RequestBudget) -> None:
        super().__init__(scorer.engine, loaded.model, budget)

    def score(self, genomes: Sequence[str], trees: Sequence[Any] | None = None) -> Any:
        with service_errors():
            return super().score(genomes, trees)
