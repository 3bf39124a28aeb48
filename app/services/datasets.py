"""Dataset versions as the API and the dashboard show them."""
from __future__ import annotations

from typing import Any

from app.services.access import Caller
from app.services.jobs import job_public
from service.store import datasets as dataset_store
from service.tables import Dataset, Job


def dataset_public(row: Dataset, job: Job | None, session: Any = None,
                   retrain_job_id: str | None = None) -> dict[str, Any]:
    """The ``DatasetPublic`` shape of a version (its lineage read in ``session`` when given)."""
    manifest = row.manifest or {}
    return {"id": row.id, "name": row.name, "status": row.status, "metrics": row.metrics,
            "job": job_public(job) if job is not None else None,
            "counts": manifest.get("counts"), "created_at": row.created_at,
            "parent_id": row.parent_id,
            "lineage": dataset_store.lineage_ids(session, row) if session is not None else [],
            "label_noise": manifest.get("label_noise"), "retrain_job_id": retrain_job_id}


def _seen_by(job: Job | None, caller: Caller) -> Job | None:
    """The job when ``caller`` may see it (its owner, an admin), as ``GET /jobs/{id}``
    decides; ``None`` otherwise, so a dataset never shows another key's job or its params."""
    if job is None or caller.is_admin or job.principal == caller.ident:
        return job
    return None


def dataset_view(session: Any, row: Dataset, caller: Caller) -> dict[str, Any]:
    """:func:`dataset_public` with the version's own build job and its retraining, read in
    ``session``, each only where the caller may see that job."""
    job = _seen_by(session.get(Job, row.job_id) if row.job_id else None, caller)
    retrain = _seen_by(session.get(Job, row.retrain_job_id) if row.retrain_job_id else None,
                       caller)
    return dataset_public(row, job, session, retrain.id if retrain is not None else None)
