"""``GET /healthz`` (liveness), ``GET /readyz`` (database, broker, active model) and
``GET /metrics`` (Prometheus)."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.schemas import Health, Readiness
from app.services.models import active_version
from service.db import session_scope
from service.errors import ServiceError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


def _database_ok() -> bool:
    try:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(request: Request) -> JSONResponse:
    """200 only when the database answers, the broker answers (Celery mode) and a model
    serves: the active version, or (its bundle cannot be loaded) the newest older version that
    loads, stated in ``model`` (``fallback: true`` and the ``reason``); 503 with the same body
    otherwise."""
    settings = request.app.state.settings
    scorer = request.app.state.scorer
    database = _database_ok()
    broker = request.app.state.dispatcher.ping() if settings.executor == "celery" else None
    wanted = active_version(settings) if database else None
    serving: int | None = None
    if wanted is not None:
        try:
            serving = scorer.models.current(settings.model_name, wanted).version
        except ServiceError:
            serving = None
    loaded = serving is not None and serving == wanted
    fallback = scorer.models.fallback(settings.model_name) if serving not in (None, wanted) \
        else None
    ready = database and broker is not False and serving is not None
    pool = scorer.pool
    body = {"ready": ready, "database": database, "broker": broker, "active_model": wanted,
            "model_loaded": loaded,
            "model": {"active": wanted, "serving": serving, "fallback": fallback is not None,
                      "reason": None if fallback is None else fallback["reason"]},
            "encoder_pool": None if pool is None else {
                "processes": pool.processes, "ready": pool.ready(), "restarts": pool.restarts,
                "encoded": pool.encoded, "warm_start": pool.warm_start}}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus. ``SURROGATE_METRICS_ACCESS``: ``public``; ``admin`` (an admin key in
    ``X-API-Key`` or ``Authorization: Bearer``, as Prometheus' ``authorization`` sends it); or
    ``off`` (404)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from app.api.deps import authenticate

    access = request.app.state.settings.metrics_access
    if access == "off":
        raise ServiceError("NOT_FOUND", "metrics are not served on this port")
    if access == "admin":
        bearer = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (
            bearer[7:].strip() if bearer.lower().startswith("bearer ") else None)
        if not authenticate(request, key).is_admin:
            raise ServiceError("PERMISSION_DENIED", "metrics need an admin key")

    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)
