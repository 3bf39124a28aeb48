"""API keys, admin only: ``GET /keys``, ``POST /keys`` (the plaintext is in the answer once),
``POST /keys/{id}/revoke`` (effective at once in this process, within the key cache's TTL in
the others)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam

from app.api.deps import AdminPrincipal, SessionDep
from app.api.routes import errors
from app.schemas import KeyCreate, KeyCreated, KeyPublic, KeysPublic
from service.errors import ServiceError
from service.store import keys as key_store
from service.tables import INT32_MAX

router = APIRouter(tags=["keys"])
KeyId = Annotated[int, PathParam(ge=1, le=INT32_MAX)]


@router.get("/keys", response_model=KeysPublic, responses=errors())
def list_keys(session: SessionDep, _: AdminPrincipal,
              include_revoked: bool = True,
              limit: Annotated[int, Query(ge=1, le=500)] = 100,
              offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0) -> dict[str, Any]:
    """Every key with its name, prefix, scopes and revocation time (never the key itself)."""
    rows, total = key_store.list_keys(session, include_revoked=include_revoked, limit=limit,
                                      offset=offset)
    return {"data": [key_store.key_public(r) for r in rows], "count": total}


@router.post("/keys", response_model=KeyCreated, status_code=201, responses=errors())
def create_key(body: KeyCreate, session: SessionDep, _: AdminPrincipal) -> dict[str, Any]:
    """A new key; ``key`` is shown in this answer only."""
    try:
        row, plaintext = key_store.create_key(session, body.name, list(body.scopes))
    except ValueError as exc:
        raise ServiceError("INVALID_REQUEST", str(exc)) from exc
    return {**key_store.key_public(row), "key": plaintext}


@router.post("/keys/{key_id}/revoke", response_model=KeyPublic, responses=errors(404))
def revoke_key(key_id: KeyId, request: Request, session: SessionDep,
               principal: AdminPrincipal) -> dict[str, Any]:
    """Revoke a key (idempotent). A key cannot revoke itself: that would lock out the last
    admin by accident."""
    row = key_store.get_key(session, key_id)
    if row.id == principal.key_id:
        raise ServiceError("INVALID_REQUEST", "a key cannot revoke itself; use another admin key")
    key_store.revoke(session, key_id)
    session.flush()
    request.app.state.key_cache.forget(key_id)
    return key_store.key_public(row)
