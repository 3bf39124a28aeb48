"""Alembic: upgrade head on an empty PostgreSQL database and on SQLite, the models and the
migrations agree (autogenerate finds no difference), downgrade to base and upgrade again."""
from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.migrate import downgrade, upgrade
from service.tables import Base

from .conftest import ADMIN_URL, _pg_ok


def _round_trip(url: str) -> None:
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                Base.metadata)
        assert diff == [], diff
        assert set(Base.metadata.tables) <= set(inspect(conn).get_table_names())
    downgrade(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    with engine.connect() as conn:
        assert set(Base.metadata.tables) <= set(inspect(conn).get_table_names())
    engine.dispose()


def test_sqlite(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.skipif(not _pg_ok(), reason="PostgreSQL not reachable")
def test_postgresql():
    import psycopg

    name = f"nas_surrogate_mig_{uuid.uuid4().hex[:8]}"
    admin = ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        _round_trip(ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
