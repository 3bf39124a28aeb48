"""The registry in the dashboard: versions per name with their aliases, a version's trust report
(figures, plots, the champion/challenger comparison with its per-generation trust), activate
and approve a recommended challenger (admin only, through the same load-then-move path as the
API) and two versions side by side."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from app.api.params import VersionPath
from app.schemas import MODEL_NAME
from app.services.models import activate as activate_version
from app.services.models import report_plot, version_public
from app.ui import plots
from app.ui.session import COOKIE_PATH, AdminViewer, PredictViewer, check_form
from app.ui.templating import page
from service.db import session_scope
from service.store import model_registry as registry
from service.tables import INT32_MAX

router = APIRouter(prefix=COOKIE_PATH, include_in_schema=False)

Name = Annotated[str | None, Query(min_length=1, max_length=200, pattern=MODEL_NAME)]
Version = Annotated[int, Query(ge=1, le=INT32_MAX)]
#: The trust figures a version's table shows, in this order (keys of ``training_metrics.cv``).
TRUST_KEYS = ("trust_spea2_top30", "trust_nsga2_top30", "validity_auc")


def cv_figures(version: dict[str, Any]) -> dict[str, Any]:
    return ((version.get("training_metrics") or {}).get("cv") or {})


def version_view(row: Any, active: int | None, aliases: dict[int, list[str]]
                 ) -> dict[str, Any]:
    out = version_public(row, active)
    out["aliases"] = aliases.get(row.version, [])
    out["cv"] = cv_figures(out)
    return out


def _versions(session: Any, name: str, limit: int = 200) -> list[dict[str, Any]]:
    rows, _ = registry.list_versions(session, name, limit)
    active, aliases = registry.alias_version(session, name), registry.aliases(session, name)
    return [version_view(r, active, aliases) for r in rows]


def active_models(session: Any) -> list[dict[str, Any]]:
    """The active version of every registered name (the overview's first table)."""
    out = []
    for name in registry.list_names(session):
        version = registry.alias_version(session, name)
        if version is None:
            out.append({"name": name, "version": None})
            continue
        row = registry.get_version(session, name, version)
        out.append(version_view(row, version, registry.aliases(session, name)))
    return out


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, viewer: PredictViewer, name: Name = None) -> HTMLResponse:
    name = name or request.app.state.settings.model_name
    with session_scope() as session:
        names = registry.list_names(session)
        versions = _versions(session, name)
    return page(request, "models.html", viewer, name=name, names=names, versions=versions,
                trust_keys=TRUST_KEYS)


@router.get("/models/compare", response_class=HTMLResponse)
def compare_page(request: Request, viewer: PredictViewer, a: Version, b: Version,
                 name: Name = None) -> HTMLResponse:
    """Two versions side by side: lineage, recipe and every trust-report figure, with the
    difference b − a."""
    name = name or request.app.state.settings.model_name
    with session_scope() as session:
        active, aliases = registry.alias_version(session, name), registry.aliases(session, name)
        left = version_view(registry.get_version(session, name, a), active, aliases)
        right = version_view(registry.get_version(session, name, b), active, aliases)
    keys = sorted(set(left["cv"]) | set(right["cv"]),
                  key=lambda k: (k not in TRUST_KEYS, TRUST_KEYS.index(k)
                                 if k in TRUST_KEYS else 0, k))
    rows = []
    for key in keys:
        x, y = left["cv"].get(key), right["cv"].get(key)
        diff = y - x if isinstance(x, (int, float)) and isinstance(y, (int, float)) else None
        rows.append({"key": key, "a": x, "b": y, "diff": diff})
    return page(request, "compare.html", viewer, name=name, left=left, right=right, rows=rows)


@router.get("/models/{version}", response_class=HTMLResponse)
def model_page(version: VersionPath, request: Request, viewer: PredictViewer,
               name: Name = None) -> HTMLResponse:
    name = name or request.app.state.settings.model_name
    with session_scope() as session:
        active, aliases = registry.alias_version(session, name), registry.aliases(session, name)
        model = version_view(registry.get_version(session, name, version), active, aliases)
        others = [v for v in _versions(session, name, 50) if v["version"] != version]
    comparison = model.get("comparison") or None
    trust_chart = plots.trust_per_generation(comparison) if comparison else None
    return page(request, "model.html", viewer, name=name, model=model, others=others,
                comparison=comparison, trust_chart=trust_chart, trust_keys=TRUST_KEYS)


@router.get("/models/{version}/plots/{plot}")
def model_plot(version: VersionPath, plot: str, request: Request, viewer: PredictViewer,
               name: Name = None) -> FileResponse:
    """A version's report plot (as ``GET /models/{version}/plots/{plot}``), for the cookie's
    key."""
    with session_scope() as session:
        path = report_plot(session, name or request.app.state.settings.model_name, version,
                           plot)
    return FileResponse(path, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})


@router.post("/models/{version}/activate")
def activate(version: VersionPath, request: Request, viewer: AdminViewer, name: Name = None,
             csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """Admin only: the API's activation (the bundle must load before the alias moves)."""
    check_form(request, viewer, csrf)
    name = name or request.app.state.settings.model_name
    with session_scope() as session:
        activate_version(session, request.app.state.scorer, name, version)
    return RedirectResponse(f"{COOKIE_PATH}/models/{version}?name={name}", status_code=303)


@router.post("/models/{version}/approve")
def approve(version: VersionPath, request: Request, viewer: AdminViewer, name: Name = None,
            csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """Admin only (``SURROGATE_PROMOTION_POLICY=approve``): confirm what the measured rule
    recommended. The approval is recorded on the version's comparison and the alias moves in
    one transaction, through the API's activation (the bundle loads first, or neither
    happens); 409 ``MODEL_NOT_AWAITING_APPROVAL`` for a version not waiting for it."""
    check_form(request, viewer, csrf)
    name = name or request.app.state.settings.model_name
    with session_scope() as session:
        registry.approve(session, name, version, viewer.principal.ident)
        activate_version(session, request.app.state.scorer, name, version)
    return RedirectResponse(f"{COOKIE_PATH}/models/{version}?name={name}", status_code=303)
