"""The registry: ``GET /models``, ``GET /models/{version}``, ``POST /models/{version}/activate``,
each for one model name (``?name=``; default: the configured one)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from app.api.deps import AdminPrincipal, PredictPrincipal, SessionDep, SettingsDep
from app.api.routes import errors
from app.schemas import ModelsPublic, ModelVersionPublic
from service.errors import ServiceError
from service.store import model_registry as registry
from service.tables import INT32_MAX, ModelVersion

router = APIRouter(tags=["models"])


def report_plots(row: ModelVersion) -> dict[str, Path]:
    """PNG plots of the version's trust report (``cv_folds`` trainings), by file name."""
    folder = Path(row.source_path) / "report"
    return {p.name: p for p in folder.glob("*.png")} if folder.is_dir() else {}


#: Versions and offsets are 32-bit INTEGER columns/values in SQL: a larger number is a client
#: error (422), not a database DataError (a 500).
Version = Annotated[int, PathParam(ge=1, le=INT32_MAX)]
Name = Annotated[str | None, Query(min_length=1, max_length=200,
                                   pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                   description="model name (default: the configured one)")]


def version_public(row: ModelVersion, active: int | None) -> dict[str, Any]:
    plots = sorted(report_plots(row))
    return {"name": row.name, "version": row.version, "status": row.status,
            "predictor": row.predictor, "metrics": row.metrics,
            "training_metrics": row.training_metrics,
            "lineage": {"job_id": row.job_id, "dataset_id": row.dataset_id,
                        "encoder_version": row.encoder_version},
            "active": row.version == active, "created_at": row.created_at,
            "report_plots": plots, "comparison": row.comparison}


@router.get("/models", response_model=ModelsPublic, responses=errors())
def list_models(session: SessionDep, settings: SettingsDep, _: PredictPrincipal,
                name: Name = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0) -> dict[str, Any]:
    """Versions of one model name, newest first, with which one is active."""
    name = name or settings.model_name
    rows, total = registry.list_versions(session, name, limit, offset)
    active = registry.alias_version(session, name)
    return {"data": [version_public(r, active) for r in rows], "count": total,
            "active_version": active, "name": name}


@router.get("/models/{version}", response_model=ModelVersionPublic, responses=errors(404))
def get_model(version: Version, session: SessionDep, settings: SettingsDep,
              _: PredictPrincipal, name: Name = None) -> dict[str, Any]:
    """Metrics, lineage (training job, dataset, encoder version) and, for a promote-if-better
    training, the champion/challenger ``comparison`` of one version."""
    name = name or settings.model_name
    row = registry.get_version(session, name, version)
    return version_public(row, registry.alias_version(session, name))


@router.post("/models/{version}/activate", response_model=ModelVersionPublic,
             responses=errors(404, 409))
def activate_model(version: Version, request: Request, session: SessionDep,
                   settings: SettingsDep, _: AdminPrincipal, name: Name = None
                   ) -> dict[str, Any]:
    """Move the name's ``active`` alias to this version (one transaction; ``/predict`` switches
    on its next request). The bundle is loaded first: a version this code cannot load is
    refused with 409 ``MODEL_NOT_LOADABLE`` and the alias does not move."""
    name = name or settings.model_name
    registry.get_version(session, name, version)
    # End this read before the load, which reads the registry in a session of its own: on
    # SQLite every transaction holds the write lock (BEGIN IMMEDIATE), so the load waited out
    # the busy timeout behind this one.
    session.commit()
    scorer = request.app.state.scorer
    try:
        loaded = scorer.models.load(name, version)
    except ServiceError as exc:
        raise ServiceError("MODEL_NOT_LOADABLE", f"{exc.message}; the active version is "
                           "unchanged", details={"name": name, "version": version}) from exc
    registry.set_alias(session, name, version)
    session.commit()
    scorer.models.install(loaded)
    row = registry.get_version(session, name, version)
    return version_public(row, version)


@router.get("/models/{version}/plots/{plot}", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}, **errors(404)})
def get_model_plot(version: Version, plot: str, session: SessionDep, settings: SettingsDep,
                   _: PredictPrincipal, name: Name = None) -> FileResponse:
    """One plot of the version's trust report (names listed in ``report_plots``)."""
    row = registry.get_version(session, name or settings.model_name, version)
    path = report_plots(row).get(plot)
    if path is None:
        raise ServiceError("NOT_FOUND", f"model v{version} has no plot {plot!r}")
    return FileResponse(path, media_type="image/png")
