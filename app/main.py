"""The FastAPI application: routers, the error envelope, limits, metrics and process state.

``create_app(settings)`` builds an app bound to one settings object; ``app`` (module level) is
what ``uvicorn app.main:app`` serves in production. Process state on ``app.state``: the scorer
(active model + encoding cache), the job dispatcher (Celery's publisher, or the embedded
thread executor its composer passes in), the API
key cache and the Prometheus registry.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app import docs as api_docs
from app import ui
from app.api import links as api_links
from app.api.deps import KeyCache, WindowCounter
from app.api.routes import datasets, evaluations, health, jobs, keys, models, predict, propose
from app.limits import BodySizeLimit, ConcurrencyLimit
from app.scoring import Scorer, close_pools
from app.telemetry import REQUEST_ID, Metrics
from service.config import Settings, get_settings
from service.db import disk_full_error, is_disk_full
from service.errors import ServiceError
from service.logs import is_probe

log = logging.getLogger("app")
access_log = logging.getLogger("app.access")

_HTTP_CODES = {404: "NOT_FOUND", 405: "INVALID_REQUEST", 413: "BODY_TOO_LARGE",
               415: "UNSUPPORTED_MEDIA_TYPE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
#: Routes whose work grows with the request (encoding, featurising, ranking): they share the
#: ``heavy_concurrency`` slots.
HEAVY_ROUTES = ("/predict", "/genomes/encode", "/propose", "/evaluations", *ui.HEAVY_PATHS)



def _prime_compiled_loops() -> None:
    """The row models' compiled loops, compiled or loaded from numba's cache before the first
    request needs them (ml.models.compiled.prime)."""
    from ml.models import compiled

    compiled.prime()


def _route_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def _envelope(status: int, code: str, message: str, details: Any = None,
              headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}},
                        status_code=status, headers=headers)


def _json_safe_errors(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors[:50]:
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))})
    return out


def _allowed_methods(request: Request) -> str:
    """The documented methods at this path (the OpenAPI schema is built once and cached).
    Starlette's own 405 lists only the first route whose path matches, and ``GET /datasets``
    and ``POST /datasets`` are two routes."""
    path = request.scope.get("path", "")
    paths = request.app.openapi().get("paths", {})
    if path in paths:  # OpenAPI: a concrete path wins over templates (/jobs/train, /jobs/{id})
        return ", ".join(sorted(m.upper() for m in paths[path]))
    methods: set[str] = set()
    for template, operations in paths.items():
        if compile_path(template)[0].match(path):
            methods |= {m.upper() for m in operations}
    if ui.is_ui(request):  # the dashboard's routes are not in the schema
        methods |= ui.allowed_methods(path)
    return ", ".join(sorted(methods))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        if ui.is_ui(request):
            return ui.service_error_page(request, exc)
        return _envelope(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if ui.is_ui(request):
            return ui.service_error_page(request, ServiceError(
                "INVALID_REQUEST", "the address or form has a value this page cannot take"))
        return _envelope(422, "INVALID_REQUEST", "the request does not match the schema",
                         _json_safe_errors(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "INVALID_REQUEST")
        if ui.is_ui(request) and exc.status_code == 404:
            return ui.service_error_page(request, ServiceError(code, "no such page"))
        # A wrong method is 405 with ``Allow`` on the dashboard too (its error pages take only
        # the registered codes' statuses, which made it a 422).
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        # Keep the exception's headers (405 must carry ``Allow``, RFC 9110 §15.5.6).
        return _envelope(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(DataError)
    async def database_rejected_value(_: Request, exc: DataError) -> JSONResponse:
        # SQLSTATE class 22: a value from the request the database cannot take (a NUL
        # character, a number out of range). Not an outage: no 503, no retry advice.
        log.info("database rejected a value: %s", type(exc.orig).__name__)
        return _envelope(422, "INVALID_REQUEST", "a value in the request cannot be stored or "
                         "compared (a NUL character or a number out of range?)")

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(_: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("database connection pool exhausted")
        return _envelope(503, "DATABASE_UNAVAILABLE", "the database connection pool is "
                         "exhausted; retry shortly", headers={"Retry-After": "1"})

    @app.exception_handler(OperationalError)
    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if is_disk_full(exc):
            log.warning("database disk full: %s", type(exc).__name__)
            return _envelope(507, "DISK_FULL", disk_full_error().message)
        if isinstance(exc, OperationalError) or exc.connection_invalidated:
            log.warning("database unreachable: %s", type(exc).__name__)
            return _envelope(503, "DATABASE_UNAVAILABLE", "the database is unreachable")
        log.error("database error: %s", type(exc).__name__)  # e.g. an integrity bug: ours
        return _envelope(500, "INTERNAL_ERROR", "an unexpected error occurred")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        if is_disk_full(exc):  # ENOSPC from a file write: a condition, not a bug
            log.warning("disk full: %s", type(exc).__name__)
            return _envelope(507, "DISK_FULL", disk_full_error().message)
        log.exception("unhandled error")
        return _envelope(500, "INTERNAL_ERROR", "an unexpected error occurred")


def default_dispatcher(settings: Settings) -> Any:
    """Celery's publisher: the only executor this adapter can build by itself. The embedded
    executor runs jobs in this process, so whoever composes that process passes it in
    (``nas-surrogate serve``: :func:`nas_surrogate.embedded.embedded_app`)."""
    if settings.executor != "celery":
        raise ValueError("SURROGATE_EXECUTOR=thread runs jobs inside this process: start it "
                         "with `nas-surrogate serve`, or set SURROGATE_EXECUTOR=celery for "
                         "`uvicorn app.main:app`")
    from service.queue import CeleryDispatcher
    return CeleryDispatcher(settings)


def create_app(settings: Settings | None = None, dispatcher: Any = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.warm_up:
            from ml.inference.pool import warm_process
            threading.Thread(target=warm_process, daemon=True, name="warm-up").start()
            threading.Thread(target=_prime_compiled_loops, daemon=True,
                             name="warm-up-compiled").start()
            app.state.scorer.start_pool()
        start = getattr(app.state.dispatcher, "start_reconciler", None)
        if start is not None and app.state.start_reconciler:
            start()
        yield
        close_pools()  # every process this one started ends with it
        shutdown = getattr(app.state.dispatcher, "shutdown", None)
        if shutdown is not None:
            shutdown()

    docs = bool(settings.docs_enabled)
    app = FastAPI(title="nas-surrogate", version="0.1.0", lifespan=lifespan,
                  generate_unique_id_function=_route_id,
                  docs_url=None, redoc_url=None,  # app.docs serves them offline
                  openapi_url="/openapi.json" if docs else None,
                  description="Predicts how well an evolved object-detection architecture will "
                              "perform before it is trained. Send `X-API-Key`.")
    if dispatcher is None:
        dispatcher = default_dispatcher(settings)
    if docs:
        api_docs.install(app)
    app.state.settings = settings
    app.state.dispatcher = dispatcher
    app.state.start_reconciler = True
    app.state.scorer = Scorer(settings)
    app.state.key_cache = KeyCache()
    app.state.auth_failures = WindowCounter()
    app.state.key_rates = WindowCounter()
    app.state.metrics = Metrics()
    for router in (predict.router, propose.router, jobs.router, datasets.router,
                   evaluations.router, models.router, keys.router, health.router):
        app.include_router(router)
    api_links.install(app)
    if settings.ui_enabled:
        ui.install(app)
    install_handlers(app)
    app.add_middleware(ConcurrencyLimit, paths=HEAVY_ROUTES, limit=settings.heavy_concurrency,
                       queue=settings.heavy_queue, timeout_s=settings.heavy_queue_timeout_s)

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Any:
        """Latency metric, an ``X-Request-ID`` (the client's, or a new one) echoed back, and
        one JSON access line joining API and worker logs. Headers are never logged (keys)."""
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id", "")[:64] or uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        try:
            response = await call_next(request)
        finally:
            REQUEST_ID.reset(token)
        elapsed = time.perf_counter() - started
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        request.app.state.metrics.latency.labels(request.method, path, response.status_code) \
            .observe(elapsed)
        response.headers["X-Request-ID"] = request_id
        if is_probe(request.url.path) and not settings.access_log_probes:
            return response
        access_log.info(json.dumps({"request_id": request_id, "method": request.method,
                                    "route": path, "status": response.status_code,
                                    "ms": round(elapsed * 1000, 1)}))
        return response

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.trusted_proxies.strip():  # outermost: every limit sees the real client
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app


def __getattr__(name: str) -> Any:
    """``app.main:app`` is created on first access (importing the module stays cheap)."""
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)
