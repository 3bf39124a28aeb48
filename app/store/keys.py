"""API key rows: create (returns the plaintext once), authenticate, revoke."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.security import SCOPES, hash_key, new_key, same_digest
from app.models import ApiKey, utcnow


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
    """The active key row for ``plaintext``, or None (unknown or revoked)."""
    digest = hash_key(plaintext)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None or not same_digest(row.key_hash, digest):
        return None
    return row


def revoke(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
