"""Service fixtures against the real components: a fresh PostgreSQL database per test session
(on the server at $SURROGATE_TEST_DATABASE_URL's host, default 127.0.0.1:5432), a Redis
database ($SURROGATE_TEST_REDIS_URL, default redis://127.0.0.1:6379/15), tables truncated before
each test, and one real model (trees on the 238 evaluated genomes) trained once per session.

Tests that need PostgreSQL or Redis are skipped with the reason when the server is not
reachable; ``.ci/run`` starts both first, so in CI they always run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRAIN_CSV

ADMIN_URL = os.environ.get("SURROGATE_TEST_DATABASE_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SURROGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REPO = Path(__file__).resolve().parents[2]


def _pg_ok() -> bool:
    import psycopg
    try:
        with psycopg.connect(ADMIN_URL.replace("+psycopg", ""), connect_timeout=2):
            return True
    except Exception:
        return False


def _redis_ok() -> bool:
    import redis
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:
        return False


needs_pg = pytest.mark.skipif(not _pg_ok(), reason=f"PostgreSQL not reachable at {ADMIN_URL}")
needs_redis = pytest.mark.skipif(not _redis_ok(), reason=f"Redis not reachable at {REDIS_URL}")


@pytest.fixture(scope="session")
def service_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A fresh database on the PostgreSQL server, migrated; the settings point at it."""
    if not _pg_ok():
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}")
    import psycopg

    name = f"nas_surrogate_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    data_dir = tmp_path_factory.mktemp("service-data")
    env = {
        "SURROGATE_DATABASE_URL": url, "SURROGATE_DATA_DIR": str(data_dir),
        "SURROGATE_BROKER_URL": REDIS_URL, "SURROGATE_EXECUTOR": "celery",
        "SURROGATE_ENVIRONMENT": "test", "SURROGATE_SEED_CSV": str(TRAIN_CSV),
        "SURROGATE_DATASET_ROOTS": json.dumps([str(TRAIN_CSV.parent)]),
        "SURROGATE_JOB_LEASE_S": "4", "SURROGATE_HEARTBEAT_INTERVAL_S": "1",
        "SURROGATE_PROGRESS_INTERVAL_S": "0.2", "SURROGATE_VISIBILITY_TIMEOUT_S": "6",
        "SURROGATE_TRAIN_SOFT_LIMIT_S": "600", "SURROGATE_TRAIN_HARD_LIMIT_S": "900",
        "SURROGATE_BUILD_SOFT_LIMIT_S": "600", "SURROGATE_BUILD_HARD_LIMIT_S": "900",
        "SURROGATE_RECONCILE_INTERVAL_S": "2", "SURROGATE_WARM_UP": "false",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from service.config import reset_settings
    from service.db import dispose_engines
    from service.migrate import upgrade

    reset_settings()
    dispose_engines()
    upgrade(url)
    yield env
    dispose_engines()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    reset_settings()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TABLES = ("model_aliases", "model_versions", "registered_models", "job_events", "jobs",
          "datasets", "api_keys")


def empty_stores(url: str) -> None:
    """Truncate every table and empty the Redis test database (when Redis is up)."""
    from sqlalchemy import text

    from service.config import reset_settings
    from service.db import get_engine

    with get_engine(url).begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(TABLES) + " RESTART IDENTITY CASCADE"))
    if _redis_ok():
        import redis
        redis.Redis.from_url(REDIS_URL).flushdb()
    reset_settings()


@pytest.fixture()
def db(service_env: dict[str, str]) -> Iterator[str]:
    """Empty tables (and an empty Redis test database) before each test; yields the DB URL."""
    url = service_env["SURROGATE_DATABASE_URL"]
    empty_stores(url)
    yield url


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CSV built once into a graph dataset directory (the dataset-build code path)."""
    from ml.datasets.build import BuildOptions, build_dataset

    out = tmp_path_factory.mktemp("graphs") / "graphs"
    build_dataset(BuildOptions(source=TRAIN_CSV, out=out, workers=1, progress=False))
    return out


@pytest.fixture(scope="session")
def trained_bundle(built_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default predictor trained on that dataset and saved as a bundle."""
    from ml.train import fit_predictor, load_training_records, save_bundle

    records, source = load_training_records(dataset=built_dataset)
    model, info = fit_predictor(records, "auto", {"ensemble": 3})
    return save_bundle(model, tmp_path_factory.mktemp("bundle") / "v1",
                       manifest_hash=source["hash"], metrics={"fit_seconds": info["fit_seconds"]},
                       training_hashes=(r.canonical_hash for r in records))


def seed_registry(built_dataset: Path, bundle: Path, version_count: int = 1) -> dict[str, Any]:
    """Insert a ready dataset and ``version_count`` versions of the bundle (v1 active)."""
    from ml.encoding.encoder import ENCODER_VERSION
    from ml.train import read_bundle_info
    from service.config import get_settings
    from service.db import session_scope
    from service.store import datasets as dataset_store
    from service.store import model_registry as registry

    info = read_bundle_info(bundle)
    dataset_id = str(uuid.uuid4())
    with session_scope() as session:
        dataset_store.create_dataset(session, dataset_id=dataset_id, name="real",
                                     source_path=str(TRAIN_CSV), path=str(built_dataset),
                                     metrics=list(info["metrics"]))
        dataset_store.mark(session, dataset_id, "ready")
        for _ in range(version_count):
            registry.register_version(
                session, name=get_settings().model_name, predictor=info["model"],
                source_path=str(bundle), encoder_version=ENCODER_VERSION,
                metrics=list(info["metrics"]), training_metrics={}, dataset_id=dataset_id)
        registry.set_alias(session, get_settings().model_name, 1)
    return {"dataset_id": dataset_id}


