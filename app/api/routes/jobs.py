"""``POST /jobs/train``, ``POST /jobs/pretrain``, ``GET /jobs``, ``GET /jobs/{id}``,
``POST /jobs/{id}/cancel``, ``GET /jobs/{id}/events``. Job state is read from SQL only (never
from Celery's backend)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import JobPrincipal, Principal, SessionDep, SettingsDep, TrainPrincipal
from app.api.routes import errors
from app.api.submission import (
    REPLAYED,
    IdempotencyKey,
    answer_submission,
    queue_job,
    request_digest,
    require_broker,
)
from app.schemas import (
    JobEventPublic,
    JobPublic,
    JobsPublic,
    PretrainRequest,
    TrainRequest,
    first_non_finite,
)
from app.services import jobs as job_service
from app.services.jobs import job_public, visible_job
from service.db import session_scope
from service.errors import ServiceError
from service.store import datasets as dataset_store
from service.store import jobs as job_store

router = APIRouter(tags=["jobs"])


def check_predictor(name: str, hyperparameters: dict[str, Any], settings: Any) -> None:
    """The predictor exists and every hyper-parameter has its type and bounds (422 naming the
    field in ``details.field``; the code is INVALID_REQUEST, as for every other body check);
    ``device: "cuda"`` is refused here when jobs run in this process and it has no CUDA
    (Celery workers check their own device when the job starts)."""
    from ml.models.hyperparameters import HyperparameterError, check_device
    from ml.models.registry import available_models, model_class

    if name not in available_models():
        raise ServiceError("UNKNOWN_PREDICTOR", f"unknown predictor {name!r}",
                           details={"choose_from": list(available_models())})
    cls = model_class(name)
    field = first_non_finite(hyperparameters)
    if field is not None:
        raise ServiceError("INVALID_REQUEST", f"hyperparameters.{field}: NaN and ±Infinity are "
                           "not numbers a learner can take",
                           details={"field": field, "allowed": sorted(cls.hyperparameters)})
    try:
        cls.validate_hyperparameters(hyperparameters)
        if settings.executor == "thread":
            check_device(hyperparameters)
    except HyperparameterError as exc:
        raise ServiceError("INVALID_REQUEST", f"hyperparameters.{exc}",
                           details={"field": exc.field,
                                    "allowed": sorted(cls.hyperparameters)}) from exc


def check_model_rights(body: TrainRequest, principal: Principal, settings: Any) -> None:
    """Moving an alias and writing under another model name are admin decisions."""
    if principal.is_admin:
        return
    if body.activate or body.promote == "always":
        raise ServiceError("PERMISSION_DENIED", "activate=true / promote=always needs an admin "
                           "key (activation is admin-only, as at POST /models/{version}/activate);"
                           " a train key promotes with promote=if_better")
    if body.model_name not in (None, settings.model_name):
        raise ServiceError("PERMISSION_DENIED", f"training under a model name other than "
                           f"{settings.model_name!r} needs an admin key")


def check_embedding(hyperparameters: dict[str, Any], principal: Principal) -> None:
    """``embedding`` names a succeeded ``pretrain`` job the caller can see (never a path: the
    worker resolves the id to the job's embedder file)."""
    ref = hyperparameters.get("embedding")
    if ref is None:
        return
    with session_scope() as session:
        try:
            job = visible_job(session, ref, principal) \
                if isinstance(ref, str) and len(ref) <= 64 else None
        except ServiceError:  # JOB_NOT_FOUND: none, or not this key's
            job = None
        if job is None or job.kind != "pretrain" or job.status != "succeeded":
            raise ServiceError("INVALID_REQUEST", "hyperparameters.embedding: must be the id of "
                               "a succeeded pretrain job", details={"field": "embedding"})


@router.post("/jobs/train", response_model=JobPublic, status_code=202,
             responses={**REPLAYED, **errors(404, 409)})
def submit_train(body: TrainRequest, request: Request, response: Response,
                 principal: TrainPrincipal, settings: SettingsDep,
                 idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Queue a training run on a built dataset. With an ``Idempotency-Key`` the same key and
    body return the original job (200); the same key with another body is 409."""
    check_predictor(body.predictor, body.hyperparameters, settings)
    check_embedding(body.hyperparameters, principal)
    check_model_rights(body, principal, settings)
    require_broker(request)
    params = body.model_dump()
    with session_scope() as session:
        dataset = dataset_store.get_dataset(session, body.dataset_id)
        if dataset.status != "ready":
            raise ServiceError("DATASET_NOT_READY", f"dataset {dataset.id} is {dataset.status}")
        job, created = job_store.create_job(
            session, kind="train", params=params, principal=principal.ident,
            request_sha256=request_digest({"kind": "train", **params}),
            idempotency_key=idempotency_key, dataset_id=dataset.id,
            max_attempts=settings.max_attempts, max_open=settings.max_jobs_per_key)
        job_id = job.id
    answer_submission(request, response, created, job_id, "train", f"/jobs/{job_id}")
    with session_scope() as session:
        return job_public(job_store.get_job(session, job_id))


@router.post("/jobs/pretrain", response_model=JobPublic, status_code=202,
             responses={**REPLAYED, **errors(409)})
def submit_pretrain(body: PretrainRequest, request: Request, response: Response,
                    principal: TrainPrincipal, settings: SettingsDep,
                    idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Queue self-supervised pre-training of the graph encoder (the ``gpu`` queue, as
    training). Its ``result`` is the run's report (genomes, seconds per stage, loss curve) and
    the embedder; pass the job's id as ``hyperparameters.embedding`` of a tree model's
    training. Idempotency as ``POST /jobs/train``."""
    if body.device == "cuda" and settings.executor == "thread":  # jobs run in this process
        from ml.models.hyperparameters import DeviceUnavailable, check_device
        try:
            check_device({"device": "cuda"})
        except DeviceUnavailable as exc:
            raise ServiceError("INVALID_REQUEST", f"device: {exc}",
                               details={"field": "device"}) from exc
    require_broker(request)
    job_id, _ = queue_job(request, response, "pretrain", body.model_dump(), principal, settings,
                       idempotency_key)
    with session_scope() as session:
        return job_public(job_store.get_job(session, job_id))


@router.get("/jobs", response_model=JobsPublic, responses=errors())
def list_jobs(session: SessionDep, principal: JobPrincipal,
              status: Annotated[str | None, Query(pattern="^(queued|running|cancelling|"
                                                  "succeeded|failed|cancelled)$")] = None,
              kind: Annotated[str | None, Query(
                  pattern="^(train|build_dataset|append_dataset|propose|pretrain)$")] = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              page_token: Annotated[str | None, Query(max_length=200)] = None) -> dict[str, Any]:
    """Newest first; pass ``next_page_token`` back as ``page_token`` for the next page. A key
    sees its own jobs; an admin key sees every job."""
    rows, total, token = job_store.list_jobs(
        session, status=status, kind=kind, limit=limit, page_token=page_token,
        principal=None if principal.is_admin else principal.ident)
    return {"data": [job_public(j) for j in rows], "count": total, "next_page_token": token}


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=errors(404))
def get_job(job_id: str, session: SessionDep, principal: JobPrincipal) -> dict[str, Any]:
    """State, progress, heartbeat, attempt, error code, model version and per-epoch metrics
    (the owner's or an admin's)."""
    job = visible_job(session, job_id, principal)
    return job_public(job, job_store.events(session, job_id, kind="epoch"))


@router.get("/jobs/{job_id}/events", response_model=list[JobEventPublic], responses=errors(404))
def job_events(job_id: str, session: SessionDep, principal: JobPrincipal,
               limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[Any]:
    """The job's log: state changes, messages and epoch rows, oldest first."""
    visible_job(session, job_id, principal)
    return job_store.events(session, job_id, limit=limit)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic, responses=errors(404, 409))
def cancel_job(job_id: str, request: Request, principal: JobPrincipal) -> dict[str, Any]:
    """Queued: cancelled at once. Running: ``cancelling`` until the worker stops between
    epochs (its checkpoint is kept). Finished: 409 ``JOB_NOT_CANCELLABLE``. Only the job's
    owner or an admin may cancel it."""
    job_service.cancel_job(request.app.state.dispatcher, job_id, principal)
    with session_scope() as session:
        return job_public(job_store.get_job(session, job_id))
