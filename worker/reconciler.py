"""The reconciler: what at-least-once delivery leaves behind, put right from the job table
alone. It runs on a timer (Celery beat's ``reconcile`` task, or a thread of the embedded
executor) and on ``nas-surrogate bootstrap``; every state change goes through the job store."""
from __future__ import annotations

from service.config import Settings, get_settings
from service.db import session_scope
from service.store import jobs as job_store
from service.tables import utcnow
from worker.context import Send


def reconcile(dispatch: Send, settings: Settings | None = None, *,
              redispatch_after_s: float | None = None,
              lease_s: float | None = None) -> dict[str, int]:
    """Re-send queued jobs that were never dispatched (the broker was down after commit) and
    running jobs whose heartbeat is older than the lease; fail those whose attempts are used
    up with ``WORKER_LOST``; finish abandoned cancellations. ``dispatch(job_id, kind)`` sends."""
    settings = settings or get_settings()
    now = utcnow()
    counts = {"dispatched": 0, "worker_lost": 0, "cancelled": 0}
    with session_scope() as session:
        jobs = [(j.id, j.kind, j.status, j.attempt, j.max_attempts)
                for j in job_store.to_redispatch(
                    session, now,
                    settings.redispatch_after_s if redispatch_after_s is None
                    else redispatch_after_s,
                    settings.job_lease_s if lease_s is None else lease_s)]
    for job_id, kind, status, attempt, max_attempts in jobs:
        if status == "cancelling":
            with session_scope() as session:
                if job_store.finish(session, job_id, None, "cancelled",
                                    "cancelled (its worker stopped)"):
                    counts["cancelled"] += 1
            continue
        if status == "running" and attempt >= max_attempts:
            with session_scope() as session:
                if job_store.finish(session, job_id, None, "failed",
                                    f"the worker was lost {attempt} times "
                                    f"(limit {max_attempts})", error_code="WORKER_LOST"):
                    counts["worker_lost"] += 1
            continue
        task_id = dispatch(job_id, kind)
        with session_scope() as session:
            job_store.mark_dispatched(session, job_id, task_id)
        counts["dispatched"] += 1
    return counts
