"""API keys: random tokens shown once, stored as SHA-256 digests.

Keys are 256-bit random, so an unsalted digest is enough (no dictionary to attack) and lets the
lookup use the unique index; timing reveals nothing useful, since a caller cannot choose the
digest it probes. The plaintext is never stored or logged; ``prefix`` (the first characters)
identifies a key in listings.
"""
from __future__ import annotations

import hashlib
import secrets

SCOPES = ("predict", "train", "admin")
KEY_PREFIX = "nas_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def allows(scopes: list[str] | tuple[str, ...], needed: str) -> bool:
    """``admin`` implies every scope."""
    return needed in scopes or "admin" in scopes
