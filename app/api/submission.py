"""How every job-creating route answers: the ``Idempotency-Key`` header, the request digest a
replay is recognised by, the broker check before anything is written, and dispatching a
committed job (202 new, 200 replay, ``Location`` either way)."""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import Header, Request, Response

from app.api.deps import Principal
from app.schemas import JobPublic
from service.db import session_scope
from service.errors import ServiceError
from service.store import jobs as job_store

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]
#: The answer to a replayed submission (same ``Idempotency-Key`` and body): the earlier job.
REPLAYED = {200: {"model": JobPublic, "description": "an idempotent replay: the job the "
                  "earlier request with this Idempotency-Key created"}}


def request_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def dispatch_committed(request: Request, job_id: str, kind: str) -> None:
    """Send a committed job; if the broker fails now, the row stays queued with
    ``dispatched_at`` NULL and the reconciler sends it later."""
    try:
        task_id = request.app.state.dispatcher.send(job_id, kind)
    except ServiceError:
        return
    with session_scope() as session:
        job_store.mark_dispatched(session, job_id, task_id)


def answer_submission(request: Request, response: Response, created: bool, job_id: str,
                      kind: str, location: str) -> None:
    """A new job is dispatched (202); an idempotent replay of an earlier request answers 200
    with what that request created. Either way ``Location`` names the resource."""
    if created:
        dispatch_committed(request, job_id, kind)
    else:
        response.status_code = 200
    response.headers["Location"] = location


def queue_job(request: Request, response: Response, kind: str, params: dict[str, Any],
              principal: Principal, settings: Any,
              idempotency_key: str | None) -> tuple[str, bool]:
    """Create a job that needs nothing else checked in its transaction (an idempotent replay
    finds the earlier one) and answer as :func:`answer_submission`; returns its id and
    whether it is new."""
    with session_scope() as session:
        job, created = job_store.create_job(
            session, kind=kind, params=params, principal=principal.ident,
            request_sha256=request_digest({"kind": kind, **params}),
            idempotency_key=idempotency_key, max_attempts=settings.max_attempts,
            max_open=settings.max_jobs_per_key)
        job_id = job.id
    answer_submission(request, response, created, job_id, kind, f"/jobs/{job_id}")
    return job_id, created


def require_broker(request: Request) -> None:
    if not request.app.state.dispatcher.ping():
        raise ServiceError("BROKER_UNAVAILABLE", "the job queue is unreachable; nothing was "
                           "submitted, retry later (the same Idempotency-Key is safe)")
