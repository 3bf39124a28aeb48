"""Job rows and their legal transitions, each a conditional UPDATE (compare-and-set).

``queued → running → succeeded | failed | cancelled`` with ``cancelling`` in between when a
running job is asked to stop, and ``running → queued`` when its worker gives it back
(:func:`release`). Terminal states never change. A worker owns a job through
:func:`claim` (which increments ``attempt``) and keeps it with :func:`heartbeat`; every write a
worker makes is guarded by its attempt number, so a stale worker cannot overwrite a newer one.
"""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import ServiceError
from service.store import get_or_raise
from service.tables import INT32_MAX, TERMINAL_STATES, Job, JobEvent, utcnow

ACTIVE_STATES = ("running", "cancelling")


def new_id() -> str:
    return str(uuid.uuid4())


def create_job(session: Session, *, kind: str, params: dict[str, Any], principal: str,
               request_sha256: str, idempotency_key: str | None = None,
               dataset_id: str | None = None, max_attempts: int = 3,
               max_open: int = 0) -> tuple[Job, bool]:
    """Insert a queued job, or return the job an earlier request with the same key created.

    Returns ``(job, created)``. The same key with another body raises
    ``IDEMPOTENCY_KEY_REUSED``. Races between concurrent requests with one key are settled by
    the unique constraint: the losers roll back their savepoint and read the winner's row.
    ``max_open`` (> 0): a new job is refused with 429 ``TOO_MANY_JOBS`` while ``principal``
    already has that many queued or running (a replay is never refused). The count is not
    locked: concurrent submissions may pass it together, by at most their number.
    """
    if idempotency_key is not None:
        existing = _by_key(session, principal, idempotency_key)
        if existing is not None:
            return _same_request(existing, request_sha256), False
    if max_open > 0:
        check_open_jobs(session, principal, max_open)
    job = Job(id=new_id(), kind=kind, status="queued", params=params, principal=principal,
              idempotency_key=idempotency_key, request_sha256=request_sha256,
              dataset_id=dataset_id, max_attempts=max_attempts, message="queued")
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:
        existing = _by_key(session, principal, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _same_request(existing, request_sha256), False
    add_event(session, job.id, "state", "queued", attempt=0)
    return job, True


#: The states a job counts against its key's ``max_open`` in.
OPEN_STATES = ("queued", *ACTIVE_STATES)


def check_open_jobs(session: Session, principal: str, limit: int) -> None:
    """429 ``TOO_MANY_JOBS`` when ``principal`` has ``limit`` jobs queued or running: one key
    cannot fill the queue that every key shares."""
    open_ids = list(session.scalars(
        select(Job.id).where(Job.principal == principal, Job.status.in_(OPEN_STATES))
        .order_by(Job.created_at).limit(limit)))
    if len(open_ids) >= limit:
        raise ServiceError("TOO_MANY_JOBS", f"this key has {len(open_ids)} jobs queued or "
                           f"running, its limit; submit again when one has finished",
                           details={"limit": limit, "open_jobs": open_ids},
                           headers={"Retry-After": "30"})


def _by_key(session: Session, principal: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.principal == principal,
                                            Job.idempotency_key == key))


def _same_request(job: Job, request_sha256: str) -> Job:
    if job.request_sha256 != request_sha256:
        raise ServiceError("IDEMPOTENCY_KEY_REUSED",
                           "this Idempotency-Key was used with a different request body",
                           details={"job_id": job.id})
    return job


def get_job(session: Session, job_id: str) -> Job:
    return get_or_raise(session, Job, job_id, "JOB_NOT_FOUND", f"no job {job_id}")


def add_event(session: Session, job_id: str, kind: str, message: str = "", *,
              attempt: int = 0, epoch: int | None = None,
              data: dict[str, Any] | None = None) -> None:
    session.add(JobEvent(job_id=job_id, kind=kind, message=message, attempt=attempt,
                         epoch=epoch, data=data))


def mark_dispatched(session: Session, job_id: str, task_id: str | None) -> None:
    session.execute(update(Job).where(Job.id == job_id)
                    .values(dispatched_at=utcnow(), task_id=task_id))


def claim(session: Session, job_id: str, worker: str, lease_s: float) -> tuple[int, Job] | None:
    """Take ownership of a queued job, or of a running one whose heartbeat is older than the
    lease (its worker died). Returns ``(attempt, job)``, or None when someone else holds it or
    it is terminal or cancelled (the caller exits quietly)."""
    now = utcnow()
    stale = now - timedelta(seconds=lease_s)
    result = session.execute(
        update(Job)
        .where(Job.id == job_id,
               or_(Job.status == "queued",
                   and_(Job.status == "running",
                        or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale))))
        .values(status="running", attempt=Job.attempt + 1, worker=worker, heartbeat_at=now,
                started_at=func.coalesce(Job.started_at, now), message="running")
        .returning(Job.attempt))
    attempt = result.scalar_one_or_none()
    if attempt is None:
        return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    add_event(session, job_id, "state", f"running on {worker}", attempt=attempt)
    return attempt, job


def _owned(job_id: str, attempt: int) -> Any:
    return and_(Job.id == job_id, Job.attempt == attempt, Job.status.in_(ACTIVE_STATES))


def owns(session: Session, job_id: str, attempt: int) -> bool:
    """Whether ``attempt`` still owns the job, with the row locked until commit (PostgreSQL),
    so no claim or terminal transition can slip in before the caller's result is written."""
    row = session.execute(select(Job.id).where(_owned(job_id, attempt))
                          .with_for_update()).first()
    return row is not None


