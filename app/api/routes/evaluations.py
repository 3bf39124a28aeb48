"""``POST /evaluations``: evaluated genomes appended to a dataset version as a new, immutable
version (only the new genomes are encoded, by an ``append_dataset`` job); with ``retrain`` the
job then queues one promote-if-better training on it.

Each record is checked here, so a bad one fails alone (``rejected``, with the genome's error
code and offset) and the rest go on; ``duplicates`` counts records of genomes the parent's
lineage (or an earlier record of the request) already holds: repeated measurements, kept.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from app.api.deps import SettingsDep, TrainPrincipal
from app.api.routes import errors
from app.api.routes.jobs import (
    IdempotencyKey,
    answer_submission,
    job_public,
    request_digest,
    require_broker,
)
from app.schemas import EvaluationsRequest, EvaluationsResponse
from service.db import session_scope
from service.errors import ServiceError
from service.store import datasets as dataset_store
from service.store import jobs as job_store

router = APIRouter(tags=["datasets"])
EVALUATIONS = "evaluations.jsonl"


def _screen(body: EvaluationsRequest, parent_path: Path
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(accepted records with their index, rejected {index, error}, duplicates)."""
    from ml.datasets.versions import known_genomes, lineage
    from ml.errors import GenomeError, internal_error
    from ml.genome import canonical_hash, load

    known = set(known_genomes(lineage(parent_path)))
    accepted, rejected, duplicates = [], [], 0
    for index, record in enumerate(body.records):
        try:
            digest = canonical_hash(load(record.genome))
        except Exception as exc:  # noqa: BLE001 - whatever the record holds, it fails alone
            error = exc if isinstance(exc, GenomeError) else internal_error("reading", exc)
            rejected.append({"index": index, "error": error.to_dict()})
            continue
        duplicates += digest in known
        known.add(digest)
        accepted.append({"index": index, **record.model_dump()})
    return accepted, rejected, duplicates


@router.post("/evaluations", response_model=EvaluationsResponse, status_code=202,
             responses=errors(404, 409))
def add_evaluations(body: EvaluationsRequest, request: Request, response: Response,
                    principal: TrainPrincipal, settings: SettingsDep,
                    idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Append evaluations to dataset version ``dataset_id``: returns the new version's id at once
    (it is built by the returned job; poll ``GET /datasets/{id}``). Honours
    ``Idempotency-Key`` (the same key and body return the first answer's version and job)."""
    if body.model not in (None, settings.model_name) and not principal.is_admin:
        raise ServiceError("PERMISSION_DENIED", "retraining a model name other than "
                           f"{settings.model_name!r} needs an admin key")
    require_broker(request)
    with session_scope() as session:
        parent = dataset_store.get_dataset(session, body.dataset_id)
        if parent.status != "ready":
            raise ServiceError("DATASET_NOT_READY", f"dataset {parent.id} is {parent.status}")
        parent_path, metrics, parent_id = Path(parent.path), list(parent.metrics), parent.id
    digest = request_digest({"kind": "evaluations", **body.model_dump()})
    accepted, rejected, duplicates = _screen(body, parent_path)
    if not accepted:
        raise ServiceError("ALL_GENOMES_INVALID", "no record of the request is usable",
                           details={"rejected": rejected[:100]})
    dataset_id = str(uuid.uuid4())
    folder = settings.datasets_dir / dataset_id
    with session_scope() as session:
        job, created = job_store.create_job(
            session, kind="append_dataset",
            params={"dataset_id": dataset_id, "parent_id": parent_id, "retrain": body.retrain,
                    "model": body.model or settings.model_name,
                    "added": len(accepted), "duplicates": duplicates, "rejected": rejected},
            principal=principal.ident, request_sha256=digest, idempotency_key=idempotency_key,
            max_attempts=settings.max_attempts)
        if created:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / EVALUATIONS, "w") as handle:
                for record in accepted:
                    handle.write(json.dumps(record, allow_nan=False) + "\n")
            dataset_store.create_dataset(
                session, dataset_id=dataset_id, name=f"evaluations on {parent_id[:8]}",
                source_path=str(folder / EVALUATIONS), path=str(folder / "graphs"),
                metrics=metrics, parent_id=parent_id)
            dataset_store.attach_job(session, dataset_id, job.id)
            job.dataset_id = dataset_id
        job_id, params = job.id, dict(job.params)
    answer_submission(request, response, created, job_id, "append_dataset",
                      f"/datasets/{params['dataset_id']}")
    with session_scope() as session:
        return {"dataset_id": params["dataset_id"], "parent_id": params["parent_id"],
                "added": params["added"], "duplicates": params["duplicates"],
                "rejected": params["rejected"],
                "job": job_public(job_store.get_job(session, job_id))}
