"""The registry: ``GET /models``, ``GET /models/{version}``, ``POST /models/{version}/activate``,
each for one model name (``?name=``; default: the configured one)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse

from app.api.deps import AdminPrincipal, PredictPrincipal, SessionDep, SettingsDep
from app.api.params import VersionPath
from app.api.routes import errors
from app.schemas import MODEL_NAME, ModelsPublic, ModelVersionPublic
from app.services.models import activate, report_plot, version_public
from service.store import model_registry as registry
from service.tables import INT32_MAX

router = APIRouter(tags=["models"])


Name = Annotated[str | None, Query(min_length=1, max_length=200, pattern=MODEL_NAME,
                                   description="model name (default: the configured one)")]


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
def get_model(version: VersionPath, session: SessionDep, settings: SettingsDep,
              _: PredictPrincipal, name: Name = None) -> dict[str, Any]:
    """Metrics, lineage (training job, dataset, encoder version) and, for a promote-if-better
    training, the champion/challenger ``comparison`` of one version."""
    name = name or settings.model_name
    row = registry.get_version(session, name, version)
    return version_public(row, registry.alias_version(session, name))


@router.post("/models/{version}/activate", response_model=ModelVersionPublic,
             responses=errors(404, 409))
def activate_model(version: VersionPath, request: Request, session: SessionDep,
                   settings: SettingsDep, _: AdminPrincipal, name: Name = None
                   ) -> dict[str, Any]:
    """Move the name's ``active`` alias to this version (one transaction; ``/predict`` switches
    on its next request). The bundle is loaded first: a version this code cannot load is
    refused with 409 ``MODEL_NOT_LOADABLE`` and the alias does not move."""
    return activate(session, request.app.state.scorer, name or settings.model_name, version)


@router.get("/models/{version}/plots/{plot}", response_class=FileResponse,
            responses={200: {"content": {"image/png": {}}}, **errors(404)})
def get_model_plot(version: VersionPath, plot: str, session: SessionDep, settings: SettingsDep,
                   _: PredictPrincipal, name: Name = None) -> FileResponse:
    """One plot of the version's trust report (names listed in ``report_plots``)."""
    return FileResponse(report_plot(session, name or settings.model_name, version, plot),
                        media_type="image/png")
