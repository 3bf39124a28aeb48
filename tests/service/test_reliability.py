"""Issue 28 (part A): nothing acknowledged that was not stored, no row left by a failed request
(PostgreSQL and SQLite), every bad input a 4xx at the edge, a full disk its own code.

A failing commit is simulated below the ORM: the dialect's ``do_commit`` raises the driver's
own disk-full error (``psycopg.errors.DiskFull`` / SQLite's "database or disk is full") for a
transaction that wrote, so SQLAlchemy wraps it exactly as a real full disk."""
from __future__ import annotations

import base64
import errno
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TRAIN_CSV, train_rows

from .conftest import headers, needs_redis, sqlite_service

pytestmark = needs_redis

GENOMES = [r["genome"] for r in train_rows()]
BIG = 2**63  # one past int64


def _disk_full(url: str) -> Callable[[], Exception]:
    if url.startswith("sqlite"):
        return lambda: sqlite3.OperationalError("database or disk is full")
    import psycopg.errors
    return lambda: psycopg.errors.DiskFull("could not extend file: No space left on device")


@contextmanager
def commits_fail(url: str) -> Iterator[None]:
    """Every commit of a transaction that wrote raises the driver's disk-full error (reads, such
    as key look-ups, still commit)."""
    from sqlalchemy import event

    from service.db import get_engine

    engine = get_engine(url)
    wrote: set[int] = set()
    error = _disk_full(url)

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            wrote.add(id(conn.connection.dbapi_connection))

    original = engine.dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        raw = id(getattr(dbapi_connection, "dbapi_connection", dbapi_connection))
        if raw in wrote:
            wrote.discard(raw)
            raise error()
        original(dbapi_connection)

    event.listen(engine, "before_cursor_execute", note)
    engine.dialect.do_commit = do_commit  # type: ignore[method-assign]
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", note)
        del engine.dialect.do_commit


def _count(url: str, sql: str) -> int:
    from sqlalchemy import text

    from service.db import get_engine
    with get_engine(url).connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


@pytest.fixture(params=["postgresql", "sqlite"])
def service(request: pytest.FixtureRequest, tmp_path: Path, built_dataset: Path,
            trained_bundle: Path) -> Iterator[dict[str, Any]]:
    """The app on PostgreSQL, then on SQLite."""
    if request.param == "postgresql":
        api = request.getfixturevalue("api")
        yield {**api, "url": request.getfixturevalue("db")}
        return
    request.getfixturevalue("service_env")
    with sqlite_service(tmp_path, built_dataset, trained_bundle) as seeded:
        yield seeded


# -- 1. commit before answering ----------------------------------------------------------------

def test_a_failed_commit_is_an_error_and_nothing_is_stored(service):
    """POST /keys, POST /keys/{id}/revoke and a dashboard form, with the database's disk full:
    each answers 507 DISK_FULL (before: 201/200, the commit failing after the answer)."""
    from .test_ui import csrf_of, signed_in

    c, admin, url = service["client"], service["keys"]["admin"], service["url"]
    keys_before = _count(url, "SELECT count(*) FROM api_keys")
    victim = c.post("/keys", json={"name": "victim", "scopes": ["predict"]},
                    headers=headers(admin)).json()
    job = c.post("/jobs/train", json={"dataset_id": service["dataset_id"],
                                      "predictor": "trees"}, headers=headers(admin))
    assert job.status_code == 202, job.text
    ui = signed_in(service, "admin")
    page = ui.get(f"/ui/jobs/{job.json()['id']}")
    with commits_fail(url):
        created = c.post("/keys", json={"name": "ghost", "scopes": ["predict"]},
                         headers=headers(admin))
        revoked = c.post(f"/keys/{victim['id']}/revoke", headers=headers(admin))
        cancelled = ui.post(f"/ui/jobs/{job.json()['id']}/cancel",
                            data={"csrf": csrf_of(page)}, follow_redirects=False)
    for answer in (created, revoked):
        assert answer.status_code == 507, answer.text
        assert answer.json()["error"]["code"] == "DISK_FULL"
    assert cancelled.status_code == 507 and "DISK_FULL" in cancelled.text
    assert _count(url, "SELECT count(*) FROM api_keys") == keys_before + 1  # no ghost
    assert _count(url, "SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL") == 0
    assert c.get("/models", headers=headers(victim["key"])).status_code == 200  # still works
    status = c.get(f"/jobs/{job.json()['id']}", headers=headers(admin)).json()["status"]
    assert status == "queued"


