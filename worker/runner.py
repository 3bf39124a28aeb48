"""The job runner. Celery tasks (``worker.tasks``) and the embedded thread executor both call
:func:`run_job`, so the same claim, heartbeat, progress, cancellation and registration code runs
in production and in ``nas-surrogate serve``.

Contract with the queue (at-least-once delivery): a delivery first *claims* the SQL row; a
delivery that cannot claim it (another worker holds a fresh lease, or the job is terminal or
cancelled) returns quietly. A claim of a job whose worker died increments ``attempt``; past
``max_attempts`` the job fails with ``WORKER_LOST`` instead of looping. Deterministic errors fail
the job at once with a code; transient ones (database or broker connection) release the claim
and are re-raised for the Celery task's backoff retry. Every state change goes through the job
store (:mod:`service.store.jobs`); what a kind does is its handler's (:mod:`worker.handlers`).
"""
from __future__ import annotations

import logging

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from service.config import Settings, get_settings
from service.db import session_scope
from service.errors import JOB_ERROR_CODES, JobFailure, ServiceError
from service.store import jobs as job_store
from service.tables import Job
from worker.context import (
    TRANSIENT,
    Cancelled,
    JobContext,
    LeaseLost,
    Send,
    clear_stop,
    stop_reason,
    worker_name,
)
from worker.handlers import HANDLERS

log = logging.getLogger(__name__)

#: Database errors that a retry repeats (a value the database refuses, a broken statement): the
#: job fails at once instead of being re-sent until its attempts run out.
DETERMINISTIC_DB = (DataError, IntegrityError, ProgrammingError)
#: Service error codes that mean "try again later" (everything else fails the job at once).
TRANSIENT_CODES = {"DATABASE_UNAVAILABLE", "BROKER_UNAVAILABLE"}


def run_job(job_id: str, settings: Settings | None = None, send: Send | None = None) -> str:
    """Claim and run one job; returns its final status, ``"released"`` (given back at
    shutdown), ``"lost"`` (a newer attempt took it) or ``"skipped"`` when not claimed.
    ``send(job_id, kind)`` dispatches a job this one queues (an append's retraining); without
    it the reconciler sends that job on its next pass."""
    settings = settings or get_settings()
    with session_scope() as session:
        claimed = job_store.claim(session, job_id, worker_name(), settings.job_lease_s)
        if claimed is None:
            return "skipped"
        attempt, job = claimed
        if attempt > job.max_attempts:
            job_store.finish(session, job_id, attempt, "failed",
                             f"the worker was lost {attempt - 1} times (limit {job.max_attempts})",
                             error_code="WORKER_LOST")
            return "failed"
        kind, params = job.kind, dict(job.params)
    try:
        with JobContext(job_id, attempt, settings, send) as ctx:
            handler = HANDLERS.get(kind)
            if handler is None:
                raise JobFailure("INTERNAL_ERROR", f"unknown job kind {kind!r}")
            return handler.run(ctx, params)
    except Cancelled:
        reason = stop_reason(job_id)
        if reason == "time_limit":
            return _end(job_id, attempt, "failed", "soft time limit exceeded", "TIME_LIMIT")
        if reason == "shutdown":
            _release(job_id, attempt, "released at shutdown; resumes on the next start")
            return "released"
        return _end(job_id, attempt, "cancelled", "cancelled on request")
    except LeaseLost:
        log.warning("job %s: attempt %d lost its lease to a newer attempt", job_id, attempt)
        return "lost"
    except JobFailure as exc:
        return _end(job_id, attempt, "failed", exc.message, exc.code)
    except MemoryError:
        return _end(job_id, attempt, "failed", "out of memory", "OUT_OF_MEMORY")
    except ServiceError as exc:
        if exc.code not in TRANSIENT_CODES:
            code = exc.code if exc.code in JOB_ERROR_CODES else "INTERNAL_ERROR"
            return _end(job_id, attempt, "failed", exc.message, code)
        _release(job_id, attempt)
        raise
    except DETERMINISTIC_DB as exc:
        log.exception("job %s failed: the database refused what it wrote", job_id)
        return _end(job_id, attempt, "failed", f"the database refused a value: "
                    f"{type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__}",
                    "INTERNAL_ERROR")
    except TRANSIENT:
        _release(job_id, attempt)
        raise
    except Exception as exc:
        if _is_time_limit(exc):
            return _end(job_id, attempt, "failed", "soft time limit exceeded", "TIME_LIMIT")
        log.exception("job %s failed", job_id)
        return _end(job_id, attempt, "failed", f"{type(exc).__name__}: {exc}", "INTERNAL_ERROR")
    finally:
        clear_stop(job_id)


def _is_time_limit(exc: BaseException) -> bool:
    """Celery's soft time limit, recognised by name: the runner also runs without Celery."""
    return type(exc).__name__ == "SoftTimeLimitExceeded"


def _end(job_id: str, attempt: int, status: str, message: str, code: str | None = None) -> str:
    """Move the job to a terminal state; a failed job's kind cleans up what it was making."""
    with session_scope() as session:
        if status == "failed":
            job = session.get(Job, job_id)
            handler = HANDLERS.get(job.kind) if job is not None else None
            if job is not None and handler is not None and handler.on_failure is not None:
                handler.on_failure(session, job)
        job_store.finish(session, job_id, attempt, status, message, error_code=code)
    return status


def _release(job_id: str, attempt: int,
             message: str = "retrying after a transient error") -> None:
    """Give a claimed job back to the queue (best effort): after a transient error, or at
    shutdown; if the database is away too, the lease expires and the reconciler takes it."""
    try:
        with session_scope() as session:
            job_store.release(session, job_id, attempt, message)
    except TRANSIENT + (ServiceError,):
        log.warning("job %s: could not release the claim; the lease will expire", job_id)
