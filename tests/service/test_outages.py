"""Outages of the real servers: Redis stopped (predict keeps answering, readiness and job
submission say 503 with a code), PostgreSQL stopped (503 with a code, never a 500; predict
serves from the loaded model), and a broker failure after commit (the reconciler sends the job
once Redis is back). Every server stopped here is restarted, whatever the test's outcome."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import redis

from tests.conftest import train_rows

from .conftest import REDIS_URL, _pg_ok, _redis_ok, headers, needs_redis, wait_for

pytestmark = needs_redis

GENOMES = [r["genome"] for r in train_rows()[:30]]
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


def _pg_cluster() -> list[str] | None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return None
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _start_redis() -> None:
    if not _redis_ok():
        subprocess.run(REDIS_START, check=False)
        wait_for(_redis_ok, 20, what="redis restart")


@pytest.fixture()
def redis_stopped():
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server/redis-cli not installed: cannot stop and restart Redis")
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
                   check=False, capture_output=True)
    wait_for(lambda: not _redis_ok(), 10, what="redis to stop")
    try:
        yield
    finally:
        _start_redis()


def _warm(api) -> None:
    """Load the model and cache the keys (what a running service has done)."""
    c, keys = api["client"], api["keys"]
    assert c.post("/predict", json={"genomes": GENOMES}, headers=headers(keys["predict"])
                  ).status_code == 200
    assert c.get("/jobs", headers=headers(keys["train"])).status_code == 200


def test_redis_down(api, redis_stopped):
    c, keys = api["client"], api["keys"]
    r = c.post("/predict", json={"genomes": GENOMES}, headers=headers(keys["predict"]))
    assert r.status_code == 200 and all(i["ok"] for i in r.json()["items"])
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["broker"] is False and r.json()["database"]
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"]},
               headers=headers(keys["train"], **{"Idempotency-Key": "during-outage"}))
    assert r.status_code == 503 and r.json()["error"]["code"] == "BROKER_UNAVAILABLE"
    assert c.get("/jobs", headers=headers(keys["train"])).json()["count"] == 0  # nothing made
    _start_redis()
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"]},
               headers=headers(keys["train"], **{"Idempotency-Key": "during-outage"}))
    assert r.status_code == 202 and c.get("/readyz").status_code == 200


def test_database_down(api, postgres_stopped_after_warm):
    c, keys = api["client"], api["keys"]
    r = c.post("/predict", json={"genomes": GENOMES}, headers=headers(keys["predict"]))
    assert r.status_code == 200 and r.json()["model_version"] == 1
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["database"] is False
    for method, path, kwargs in [
            ("get", "/jobs", {}), ("get", "/models", {}),
            ("post", "/jobs/train", {"json": {"dataset_id": api["dataset_id"]}}),
            ("get", "/jobs/00000000-0000-0000-0000-000000000000", {})]:
        key = keys["predict"] if path == "/models" else keys["train"]
        r = getattr(c, method)(path, headers=headers(key), **kwargs)
        assert r.status_code == 503, (path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        assert "Traceback" not in r.text
    # A key never seen before cannot be verified: 503, not a pass and not a 500.
    r = c.post("/predict", json={"genomes": GENOMES}, headers=headers("nas_unknown"))
    assert r.status_code == 503


@pytest.fixture()
def postgres_stopped_after_warm(api):
    _warm(api)
    cluster = _pg_cluster()
    if cluster is None:
        pytest.skip("pg_ctlcluster not available: cannot stop and restart PostgreSQL")
    subprocess.run(cluster + ["stop", "-m", "fast"], check=False, capture_output=True)
    wait_for(lambda: not _pg_ok(), 20, what="postgres to stop")
    try:
        yield
    finally:
        subprocess.run(cluster + ["start"], check=False, capture_output=True)
        wait_for(_pg_ok, 60, what="postgres restart")
        from service.db import dispose_engines
        dispose_engines()


def test_broker_failure_after_commit_is_reconciled(api, monkeypatch):
    """``send`` fails after the row is committed: the job stays queued, undispatched; the
    reconciler sends it (one message) once the broker answers."""
    from service.errors import ServiceError
    from service.queue import CeleryDispatcher
    from worker.reconciler import reconcile

    c, keys = api["client"], api["keys"]
    dispatcher = api["app"].state.dispatcher

    def broken_send(job_id: str, kind: str) -> str:
        raise ServiceError("BROKER_UNAVAILABLE", "simulated publish failure")
    monkeypatch.setattr(dispatcher, "send", broken_send)
    r = c.post("/jobs/train", json={"dataset_id": api["dataset_id"]},
               headers=headers(keys["train"]))
    assert r.status_code == 202
    job = r.json()
    assert job["status"] == "queued" and job["dispatched_at"] is None
    queue = redis.Redis.from_url(REDIS_URL)
    assert queue.llen("gpu") == 0
    monkeypatch.undo()
    counts = reconcile(CeleryDispatcher().send)
    assert counts["dispatched"] == 1 and queue.llen("gpu") == 1
    assert c.get(f"/jobs/{job['id']}", headers=headers(keys["train"])).json()["dispatched_at"]
    assert reconcile(CeleryDispatcher().send)["dispatched"] == 0   # not sent twice
