"""API key rows: create (returns the plaintext once), authenticate, list, revoke."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.security import SCOPES, hash_key, new_key
from service.tables import ApiKey, utcnow


def create_key(session: Session, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; choose from {SCOPES}")
    plaintext = new_key()
    row = ApiKey(name=name, prefix=plaintext[:12], key_hash=hash_key(plaintext),
                 scopes=sorted(set(scopes)))
    session.add(row)
    session.flush()
    return row, plaintext


def authenticate(session: Session, plaintext: str) -> ApiKey | None:
    """The active key row for ``plaintext``, or None (unknown or revoked). The lookup is by
    digest on the unique index: the database compares digests, never plaintexts."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def list_keys(session: Session, *, include_revoked: bool = True, limit: int = 500,
              offset: int = 0) -> tuple[list[ApiKey], int]:
    """Key rows, oldest first (never the plaintext: only the stored prefix identifies one)."""
    query, count = select(ApiKey), select(func.count()).select_from(ApiKey)
    if not include_revoked:
        query, count = (query.where(ApiKey.revoked_at.is_(None)),
                        count.where(ApiKey.revoked_at.is_(None)))
    rows = list(session.scalars(query.order_by(ApiKey.id).offset(offset).limit(limit)))
    return rows, int(session.scalar(count) or 0)


def get_key(session: Session, key_id: int) -> ApiKey:
    from service.store import get_or_raise
    return get_or_raise(session, ApiKey, key_id, "KEY_NOT_FOUND", f"no API key {key_id}")


def key_public(row: ApiKey) -> dict:
    return {"id": row.id, "name": row.name, "prefix": row.prefix, "scopes": list(row.scopes),
            "created_at": row.created_at, "revoked_at": row.revoked_at}
