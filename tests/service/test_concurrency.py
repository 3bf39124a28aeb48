"""Races that SQLite would hide, on PostgreSQL: 50 concurrent POST /jobs/train with one
Idempotency-Key against a real uvicorn server (one job, one message), concurrent version
registration (n and n+1, no IntegrityError leaked) and concurrent alias moves."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from .conftest import REDIS_URL, free_port, headers, needs_redis, wait_for

pytestmark = needs_redis


def test_fifty_concurrent_submissions_one_job_one_message(api):
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api["app"], host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: server.started, 30, what="uvicorn")
    body = {"dataset_id": api["dataset_id"], "predictor": "trees"}
    hdrs = headers(api["keys"]["train"], **{"Idempotency-Key": "race-1"})
    barrier = threading.Barrier(50)

    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=60) as client:
            barrier.wait()
            return client.post("/jobs/train", json=body, headers=hdrs)
    try:
        with ThreadPoolExecutor(50) as pool:
            responses = list(pool.map(submit, range(50)))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert all(r.status_code in (200, 202) for r in responses), \
        {r.status_code: r.text for r in responses}
    assert sum(r.status_code == 202 for r in responses) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    from sqlalchemy import func, select

    from service.db import session_scope
    from service.tables import Job
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
    assert redis.Redis.from_url(REDIS_URL).llen("gpu") == 1


def test_concurrent_registration_and_alias_moves(api, trained_bundle):
    from service.db import session_scope
    from service.store import model_registry as registry

    def register(i: int) -> int:
        with session_scope() as s:
            return registry.register_version(
                s, name="race", predictor="trees", source_path=str(trained_bundle),
                encoder_version="graph-v2", metrics=["ciou_loss"], training_metrics={"i": i}
            ).version
    with ThreadPoolExecutor(8) as pool:
        versions = sorted(pool.map(register, range(16)))
    assert versions == list(range(1, 17))

    def move(v: int) -> None:
        with session_scope() as s:
            registry.set_alias(s, "race", v)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(move, versions))
    with session_scope() as s:
        assert registry.alias_version(s, "race") in versions
    move(7)
    with session_scope() as s:
        assert registry.alias_version(s, "race") == 7


def test_registration_is_idempotent_per_job(api, trained_bundle):
    """A redelivered training registers again with its job id: the same version comes back."""
    from service.db import session_scope
    from service.store import jobs as job_store
    from service.store import model_registry as registry

    with session_scope() as s:
        job, _ = job_store.create_job(s, kind="train", params={}, principal="t",
                                      request_sha256="x")
        job_id = job.id
    kwargs = {"name": "default", "predictor": "trees", "source_path": str(trained_bundle),
                  "encoder_version": "graph-v2", "metrics": ["ciou_loss"], "training_metrics": {},
                  "job_id": job_id}
    with session_scope() as s:
        first = registry.register_version(s, **kwargs).version
    with session_scope() as s:
        assert registry.register_version(s, **kwargs).version == first
