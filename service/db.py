"""Engine and sessions. One engine per URL; sessions commit on success and roll back on error.

SQLite (embedded mode) gets the pragmas MLflow sets: WAL, a busy timeout and foreign keys, and
SQLAlchemy's documented pysqlite recipe for real transactions: the driver's own transaction
handling is turned off and every transaction starts with an explicit ``BEGIN IMMEDIATE``. Without
it pysqlite emits no ``BEGIN`` before a ``SAVEPOINT``, so ``RELEASE`` committed a nested block
for good and a row written in a savepoint survived the rollback of its request. ``IMMEDIATE``
takes the write lock at the start (waiting up to the busy timeout), so a transaction that reads
and then writes never fails with ``SQLITE_BUSY`` because another connection wrote in between.
PostgreSQL gets short connect and statement timeouts so an outage surfaces as a 503 quickly.

A database that cannot write because its disk is full is ``DISK_FULL`` (507), not an outage.
"""
from __future__ import annotations

import errno
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
    # The pysqlite recipe: no implicit BEGIN/COMMIT by the driver (see _sqlite_begin).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """A new engine for ``url`` with the per-dialect settings above (pool sizes from the
    settings)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 20})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
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
        if is_disk_full(exc):
            raise disk_full_error() from exc
        if _is_connection_error(exc):
            raise ServiceError("DATABASE_UNAVAILABLE", "the database is unreachable") from exc
        raise
    except BaseException:
        _quiet_rollback(session)
        raise
    finally:
        session.close()


#: SQLite's result code for "database or disk is full"; PostgreSQL's SQLSTATE ``disk_full``.
SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the disk is full: ENOSPC, SQLite's SQLITE_FULL,
    PostgreSQL's ``disk_full``. Drivers differ, so the chain of causes is searched."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(current, "sqlite_errorcode", None) == SQLITE_FULL or \
                getattr(current, "sqlstate", None) == PG_DISK_FULL:
            return True
        text = str(current)
        if "database or disk is full" in text or "No space left on device" in text:
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def disk_full_error() -> ServiceError:
    return ServiceError("DISK_FULL", "the server's disk is full: nothing was stored; retry "
                        "after space is freed")


def _is_connection_error(exc: DBAPIError) -> bool:
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)


def _quiet_rollback(session: Session) -> None:
    """Roll back, ignoring a connection that is already gone (the original error matters)."""
    try:
        session.rollback()
    except (OperationalError, DBAPIError):
        pass
