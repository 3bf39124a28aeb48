"""Dependencies: settings, a database session, the authenticated principal with a scope.

Authentication caches *verified* keys in memory for ``KEY_CACHE_TTL_S`` (an LRU of at most
``KEY_CACHE_SIZE``; unknown keys are never cached, so random keys cannot evict real ones, and a
revoked key stops working within the TTL, at once in the process that revoked it). While the
database is unreachable a key verified before keeps working (so ``/predict`` survives a
database outage), and unknown keys are refused with 503, never let through. Failed
authentications are counted against the failing credential and against the client address;
past ``auth_failures_per_minute`` of either, failures answer 429 instead of 401, but a key that
authenticates is never refused for them (one address cannot lock out the keys behind it).
``rate_limit_per_key`` caps each key's requests per minute. The client address is the TCP peer;
``X-Forwarded-For`` counts only from ``trusted_proxies`` (``app.main``), so varying it does not
dodge the limit.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from cachetools import TTLCache
from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from service.config import Settings
from service.db import session_scope
from service.errors import ServiceError
from service.security import allows, hash_key
from service.store import keys as key_store

KEY_CACHE_TTL_S = 30.0
KEY_CACHE_SIZE = 10_000
#: Client addresses (failed authentications) and keys (request rates) tracked at once.
TRACKED = 100_000
WINDOW_S = 60.0


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    scopes: tuple[str, ...]

    @property
    def ident(self) -> str:
        return f"key:{self.key_id}"

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


class KeyCache:
    """Verified keys by digest (TTL + LRU). The stale copy of an entry survives its TTL only to
    serve through a database outage."""

    def __init__(self) -> None:
        self._fresh: TTLCache[str, Principal] = TTLCache(KEY_CACHE_SIZE, KEY_CACHE_TTL_S)
        self._stale: TTLCache[str, Principal] = TTLCache(KEY_CACHE_SIZE, 24 * 3600)
        self._lock = threading.Lock()

    def lookup(self, plaintext: str) -> Principal | None:
        digest = hash_key(plaintext)
        with self._lock:
            cached = self._fresh.get(digest)
        if cached is not None:
            return cached
        try:
            with session_scope() as session:
                row = key_store.authenticate(session, plaintext)
                principal = None if row is None else Principal(row.id, row.name,
                                                               tuple(row.scopes))
        except ServiceError:
            with self._lock:
                stale = self._stale.get(digest)
            if stale is not None:
                return stale  # verified before: keep serving during a DB outage
            raise
        with self._lock:
            if principal is None:
                self._stale.pop(digest, None)
            else:
                self._fresh[digest] = self._stale[digest] = principal
        return principal

    def forget(self, key_id: int) -> None:
        """Drop a revoked key at once (other processes drop it within the TTL)."""
        with self._lock:
            for cache in (self._fresh, self._stale):
                for digest in [d for d, p in cache.items() if p.key_id == key_id]:
                    cache.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._fresh.clear()
            self._stale.clear()


class WindowCounter:
    """Events per key in fixed windows of ``WINDOW_S`` (bounded: an LRU of ``TRACKED`` keys)."""

    def __init__(self) -> None:
        self._counts: TTLCache[str, list[float]] = TTLCache(TRACKED, WINDOW_S)
        self._lock = threading.Lock()

    def count(self, key: str) -> int:
        with self._lock:
            entry = self._counts.get(key)
            return 0 if entry is None else int(entry[1])

    def add(self, key: str) -> int:
        """Count one event; returns the count in the current window."""
        now = time.monotonic()
        with self._lock:
            entry = self._counts.get(key)
            if entry is None or now - entry[0] >= WINDOW_S:
                entry = [now, 0.0]
            entry[1] += 1
            self._counts[key] = entry
            return int(entry[1])

    def retry_after(self, key: str) -> int:
        with self._lock:
            entry = self._counts.get(key)
        return 1 if entry is None else max(1, int(WINDOW_S - (time.monotonic() - entry[0])) + 1)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session() -> Iterator[Session]:
    """The request's session, committed when the route function returns and *before* the
    response is produced (``scope="function"``; FastAPI's default for a ``yield`` dependency
    ends it after the response is sent, so a failed commit was answered as a success). A failed
    commit is the route's error: 503 ``DATABASE_UNAVAILABLE`` or 507 ``DISK_FULL``."""
    with session_scope() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
