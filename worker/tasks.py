"""Celery tasks: thin adapters over :func:`worker.runner.run_job` (the job id is the only argument).

Transient errors (database or broker connection) retry with exponential backoff and jitter;
everything deterministic is recorded on the job row by ``run_job`` itself, so the task returns
normally and the message is acked. Time limits come from the settings.
"""
from __future__ import annotations

from service.config import get_settings
from service.errors import ServiceError
from service.queue import (
    TASK_APPEND,
    TASK_BUILD,
    TASK_PRETRAIN,
    TASK_PROPOSE,
    TASK_RECONCILE,
    TASK_TRAIN,
    CeleryDispatcher,
)
from worker.celery_app import app
from worker.context import TRANSIENT, Send
from worker.reconciler import reconcile as reconcile_jobs
from worker.runner import run_job

_s = get_settings()


def _run(job_id: str, kind: str, send: Send | None = None) -> str:
    """Run the job; one released at SIGTERM (see :mod:`worker.celery_app`) is sent again at
    once, so another worker takes it over without waiting for the reconciler."""
    status = run_job(job_id, send=send)
    if status == "released":
        from service.db import session_scope
        from service.store import jobs as job_store

        try:
            task_id = CeleryDispatcher().send(job_id, kind)
        except ServiceError:
            return status  # the broker is away: the reconciler sends it when it is back
        with session_scope() as session:
            job_store.mark_dispatched(session, job_id, task_id)
    return status


_retry = {"autoretry_for": TRANSIENT + (ServiceError,), "retry_backoff": True,
              "retry_backoff_max": 600, "retry_jitter": True, "max_retries": 5}


@app.task(name=TASK_BUILD, soft_time_limit=_s.build_soft_limit_s,
          time_limit=_s.build_hard_limit_s, **_retry)
def build_dataset(job_id: str) -> str:
    return _run(job_id, "build_dataset")


@app.task(name=TASK_APPEND, soft_time_limit=_s.build_soft_limit_s,
          time_limit=_s.build_hard_limit_s, **_retry)
def append_dataset(job_id: str) -> str:
    return _run(job_id, "append_dataset", send=CeleryDispatcher().send)


@app.task(name=TASK_TRAIN, soft_time_limit=_s.train_soft_limit_s,
          time_limit=_s.train_hard_limit_s, **_retry)
def train(job_id: str) -> str:
    return _run(job_id, "train")


@app.task(name=TASK_PRETRAIN, soft_time_limit=_s.train_soft_limit_s,
          time_limit=_s.train_hard_limit_s, **_retry)
def pretrain(job_id: str) -> str:
    return _run(job_id, "pretrain")


@app.task(name=TASK_PROPOSE, soft_time_limit=_s.build_soft_limit_s,
          time_limit=_s.build_hard_limit_s, **_retry)
def propose(job_id: str) -> str:
    return _run(job_id, "propose")


@app.task(name=TASK_RECONCILE, acks_late=False)
def reconcile() -> dict[str, int]:
    return reconcile_jobs(CeleryDispatcher().send)
