"""Run the Alembic migrations from code (``serve`` and the tests), on any configured URL."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from service.config import Settings

REPO = Path(__file__).resolve().parents[1]


def migrations_home() -> Path:
    """The folder holding ``alembic.ini`` and ``migrations/``: the source checkout, or the
    working directory (the Docker image installs the package and copies both to /app)."""
    for folder in (REPO, Path.cwd()):
        if (folder / "alembic.ini").is_file() and (folder / "migrations").is_dir():
            return folder
    raise FileNotFoundError("alembic.ini and migrations/ not found beside the package or in "
                            "the working directory")


def alembic_config(url: str | None = None) -> Config:
    home = migrations_home()
    cfg = Config(str(home / "alembic.ini"))
    cfg.set_main_option("script_location", str(home / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def prepare_database(settings: Settings) -> None:
    """Create the data directory and bring the schema to head (idempotent; every command that
    touches the database starts here)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