#: Every route that writes through the request's session uses this one dependency; routes that
#: open ``session_scope`` themselves commit inside the function, before answering, too.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _too_many(message: str, retry_after: int) -> ServiceError:
    return ServiceError("TOO_MANY_REQUESTS", message, details={"retry_after_s": retry_after},
                        headers={"Retry-After": str(retry_after)})


def _refuse(request: Request, credential: str | None, message: str) -> ServiceError:
    """A failed authentication: counted against the credential (its digest) and the client
    address; 401, or 429 once either is past ``auth_failures_per_minute`` this window."""
    failures = request.app.state.auth_failures
    counters = ["address:" + client_address(request)]
    if credential:
        counters.append("credential:" + hash_key(credential))
    counts = [(failures.add(counter), counter) for counter in counters]
    limit = request.app.state.settings.auth_failures_per_minute
    over = [counter for count, counter in counts if count > limit]
    if limit and over:
        return _too_many("too many failed authentications from this address or with this key",
                         max(failures.retry_after(counter) for counter in over))
    return ServiceError("UNAUTHENTICATED", message)


def authenticate(request: Request, x_api_key: str | None) -> Principal:
    """The principal of a key. A key that authenticates is never refused for others'
    failures; a failure is 401, or 429 past the limit (see :func:`_refuse`). A credential
    already past the limit is refused without another database lookup."""
    settings = request.app.state.settings
    if not x_api_key:
        raise _refuse(request, None, "send an API key in the X-API-Key header")
    limit = settings.auth_failures_per_minute
    if limit and request.app.state.auth_failures.count(
            "credential:" + hash_key(x_api_key)) >= limit:
        raise _refuse(request, x_api_key, "the API key is unknown or revoked")
    principal = request.app.state.key_cache.lookup(x_api_key)
    if principal is None:
        raise _refuse(request, x_api_key, "the API key is unknown or revoked")
    per_key = settings.rate_limit_per_key
    if per_key and request.app.state.key_rates.add(principal.ident) > per_key:
        raise _too_many(f"this key is limited to {per_key} requests per minute",
                        request.app.state.key_rates.retry_after(principal.ident))
    return principal


def require(scope: str) -> Callable[..., Principal]:
    def dependency(request: Request,
                   x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None
                   ) -> Principal:
        principal = authenticate(request, x_api_key)
        if not allows(principal.scopes, scope):
            raise ServiceError("PERMISSION_DENIED", f"this key lacks the {scope!r} scope")
        return principal
    return dependency


def require_any(*scopes: str) -> Callable[..., Principal]:
    """A key holding at least one of ``scopes`` (admin holds them all)."""
    def dependency(request: Request,
                   x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None
                   ) -> Principal:
        principal = authenticate(request, x_api_key)
        if not any(allows(principal.scopes, scope) for scope in scopes):
            raise ServiceError("PERMISSION_DENIED",
                               f"this key lacks every one of the scopes {list(scopes)}")
        return principal
    return dependency


PredictPrincipal = Annotated[Principal, Depends(require("predict"))]
TrainPrincipal = Annotated[Principal, Depends(require("train"))]
AdminPrincipal = Annotated[Principal, Depends(require("admin"))]
#: Reading and cancelling jobs: a train key's jobs, or a predict key's (its propose jobs);
#: ownership is checked per job.
JobPrincipal = Annotated[Principal, Depends(require_any("train", "predict"))]
