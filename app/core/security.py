"""API keys: random tokens shown once, stored as SHA-256 digests, compared in constant time.

Keys are 256-bit random, so an unsalted digest is enough (no dictionary to attack) and lets the
lookup use the unique index. The plaintext is never stored or logged; ``prefix`` (the first
characters) identifies a key in listings.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

SCOPES = ("predict", "train", "admin")
KEY_PREFIX = "nas_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def allows(scopes: list[str] | tuple[str, ...], needed: str) -> bool:
    """``admin`` implies every scope."""
    return needed in scopes or "admin" in scopes
