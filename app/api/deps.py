"""Dependencies: settings, a database session, the authenticated principal with a scope.

Authentication caches verified keys in memory for ``KEY_CACHE_TTL_S``; while the database is
unreachable a key verified before keeps working (so ``/predict`` survives a database outage),
and unknown keys are refused with 503, never let through.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated, Callable, Iterator

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import ServiceError
from app.core.security import allows, hash_key
from app.store import keys as key_store

KEY_CACHE_TTL_S = 30.0


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    scopes: tuple[str, ...]

    @property
    def ident(self) -> str:
        return f"key:{self.key_id}"


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Principal | None, float]] = {}
        self._lock = threading.Lock()

    def lookup(self, plaintext: str) -> Principal | None:
        digest = hash_key(plaintext)
        with self._lock:
            cached = self._entries.get(digest)
        if cached is not None and time.monotonic() - cached[1] < KEY_CACHE_TTL_S:
            return cached[0]
        try:
            with session_scope() as session:
                row = key_store.authenticate(session, plaintext)
                principal = None if row is None else Principal(row.id, row.name,
                                                               tuple(row.scopes))
        except ServiceError:
            if cached is not None and cached[0] is not None:
                return cached[0]  # stale but verified: keep serving during a DB outage
            raise
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (principal, time.monotonic())
        return principal

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]


def require(scope: str) -> Callable[..., Principal]:
    def dependency(request: Request,
                   x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None
                   ) -> Principal:
        if not x_api_key:
            raise ServiceError("UNAUTHENTICATED", "send an API key in the X-API-Key header")
        principal = request.app.state.key_cache.lookup(x_api_key)
        if principal is None:
            raise ServiceError("UNAUTHENTICATED", "the API key is unknown or revoked")
        if not allows(principal.scopes, scope):
            raise ServiceError("PERMISSION_DENIED", f"this key lacks the {scope!r} scope")
        return principal
    return dependency


PredictPrincipal = Annotated[Principal, Depends(require("predict"))]
TrainPrincipal = Annotated[Principal, Depends(require("train"))]
AdminPrincipal = Annotated[Principal, Depends(require("admin"))]