def heartbeat(session: Session, job_id: str, attempt: int) -> bool:
    """Refresh the lease; False when this attempt no longer owns the job."""
    result = session.execute(update(Job).where(_owned(job_id, attempt))
                             .values(heartbeat_at=utcnow()))
    return result.rowcount == 1


def set_progress(session: Session, job_id: str, attempt: int, progress: float,
                 message: str) -> bool:
    result = session.execute(update(Job).where(_owned(job_id, attempt)).values(
        progress=max(0.0, min(1.0, float(progress))), message=message[:2000],
        heartbeat_at=utcnow()))
    return result.rowcount == 1


def release(session: Session, job_id: str, attempt: int, message: str) -> bool:
    """Give a running job back to the queue (``running → queued``, guarded by ``attempt``):
    after a transient error, or at shutdown. ``dispatched_at`` is cleared so the reconciler
    sends it again. False when this attempt no longer holds it (cancelling, terminal, taken)."""
    released = session.execute(
        update(Job).where(Job.id == job_id, Job.attempt == attempt, Job.status == "running")
        .values(status="queued", message=message, dispatched_at=None)).rowcount
    if released:
        add_event(session, job_id, "state", f"queued: {message}", attempt=attempt)
    return bool(released)


def cancel_requested(session: Session, job_id: str) -> bool:
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    return status in ("cancelling", "cancelled")


def finish(session: Session, job_id: str, attempt: int | None, status: str, message: str,
           *, error_code: str | None = None, model_name: str | None = None,
           model_version: int | None = None, result: dict[str, Any] | None = None) -> bool:
    """Move an active job to a terminal state (guarded by ``attempt`` when given)."""
    if status not in TERMINAL_STATES:
        raise ValueError(f"{status!r} is not terminal")
    cond = _owned(job_id, attempt) if attempt is not None else and_(
        Job.id == job_id, Job.status.notin_(TERMINAL_STATES))
    values: dict[str, Any] = {"status": status, "message": message[:2000],
                              "finished_at": utcnow(), "error_code": error_code,
                              "error_message": message[:2000] if error_code else None}
    if status == "succeeded":
        values["progress"] = 1.0
    if model_version is not None:
        values.update(model_name=model_name, model_version=model_version)
    if result is not None:
        values["result"] = result
    updated = session.execute(update(Job).where(cond).values(**values))
    if updated.rowcount == 1:
        add_event(session, job_id, "state", f"{status}: {message}"[:2000],
                  attempt=attempt or 0, data={"error_code": error_code} if error_code else None)
        return True
    return False


def request_cancel(session: Session, job_id: str) -> Job:
    """Queued → cancelled at once; running → cancelling (the worker stops between epochs);
    cancelling stays; a terminal job raises ``JOB_NOT_CANCELLABLE``."""
    job = get_job(session, job_id)
    now = utcnow()
    done = session.execute(update(Job).where(Job.id == job_id, Job.status == "queued").values(
        status="cancelled", finished_at=now, cancel_requested_at=now,
        message="cancelled before it started")).rowcount
    if not done:
        done = session.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
            status="cancelling", cancel_requested_at=now, message="cancellation requested"
        )).rowcount
    session.refresh(job)
    if not done and job.status != "cancelling":
        raise ServiceError("JOB_NOT_CANCELLABLE", f"job {job_id} is already {job.status}",
                           details={"status": job.status})
    if done:
        add_event(session, job_id, "state", job.status, attempt=job.attempt)
    return job


def list_jobs(session: Session, *, status: str | None = None, kind: str | None = None,
              limit: int = 50, page_token: str | None = None,
              principal: str | None = None) -> tuple[list[Job], int, str | None]:
    """Newest first; ``(jobs, total, next_page_token)``. The token encodes an offset (MLflow).
    ``principal`` restricts the list to that owner's jobs."""
    offset = _decode_token(page_token)
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if principal is not None:
        query, count = query.where(Job.principal == principal), count.where(
            Job.principal == principal)
    if status:
        query, count = query.where(Job.status == status), count.where(Job.status == status)
    if kind:
        query, count = query.where(Job.kind == kind), count.where(Job.kind == kind)
    rows = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id)
                                .offset(offset).limit(limit + 1)))
    total = int(session.scalar(count) or 0)
    token = _encode_token(offset + limit) if len(rows) > limit else None
    return rows[:limit], total, token


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ServiceError("INVALID_REQUEST", "page_token is not valid") from exc
    # Only an integer this service could have issued: a float (1e300, inf) or an offset past
    # what SQL takes is refused here, not as an overflow inside the query.
    if not isinstance(offset, int) or isinstance(offset, bool) or \
            not 0 <= offset <= INT32_MAX:
        raise ServiceError("INVALID_REQUEST", "page_token is not valid")
    return offset


def events(session: Session, job_id: str, kind: str | None = None,
           limit: int = 1000) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if kind:
        query = query.where(JobEvent.kind == kind)
    return list(session.scalars(query.order_by(JobEvent.id).limit(limit)))


def to_redispatch(session: Session, now: datetime, redispatch_after_s: float,
                  lease_s: float) -> list[Job]:
    """Queued jobs never (or long ago) dispatched, and running jobs whose worker went silent."""
    stale_dispatch = now - timedelta(seconds=redispatch_after_s)
    stale_beat = now - timedelta(seconds=lease_s)
    return list(session.scalars(select(Job).where(or_(
        and_(Job.status == "queued",
             or_(Job.dispatched_at.is_(None), Job.dispatched_at < stale_dispatch)),
        and_(Job.status.in_(ACTIVE_STATES), Job.heartbeat_at < stale_beat)))))
