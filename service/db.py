"""Engine and sessions. One engine per URL; sessions commit on success and roll back on error.

SQLite (embedded mode) gets the pragmas MLflow sets: WAL, a busy timeout and foreign keys.
PostgreSQL gets short connect and statement timeouts so an outage surfaces as a 503 quickly.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from service.errors import ServiceError

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=20000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` with the per-dialect settings above (pool sizes from the
    settings)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 20})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    from service.config import get_settings
    s = get_settings()
    return create_engine(url, pool_pre_ping=True, pool_size=s.db_pool_size,
                         max_overflow=s.db_max_overflow, pool_timeout=s.db_pool_timeout_s,
                         connect_args={"connect_timeout": 2,
                                       "options": "-c statement_timeout=30000"})


def _resolve(url: str | None) -> str:
    if url is None:
        from service.config import get_settings
        url = get_settings().database_url
    with _lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
            _factories[url] = sessionmaker(_engines[url], expire_on_commit=False)
    return url


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the settings' database)."""
    return _engines[_resolve(url)]


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    return _factories[_resolve(url)]


def dispose_engines() -> None:
    """Close every pooled connection (after a fork, and between tests)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back otherwise.

    A lost database connection, and an exhausted connection pool (every connection busy past
    ``pool_timeout``), become ``ServiceError(DATABASE_UNAVAILABLE)`` so callers (the API) answer
    503 with a code instead of a 500, and workers retry.
    """
    session = session_factory(url)()
    try:
        yield session
        session.commit()
    except PoolTimeout as exc:
        _quiet_rollback(session)
        raise ServiceError("DATABASE_UNAVAILABLE", "the database connection pool is exhausted; "
                           "retry shortly", headers={"Retry-After": "1"}) from exc
    except (OperationalError, DBAPIError) as exc:
        _quiet_rollback(session)
        if _is_connection_error(exc):
            raise ServiceError("DATABASE_UNAVAILABLE", "the database is unreachable") from exc
        raise
    except BaseException:
        _quiet_rollback(session)
        raise
    finally:
        session.close()


def _is_connection_error(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)


def _quiet_rollback(session: Session) -> None:
    """Roll back, ignoring a connection that is already gone (the original error matters)."""
    try:
        session.rollback()
    except (OperationalError, DBAPIError):
        pass
