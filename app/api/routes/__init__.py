"""One router per resource."""
from __future__ import annotations

from typing import Any

from app.schemas import ErrorEnvelope

#: Error statuses every authenticated route may answer, all with the error envelope (400: a
#: body FastAPI cannot parse at all, e.g. not UTF-8; 429: failed authentications from one
#: address or with one credential, or a key's request rate; 507: DISK_FULL, a write that
#: could not be stored).
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 403, 413, 415, 422, 429, 503, 507)}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {**COMMON_ERRORS, **{s: {"model": ErrorEnvelope} for s in statuses}}
