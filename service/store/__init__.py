"""SQL data access shared by the API and the workers (each function takes a Session)."""
from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from service.errors import ServiceError

T = TypeVar("T")


def get_or_raise(session: Session, model: type[T], key: Any, code: str, message: str) -> T:
    """The row with primary key ``key``, or ``ServiceError(code, message)`` (a 404 code)."""
    row = session.get(model, key)
    if row is None:
        raise ServiceError(code, message)
    return row
