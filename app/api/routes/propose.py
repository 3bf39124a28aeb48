"""``POST /propose``: the search next to the model (SSI, Neural-Predictor, mutation).

A proposal small enough (``SURROGATE_PROPOSE_SYNC_MAX_CANDIDATES``) runs in the request through
the same encoding cache as ``/predict``; a larger one is queued as a ``propose`` job (202, the
job's ``result`` holds the same answer at ``GET /jobs/{id}``).
"""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import PredictPrincipal, SettingsDep
from app.api.routes import errors
from app.api.submission import IdempotencyKey, queue_job, require_broker
from app.schemas import JobPublic, ProposeRequest, ProposeResponse
from app.services.jobs import job_public
from app.services.models import loaded_model
from service.config import Settings
from service.db import session_scope
from service.errors import ServiceError
from service.store import jobs as job_store

router = APIRouter(tags=["search"])


def check_propose(body: ProposeRequest, settings: Settings) -> None:
    """The body's limits, before any encoding."""
    if body.pool_size > settings.max_pool_size:
        raise ServiceError("INVALID_REQUEST", f"pool_size {body.pool_size} > the limit of "
                           f"{settings.max_pool_size}", details={"field": "pool_size"})
    if body.inner_generations > settings.max_inner_generations:
        raise ServiceError("INVALID_REQUEST", f"inner_generations > the limit of "
                           f"{settings.max_inner_generations}",
                           details={"field": "inner_generations"})
    if len(body.population) > settings.max_batch:
        raise ServiceError("BATCH_TOO_LARGE", f"{len(body.population)} genomes in population > "
                           f"the limit of {settings.max_batch}",
                           details={"max_batch": settings.max_batch})
    if len(body.exclude) > settings.max_exclude:
        raise ServiceError("BATCH_TOO_LARGE", f"{len(body.exclude)} genomes in exclude > the "
                           f"limit of {settings.max_exclude}",
                           details={"max_exclude": settings.max_exclude})
    for field in ("population", "exclude"):
        long = [i for i, g in enumerate(getattr(body, field))
                if len(g) > settings.max_genome_length]
        if long:
            raise ServiceError("GENOME_TOO_LONG", f"{len(long)} genomes of {field} exceed "
                               f"{settings.max_genome_length} characters",
                               details={"field": field, "indices": long[:100]})


def run_proposal(scorer: Any, loaded: Any, spec: Any, budget: Any) -> dict[str, Any]:
    """Run ``spec`` against a loaded model; a request the search refuses is a 422/404."""
    from app.scoring import SearchScorer
    from ml.search.strategies import SearchError, propose

    def out_of_time() -> bool:
        budget.check_time(0)  # raises DEADLINE_EXCEEDED (503) past the proposal's deadline
        return False

    try:
        result = propose(SearchScorer(scorer, loaded, budget), spec, loaded.training_hashes(),
                         stop=out_of_time)
    except SearchError as exc:
        raise ServiceError(exc.code, str(exc), details=exc.details) from exc
    return {**result, "model_name": loaded.name, "model_version": loaded.version,
            "encoder_version": scorer.cache.version}


@router.post("/propose", response_model=ProposeResponse,
             responses={**errors(404, 409, 413, 503),
                        202: {"model": JobPublic, "description": "queued as a propose job"}})
def propose(body: ProposeRequest, request: Request, response: Response,
            principal: PredictPrincipal, settings: SettingsDep,
            idempotency_key: IdempotencyKey = None) -> Any:
    """Propose genomes to train next: ``ssi`` (the evolution's simulated surrogate injection
    from ``population``), ``neural_predictor`` (sample the grammar, keep the predicted best) or
    ``mutate`` (mutate the predicted best of ``population``). Items come best first, each with
    its predictions and ``origin`` (operators and parent hashes). Never proposes a genome of
    ``exclude``, of ``population`` or of the model's training data. The same body, seed and
    model version give the same items. A search over the job threshold is queued as a
    ``propose`` job (202; the same ``Idempotency-Key`` and body again: that job, 200; the same
    key with another body: 409 ``IDEMPOTENCY_KEY_REUSED``)."""
    from app.scoring import RequestBudget
    from ml.search.spec import ProposeSpec, planned_candidates
    from ml.search.strategies import SearchError, validate_spec

    check_propose(body, settings)
    scorer = request.app.state.scorer
    loaded = loaded_model(scorer, body.model, settings)
    spec = ProposeSpec.from_mapping(body.model_dump())
    try:
        validate_spec(spec, loaded.model.metrics)
    except SearchError as exc:
        raise ServiceError(exc.code, str(exc), details=exc.details) from exc
    planned = planned_candidates(spec)
    if planned > settings.max_propose_candidates:
        raise ServiceError("REQUEST_TOO_LARGE", f"this proposal would score {planned} genomes, "
                           f"more than the limit of {settings.max_propose_candidates}: lower "
                           "pool_size or inner_generations",
                           details={"candidates": planned,
                                    "max_propose_candidates": settings.max_propose_candidates,
                                    "fields": ["pool_size", "inner_generations"]})
    if planned > settings.propose_sync_max_candidates:
        require_broker(request)
        params = {**body.model_dump(), "model_name": loaded.name,
                  "model_version": loaded.version}
        job_id, created = queue_job(request, response, "propose", params, principal, settings,
                                    idempotency_key)
        with session_scope() as session:
            content = JobPublic.model_validate(job_public(job_store.get_job(session, job_id)))
        return JSONResponse(content.model_dump(mode="json"),
                            status_code=202 if created else 200,
                            headers=dict(response.headers))
    return run_proposal(scorer, loaded, spec, RequestBudget(0, settings.propose_deadline_s))
