"""Jobs as the API and the dashboard show them, and the one way to cancel one."""
from __future__ import annotations

from typing import Any

from app.services.access import Caller
from service.db import session_scope
from service.errors import ServiceError
from service.store import jobs as job_store
from service.tables import Job


def job_public(job: Job, epochs: list[Any] | None = None) -> dict[str, Any]:
    """The ``JobPublic`` shape of a job row (and its epoch rows when given)."""
    return {
        "id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
        "message": job.message, "attempt": job.attempt, "max_attempts": job.max_attempts,
        "params": job.params, "dataset_id": job.dataset_id, "created_at": job.created_at,
        "dispatched_at": job.dispatched_at, "started_at": job.started_at,
        "heartbeat_at": job.heartbeat_at, "finished_at": job.finished_at,
        "cancel_requested_at": job.cancel_requested_at,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code
        else None,
        "model_name": job.model_name, "model_version": job.model_version,
        "result": job.result,
        "epochs": None if epochs is None else [
            {"epoch": e.epoch, "attempt": e.attempt, "metrics": e.data} for e in epochs]}


def visible_job(session: Any, job_id: str, caller: Caller) -> Job:
    """A job its owner or an admin may see; anyone else gets the same 404 as for no job."""
    job = job_store.get_job(session, job_id)
    if not caller.is_admin and job.principal != caller.ident:
        raise ServiceError("JOB_NOT_FOUND", f"no job {job_id}")
    return job


def cancel_job(dispatcher: Any, job_id: str, caller: Caller) -> None:
    """Ask a job the caller may see to stop: a queued one is cancelled at once (its queued task
    revoked), a running one becomes ``cancelling`` until its worker stops; a finished one is
    409 ``JOB_NOT_CANCELLABLE`` (``service.store.jobs.request_cancel``)."""
    with session_scope() as session:
        visible_job(session, job_id, caller)
        job = job_store.request_cancel(session, job_id)
        task_id, status = job.task_id, job.status
    if status == "cancelled":
        dispatcher.revoke(task_id)