def make_key(scopes: list[str]) -> str:
    from service.db import session_scope
    from service.store.keys import create_key

    with session_scope() as session:
        _, plaintext = create_key(session, "test " + "+".join(scopes), scopes)
    return plaintext


@contextmanager
def seeded_client(built_dataset: Path, trained_bundle: Path) -> Iterator[dict[str, Any]]:
    """The app (Celery dispatcher on the real Redis, no worker consuming) with a seeded
    registry and keys of every scope."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from service.config import get_settings

    seeded = seed_registry(built_dataset, trained_bundle)
    application = create_app(get_settings())
    application.state.start_reconciler = False
    keys = {scope: make_key([scope]) for scope in ("predict", "train", "admin")}
    with TestClient(application, raise_server_exceptions=False) as client:
        yield {"client": client, "app": application, "keys": keys, **seeded}


@contextmanager
def sqlite_service(folder: Path, built_dataset: Path, trained_bundle: Path
                   ) -> Iterator[dict[str, Any]]:
    """:func:`seeded_client` on a migrated SQLite file in ``folder`` (the embedded mode's
    database) instead of the session's PostgreSQL database; yields it with its ``url``."""
    from service.config import reset_settings
    from service.db import dispose_engines
    from service.migrate import upgrade

    url = f"sqlite:///{folder / 'embedded.db'}"
    saved = os.environ["SURROGATE_DATABASE_URL"]
    os.environ["SURROGATE_DATABASE_URL"] = url
    reset_settings()
    try:
        upgrade(url)
        with seeded_client(built_dataset, trained_bundle) as seeded:
            yield {**seeded, "url": url}
    finally:
        os.environ["SURROGATE_DATABASE_URL"] = saved
        reset_settings()
        dispose_engines()


@pytest.fixture()
def api(db: str, built_dataset: Path, trained_bundle: Path) -> Iterator[dict[str, Any]]:
    """A fresh app per test (see :func:`seeded_client`)."""
    with seeded_client(built_dataset, trained_bundle) as seeded:
        yield seeded


def headers(key: str, **extra: str) -> dict[str, str]:
    return {"X-API-Key": key, **extra}


def stop_process(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send ``sig``; kill the process if it has not exited after ``timeout`` seconds."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_for(predicate: Any, timeout: float, interval: float = 0.25, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class CeleryWorker:
    """A real ``celery worker`` subprocess in its own process group (SIGKILL takes all of it),
    with an embedded beat (``-B``) running the reconciler, as the compose stack's beat does."""

    def __init__(self, env: dict[str, str], log_path: Path, extra_env: dict[str, str] | None = None,
                 queues: str = "cpu,gpu") -> None:
        self.env = {**os.environ, **env, **(extra_env or {})}
        self.log_path = log_path
        self.queues = queues
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q",
             self.queues, "-c", "1", "--prefetch-multiplier=1", "--max-tasks-per-child=1",
             "-n", f"test-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
             "--loglevel=INFO", "-B", "-s", str(self.log_path.with_suffix(".beat"))],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        return self

    def kill(self) -> None:
        import signal
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        import signal
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def api_module(service_env: dict[str, str], built_dataset: Path,
               trained_bundle: Path) -> Iterator[dict[str, Any]]:
    """Like ``api`` but shared by a whole module (tables and the Redis test database emptied
    once, before the module): for tests such as the schema fuzz that send many requests and
    cannot use function-scoped fixtures."""
    if not _redis_ok():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    empty_stores(service_env["SURROGATE_DATABASE_URL"])
    with seeded_client(built_dataset, trained_bundle) as seeded:
        yield seeded


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_seed_csv(path: Path, last_row: int) -> Path:
    """The real CSV's header and rows up to ``last_row`` (a small, real bootstrap seed)."""
    import csv
    with open(TRAIN_CSV, newline="") as src, open(path, "w", newline="") as dst:
        writer = csv.writer(dst)
        for i, row in enumerate(csv.reader(src)):
            if i <= last_row:
                writer.writerow(row)
    return path


class Served:
    """``nas-surrogate serve`` in a subprocess (no ``SURROGATE_*`` of this process leaks in)
    on ``data_dir``, logging to ``log_path``; :meth:`wait_ready` until /readyz answers 200."""

    def __init__(self, data_dir: Path, seed: Path, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir, self.log_path, self.port = data_dir, log_path, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SURROGATE_")}
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from nas_surrogate.cli import main; raise SystemExit(main())",
             "serve", "--data-dir", str(data_dir), "--port", str(self.port), "--seed-csv",
             str(seed)], cwd=REPO, env={**clean, **(env or {})}, stdout=self._log,
            stderr=subprocess.STDOUT)

    def wait_ready(self, what: str = "serve to build, train and load a model") -> None:
        import httpx

        def ready() -> bool:
            try:
                return httpx.get(self.base + "/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
                return False
        wait_for(ready, 420, interval=1.0, what=what)

    def stop(self, sig: int, timeout: float) -> None:
        stop_process(self.proc, sig, timeout)
        self._log.close()
