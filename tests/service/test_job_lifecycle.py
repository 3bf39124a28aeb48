"""Job state transitions on PostgreSQL, called as plain functions (no queue): the claim and its
lease, attempt-guarded writes, the attempt cap, cancellation rules and the reconciler."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from service.db import session_scope
from service.errors import ServiceError
from service.store import jobs as job_store
from service.tables import Job, utcnow
from worker.reconciler import reconcile
from worker.runner import run_job


def _new_job(**kw) -> str:
    with session_scope() as s:
        job, created = job_store.create_job(s, kind="train", params={"dataset_id": "x"},
                                            principal="t", request_sha256="h", **kw)
        assert created
        return job.id


def _age_heartbeat(job_id: str, seconds: float) -> None:
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id)
                  .values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def _get(job_id: str) -> Job:
    with session_scope() as s:
        return job_store.get_job(s, job_id)


def test_claim_lease_and_attempt_guard(db):
    job_id = _new_job()
    with session_scope() as s:
        attempt, _ = job_store.claim(s, job_id, "w1", lease_s=60)
    assert attempt == 1
    with session_scope() as s:          # a duplicate delivery while w1 is alive
        assert job_store.claim(s, job_id, "w2", lease_s=60) is None
    _age_heartbeat(job_id, 120)          # w1 went silent
    with session_scope() as s:
        attempt2, job = job_store.claim(s, job_id, "w2", lease_s=60)
    assert attempt2 == 2 and job.worker == "w2"
    with session_scope() as s:          # the stale attempt can no longer write
        assert not job_store.heartbeat(s, job_id, 1)
        assert not job_store.set_progress(s, job_id, 1, 0.5, "stale")
        assert not job_store.finish(s, job_id, 1, "succeeded", "stale")
        assert job_store.finish(s, job_id, 2, "succeeded", "done")
    with session_scope() as s:          # terminal states never change
        assert job_store.claim(s, job_id, "w3", lease_s=0) is None
        assert not job_store.finish(s, job_id, None, "failed", "late")
    assert _get(job_id).status == "succeeded" and _get(job_id).progress == 1.0


def test_attempt_cap_fails_with_worker_lost(db):
    job_id = _new_job(max_attempts=1)
    with session_scope() as s:
        job_store.claim(s, job_id, "w1", lease_s=60)
    _age_heartbeat(job_id, 120)
    assert run_job(job_id) == "failed"
    job = _get(job_id)
    assert job.status == "failed" and job.error_code == "WORKER_LOST" and job.attempt == 2
    assert run_job(job_id) == "skipped"


def test_cancel_rules(db):
    queued = _new_job()
    with session_scope() as s:
        assert job_store.request_cancel(s, queued).status == "cancelled"
    assert run_job(queued) == "skipped"
    running = _new_job()
    with session_scope() as s:
        job_store.claim(s, running, "w", lease_s=60)
        assert job_store.request_cancel(s, running).status == "cancelling"
        assert job_store.cancel_requested(s, running)
        assert job_store.request_cancel(s, running).status == "cancelling"  # idempotent
        assert job_store.finish(s, running, 1, "cancelled", "stopped")
    with session_scope() as s, pytest.raises(ServiceError) as err:
        job_store.request_cancel(s, running)
    assert err.value.code == "JOB_NOT_CANCELLABLE"


def test_deterministic_failure_is_recorded_not_retried(db):
    job_id = _new_job()          # its dataset "x" does not exist
    assert run_job(job_id) == "failed"
    job = _get(job_id)
    assert job.error_code is not None and job.attempt == 1 and "Traceback" not in job.message


def test_reconciler(db):
    sent: list[tuple[str, str]] = []

    def send(job_id: str, kind: str) -> str:
        sent.append((job_id, kind))
        return f"task-{len(sent)}"

    never_sent = _new_job()
    stale_running = _new_job(max_attempts=3)
    exhausted = _new_job(max_attempts=1)
    abandoned_cancel = _new_job()
    with session_scope() as s:
        for job_id in (stale_running, exhausted, abandoned_cancel):
            job_store.claim(s, job_id, "dead", lease_s=60)
        job_store.request_cancel(s, abandoned_cancel)
    for job_id in (stale_running, exhausted, abandoned_cancel):
        _age_heartbeat(job_id, 3600)
    counts = reconcile(send)
    assert counts == {"dispatched": 2, "worker_lost": 1, "cancelled": 1}
    assert {j for j, _ in sent} == {never_sent, stale_running}
    assert _get(never_sent).dispatched_at is not None
    assert _get(exhausted).error_code == "WORKER_LOST"
    assert _get(abandoned_cancel).status == "cancelled"
    assert reconcile(send)["dispatched"] == 1          # the stale runner is still stale
    assert {j for j, _ in sent[2:]} == {stale_running}


def test_release_gives_back_only_the_attempt_that_runs(db):
    """``release`` (a transient error, or shutdown): running → queued with ``dispatched_at``
    cleared for the reconciler, guarded by the attempt; a cancelling job is not given back."""
    job_id = _new_job()
    with session_scope() as s:
        attempt, _ = job_store.claim(s, job_id, "w1", lease_s=60)
        job_store.mark_dispatched(s, job_id, "task-1")
    with session_scope() as s:
        assert not job_store.release(s, job_id, attempt + 1, "stale")
        assert job_store.release(s, job_id, attempt, "retrying after a transient error")
    job = _get(job_id)
    assert (job.status, job.dispatched_at, job.message) == \
        ("queued", None, "retrying after a transient error")
    with session_scope() as s:
        assert job_store.events(s, job_id, kind="state")[-1].message == \
            "queued: retrying after a transient error"
        attempt, _ = job_store.claim(s, job_id, "w2", lease_s=60)
        job_store.request_cancel(s, job_id)
    with session_scope() as s:
        assert not job_store.release(s, job_id, attempt, "at shutdown")
    assert _get(job_id).status == "cancelling"


def test_a_worker_that_lost_its_lease_stops_without_writing(db):
    """While attempt 1 trains, its lease is taken over (attempt 2): attempt 1 stops at its next
    epoch check and neither finishes the job nor registers a model."""
    from service.config import get_settings
    from worker.context import JobContext
    from worker.handlers.train import TrainCallbacks

    job_id = _new_job()
    with session_scope() as s:
        attempt, _ = job_store.claim(s, job_id, "w1", lease_s=60)
    _age_heartbeat(job_id, 120)
    with session_scope() as s:
        assert job_store.claim(s, job_id, "w2", lease_s=60)[0] == 2
    with JobContext(job_id, attempt, get_settings()) as ctx:
        callbacks = TrainCallbacks(ctx, 10, 0.0)
        callbacks.on_epoch_end(0, {"loss": 1.0})
        ctx.flush(force=True)
        assert ctx.lost.is_set() and callbacks.should_stop()
    job = _get(job_id)
    assert job.status == "running" and job.attempt == 2 and job.worker == "w2"
