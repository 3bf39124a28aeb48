"""``POST /evaluations``: evaluated genomes appended to a dataset version as a new, immutable
version (only the new genomes are encoded, by an ``append_dataset`` job); with ``retrain`` the
job then queues one promote-if-better training on it.

Each record is checked here, so a bad one fails alone (``rejected``, with the genome's error
code and offset) and the rest go on; ``duplicates`` counts records of genomes the parent's
lineage (or an earlier record of the request) already holds: repeated measurements, kept.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from app.api.deps import Principal, SettingsDep, TrainPrincipal
from app.api.routes import errors
from app.api.submission import IdempotencyKey, answer_submission, request_digest, require_broker
from app.schemas import EvaluationsRequest, EvaluationsResponse
from app.scoring import RequestBudget
from app.services.jobs import job_public
from service.config import Settings
from service.db import session_scope
from service.errors import ServiceError
from service.store import datasets as dataset_store
from service.store import jobs as job_store

router = APIRouter(tags=["datasets"])
EVALUATIONS = "evaluations.jsonl"


def too_long(body: EvaluationsRequest, max_length: int) -> dict[int, dict[str, Any]]:
    """Records whose genome passes the length limit, by index, with their rejection. Checked
    before anything is parsed or read: a megabyte genome costs its length, not a parse."""
    return {index: {"index": index, "error": {
                "code": "GENOME_TOO_LONG", "offset": max_length,
                "message": f"genome is {len(record.genome)} characters (max {max_length})"}}
            for index, record in enumerate(body.records) if len(record.genome) > max_length}


def _screen(body: EvaluationsRequest, parent_path: Path, max_length: int, budget: RequestBudget
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(accepted records with their index, rejected {index, error}, duplicates). Past the
    request's deadline: 503 ``DEADLINE_EXCEEDED`` (nothing is stored)."""
    from ml.datasets.versions import known_genomes, lineage
    from ml.errors import GenomeError, internal_error
    from ml.genome import canonical_hash, load

    long = too_long(body, max_length)
    known = set(known_genomes(lineage(parent_path)))
    in_parent = frozenset(known)
    accepted, rejected, duplicates = [], [], 0
    for index, record in enumerate(body.records):
        if index in long:
            rejected.append(long[index])
            continue
        budget.check_time(index)
        try:
            digest = canonical_hash(load(record.genome, max_length=max_length))
        except Exception as exc:
            error = exc if isinstance(exc, GenomeError) else internal_error("reading", exc)
            rejected.append({"index": index, "error": error.to_dict()})
            continue
        if body.skip_known and digest in in_parent:
            duplicates += 1  # already in the lineage: an ingest adds it once
            continue
        duplicates += digest in known
        known.add(digest)
        accepted.append({"index": index, **record.model_dump(), "canonical_hash": digest})
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
    accepted, rejected, duplicates = _screen(
        body, parent_path, settings.max_genome_length,
        RequestBudget(0, settings.request_deadline_s))
    if not accepted and body.skip_known and duplicates:
        response.status_code = 200  # nothing new: no version, no job
        return {"dataset_id": parent_id, "parent_id": parent_id, "added": 0,
                "duplicates": duplicates, "rejected": rejected, "job": None}
    if not accepted:
        raise ServiceError("ALL_GENOMES_INVALID", "no record of the request is usable",
                           details={"rejected": rejected[:100]})
    dataset_id = str(uuid.uuid4())
    folder = settings.datasets_dir / dataset_id
    try:
        job_id, params, created = _store(body, principal, settings, digest, idempotency_key,
                                         dataset_id, parent_id, metrics, accepted, rejected,
                                         duplicates)
    except BaseException:
        # Nothing of a failed request stays: its rows rolled back, its folder goes too.
        shutil.rmtree(folder, ignore_errors=True)
        raise
    answer_submission(request, response, created, job_id, "append_dataset",
                      f"/datasets/{params['dataset_id']}")
    with session_scope() as session:
        return {"dataset_id": params["dataset_id"], "parent_id": params["parent_id"],
                "added": params["added"], "duplicates": params["duplicates"],
                "rejected": params["rejected"],
                "job": job_public(job_store.get_job(session, job_id))}


def _store(body: EvaluationsRequest, principal: Principal, settings: Settings, digest: str,
           idempotency_key: str | None, dataset_id: str, parent_id: str, metrics: list[str],
           accepted: list[dict[str, Any]], rejected: list[dict[str, Any]], duplicates: int
           ) -> tuple[str, dict[str, Any], bool]:
    """The job, the new version's row and its records file, in one transaction (the earlier
    request's job and params when ``idempotency_key`` replays one)."""
    folder = settings.datasets_dir / dataset_id
    with session_scope() as session:
        job, created = job_store.create_job(
            session, kind="append_dataset",
            params={"dataset_id": dataset_id, "parent_id": parent_id, "retrain": body.retrain,
                    "model": body.model or settings.model_name,
                    "added": len(accepted), "duplicates": duplicates, "rejected": rejected},
            principal=principal.ident, request_sha256=digest, idempotency_key=idempotency_key,
            max_attempts=settings.max_attempts, max_open=settings.max_jobs_per_key)
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
    return job_id, params, created