def test_every_session_dependency_ends_before_the_response(api):
    """One mechanism for every route: a ``yield`` dependency of any route (a session) ends
    with the route function, so its commit's failure is the route's answer."""
    import inspect

    from fastapi.routing import APIRoute

    def walk(dependant: Any) -> Iterator[Any]:
        for sub in dependant.dependencies:
            yield sub
            yield from walk(sub)

    def routes(table: list[Any]) -> Iterator[Any]:
        for route in table:  # an included router is kept as one entry holding its routes
            inner = getattr(route, "original_router", None)
            yield from routes(inner.routes) if inner is not None else [route]

    checked = 0
    for route in routes(api["app"].routes):
        if not isinstance(route, APIRoute):
            continue
        for dep in walk(route.dependant):
            if inspect.isgeneratorfunction(dep.call) or inspect.isasyncgenfunction(dep.call):
                checked += 1
                assert dep.scope == "function", (route.path, dep.call)
    assert checked >= 10


# -- 2. SQLite transactions that mean what they say ---------------------------------------------

def test_a_sqlite_savepoint_rolls_back_with_its_transaction(tmp_path):
    """pysqlite's default emitted no BEGIN before SAVEPOINT, so RELEASE committed the nested
    block: a row written in a savepoint survived the rollback of its transaction."""
    from sqlalchemy import text

    from service.db import dispose_engines, get_engine, session_scope

    url = f"sqlite:///{tmp_path / 't.db'}"
    with get_engine(url).begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    with pytest.raises(RuntimeError), session_scope(url) as session:
        with session.begin_nested():
            session.execute(text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("the request fails after its savepoint")
    assert _count(url, "SELECT count(*) FROM t") == 0
    dispose_engines()


def test_a_failed_evaluations_request_leaves_nothing_behind(service, monkeypatch):
    """The append_dataset job row is written in a savepoint, then the request fails (the disk
    fills while its version's row is written): no job, no version, no folder; the idempotent
    replay then makes a version that exists (before, on SQLite: an orphan queued job and a
    replay answering 200 with a dataset that does not exist)."""
    from app.api.routes import evaluations
    from service.config import get_settings

    c, key, url = service["client"], service["keys"]["train"], service["url"]
    body = {"dataset_id": service["dataset_id"],
            "records": [{"genome": GENOMES[0], "metrics": {"ciou_loss": 0.5}}]}
    replay = headers(key, **{"Idempotency-Key": "after-a-failure"})
    real = evaluations.dataset_store.create_dataset

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    datasets = get_settings().datasets_dir
    folders = set(datasets.iterdir()) if datasets.exists() else set()
    monkeypatch.setattr(evaluations.dataset_store, "create_dataset", full)
    r = c.post("/evaluations", json=body, headers=replay)
    assert _count(url, "SELECT count(*) FROM jobs") == 0, r.text
    assert _count(url, "SELECT count(*) FROM datasets") == 1  # the parent only
    assert (set(datasets.iterdir()) if datasets.exists() else set()) == folders
    assert r.status_code == 507 and r.json()["error"]["code"] == "DISK_FULL", r.text
    monkeypatch.setattr(evaluations.dataset_store, "create_dataset", real)
    again = c.post("/evaluations", json=body, headers=replay)
    assert again.status_code == 202, again.text
    made = c.get(f"/datasets/{again.json()['dataset_id']}", headers=headers(key))
    assert made.status_code == 200 and made.json()["status"] == "pending"


def test_activating_a_version_does_not_wait_on_its_own_lock(service):
    """Found by the schema fuzz on SQLite: ``POST /models/{version}/activate`` held its
    session's transaction (on SQLite the write lock) while loading the bundle, whose registry
    read waited for that lock until the busy timeout."""
    import time

    started = time.monotonic()
    r = service["client"].post("/models/1/activate", headers=headers(service["keys"]["admin"]))
    assert r.status_code == 200, r.text
    assert time.monotonic() - started < 10


# -- 3. every input bound at the edge -------------------------------------------------------

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_metrics_are_refused_and_nothing_is_queued(api, db, literal):
    c, key = api["client"], api["keys"]["train"]
    # The literal stands for the metric alone (the genome itself holds "0.5"s).
    record = '{"genome": %s, "metrics": {"ciou_loss": %s}}' % (json.dumps(GENOMES[0]), literal)
    raw = '{"dataset_id": "%s", "records": [%s]}' % (api["dataset_id"], record)
    r = c.post("/evaluations", content=raw, headers=headers(
        key, **{"Content-Type": "application/json", "Idempotency-Key": literal}))
    assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST", r.text
    assert _count(db, "SELECT count(*) FROM jobs") == 0
    again = c.post("/evaluations", content=raw, headers=headers(
        key, **{"Content-Type": "application/json", "Idempotency-Key": literal}))
    assert again.status_code == 422
    train = c.post("/jobs/train", content='{"dataset_id": "%s", "hyperparameters": {"lr": %s}}'
                   % (api["dataset_id"], literal),
                   headers=headers(key, **{"Content-Type": "application/json"}))
    assert train.status_code == 422, train.text


def test_versions_and_page_tokens_past_their_ranges_are_422(service):
    """On both databases (the issue's 500s were on SQLite, the embedded mode's)."""
    from .test_ui import csrf_of, signed_in

    api = service
    c, predict = api["client"], api["keys"]["predict"]
    for path, body in (("/predict", {"genomes": GENOMES[:1]}),
                       ("/propose", {"population": GENOMES[:4], "k": 1, "pool_size": 4,
                                     "inner_generations": 1})):
        for model in (f"default@{BIG}", "default@0", f"default@{10**200}"):
            r = c.post(path, json={**body, "model": model}, headers=headers(predict))
            assert r.status_code == 422, (path, model, r.text)
            assert r.json()["error"]["details"] == {"field": "model"}
    ui = signed_in(api, "predict")
    form = ui.get("/ui/inspect")
    r = ui.post("/ui/inspect", data={"genomes": GENOMES[0], "model": f"default@{BIG}",
                                     "csrf": csrf_of(form)})
    assert r.status_code == 422 and "INVALID_REQUEST" in r.text
    train = api["keys"]["train"]
    for offset in ("1e300", "1e999", str(BIG), "2.5", "true"):
        token = base64.urlsafe_b64encode(('{"offset": %s}' % offset).encode()).decode()
        r = c.get("/jobs", params={"page_token": token}, headers=headers(train))
        assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_REQUEST", offset


def test_an_upload_onto_a_full_disk_is_507_and_leaves_no_partial_file(api, db, monkeypatch):
    from app.api.routes import datasets as routes
    from service.config import get_settings

    def half_then_full(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(src.read(100))
        raise OSError(errno.ENOSPC, "No space left on device")

    root = get_settings().datasets_dir
    before = set(root.iterdir()) if root.exists() else set()
    monkeypatch.setattr(routes.shutil, "copyfileobj", half_then_full)
    with open(TRAIN_CSV, "rb") as handle:
        r = api["client"].post("/datasets", files={"file": ("g.csv", handle, "text/csv")},
                               headers=headers(api["keys"]["train"]))
    assert r.status_code == 507 and r.json()["error"]["code"] == "DISK_FULL", r.text
    assert (set(root.iterdir()) if root.exists() else set()) == before
    assert _count(db, "SELECT count(*) FROM jobs") == 0


# -- 4. /evaluations: the length limit first, heavy slots and a deadline -----------------------

def test_evaluations_refuse_long_genomes_before_parsing_them(api, monkeypatch):
    import ml.genome

    c, key, settings = api["client"], api["keys"]["train"], api["app"].state.settings
    parsed: list[int] = []
    real = ml.genome.load

    def counting(text: str, **kwargs: Any) -> Any:
        parsed.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(ml.genome, "load", counting)
    long = GENOMES[0] + " " * settings.max_genome_length
    body = {"dataset_id": api["dataset_id"],
            "records": [{"genome": long}, {"genome": GENOMES[1]}]}
    r = c.post("/evaluations", json=body, headers=headers(key))
    assert r.status_code == 202, r.text
    assert [(x["index"], x["error"]["code"]) for x in r.json()["rejected"]] == \
        [(0, "GENOME_TOO_LONG")]
    assert parsed and max(parsed) <= settings.max_genome_length


def test_evaluations_run_under_the_heavy_slots_and_a_deadline(api, db, monkeypatch):
    import asyncio

    from .test_limits import _middlewares

    c, key, settings = api["client"], api["keys"]["train"], api["app"].state.settings
    body = {"dataset_id": api["dataset_id"], "records": [{"genome": g} for g in GENOMES[:5]]}
    monkeypatch.setattr(settings, "request_deadline_s", 1e-9)
    r = c.post("/evaluations", json=body, headers=headers(key))
    assert r.status_code == 503 and r.json()["error"]["code"] == "DEADLINE_EXCEEDED", r.text
    assert _count(db, "SELECT count(*) FROM jobs") == 0
    limiter = next(m for m in _middlewares(api["app"]) if type(m).__name__ == "ConcurrencyLimit")
    monkeypatch.setattr(limiter, "_slots", asyncio.Semaphore(0))  # every slot taken
    monkeypatch.setattr(limiter, "queue", 0)
    busy = c.post("/evaluations", json=body, headers=headers(key))
    assert busy.status_code == 503 and busy.json()["error"]["code"] == "SERVER_BUSY"


# -- 6. the dashboard's wrong methods -----------------------------------------------------------

def test_a_wrong_method_on_the_dashboard_is_405_with_the_error_body(api):
    c = api["client"]
    for method, path, allowed in (("GET", f"/ui/jobs/{uuid.uuid4()}/cancel", "POST"),
                                  ("PUT", "/ui/inspect", "GET, POST"),
                                  ("DELETE", "/ui/login", "GET, POST")):
        r = c.request(method, path)
        assert r.status_code == 405, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "INVALID_REQUEST"
        assert set(r.headers["Allow"].split(", ")) == set(allowed.split(", "))


# -- 5. a dataset build that fills the disk ----------------------------------------------------

def test_a_build_that_fills_the_disk_fails_as_disk_full_and_removes_its_shards(
        api, tmp_path, monkeypatch):
    """The shards are written, then the disk fills while the build writes its index: the job
    fails with DISK_FULL (before: DATASET_INVALID / INTERNAL_ERROR with the writer's message)
    and its partial output is gone."""
    import ml.datasets.build
    from service.config import get_settings
    from worker.runner import run_job

    from .conftest import write_seed_csv

    small = write_seed_csv(tmp_path / "small.csv", 12)
    c, key = api["client"], api["keys"]["train"]
    with open(small, "rb") as handle:
        r = c.post("/datasets", files={"file": ("small.csv", handle, "text/csv")},
                   headers=headers(key))
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["id"]
    graphs = get_settings().datasets_dir / r.json()["id"] / "graphs"
    written: list[bool] = []

    def full(out: Path, chunks: int) -> Any:
        written.append(any((graphs / "shards").iterdir()))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ml.datasets.build, "_merge", full)
    assert run_job(job_id, get_settings()) == "failed"
    job = c.get(f"/jobs/{job_id}", headers=headers(key)).json()
    assert job["error"]["code"] == "DISK_FULL", job["error"]
    assert written == [True] and not graphs.exists()
    assert c.get(f"/datasets/{r.json()['id']}", headers=headers(key)).json()["status"] == "failed"
