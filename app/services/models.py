"""The model registry as the API and the dashboard use it: which version a ``model`` reference
names, a version's public shape and report plots, and activation (load first, then move the
alias), which both the API's ``activate`` and the dashboard's activate/approve go through."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from service.config import Settings
from service.db import session_scope
from service.errors import ServiceError
from service.store import model_registry as registry
from service.tables import INT32_MAX, ModelVersion


def parse_model(spec: str | None, settings: Settings) -> tuple[str, str]:
    """``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS`` -> (name, version or alias); default: the
    configured name's ``active`` alias."""
    if not spec:
        return settings.model_name, "active"
    name, _, ref = spec.partition("@")
    if ref.isascii() and ref.isdigit() and not 1 <= int(ref) <= INT32_MAX:
        raise ServiceError("INVALID_REQUEST", f"a model version is between 1 and {INT32_MAX}",
                           details={"field": "model"})
    return name, ref or "active"


def resolve_version(name: str, ref: str, configured: str | None = None) -> int | None:
    """The version ``ref`` names (a number, or an alias read from the registry); None when the
    database is unreachable (serve what is loaded). A name nobody registered is 404
    ``MODEL_NOT_FOUND``, except the ``configured`` one, which before its first version has no
    active model (503 ``NO_ACTIVE_MODEL``, as the service answers before bootstrap ends)."""
    if ref.isascii() and ref.isdigit():
        return int(ref)
    try:
        with session_scope() as session:
            version = registry.alias_version(session, name, ref)
            known = version is not None or registry.name_exists(session, name)
    except ServiceError:
        return None
    if version is None:
        unknown = (not known and name != configured) or ref != "active"
        raise ServiceError("MODEL_NOT_FOUND" if unknown else "NO_ACTIVE_MODEL",
                           f"no model {name!r}" if unknown and not known else
                           f"model {name!r} has no {ref!r} version",
                           details={"name": name, "alias": ref})
    return version


def loaded_model(scorer: Any, spec: str | None, settings: Settings) -> Any:
    """The loaded model a request's ``model`` field names (default: the configured name's
    active version), through the scorer's model cache."""
    name, ref = parse_model(spec, settings)
    return scorer.models.current(name, resolve_version(name, ref, settings.model_name),
                                 active=ref == "active")


def active_version(settings: Settings) -> int | None:
    """The configured name's alias target, or None when the database is unreachable or no
    version is active."""
    try:
        with session_scope() as session:
            return registry.alias_version(session, settings.model_name)
    except ServiceError:
        return None


def report_plots(row: ModelVersion) -> dict[str, Path]:
    """PNG plots of the version's trust report (``cv_folds`` trainings), by file name."""
    folder = Path(row.source_path) / "report"
    return {p.name: p for p in folder.glob("*.png")} if folder.is_dir() else {}


def report_plot(session: Any, name: str, version: int, plot: str) -> Path:
    """One plot of a version's trust report; 404 for a version or plot that does not exist."""
    path = report_plots(registry.get_version(session, name, version)).get(plot)
    if path is None:
        raise ServiceError("NOT_FOUND", f"model v{version} has no plot {plot!r}")
    return path


def version_public(row: ModelVersion, active: int | None) -> dict[str, Any]:
    """The ``ModelVersionPublic`` shape of a version (``active``: the name's active version)."""
    plots = sorted(report_plots(row))
    return {"name": row.name, "version": row.version, "status": row.status,
            "predictor": row.predictor, "metrics": row.metrics,
            "training_metrics": row.training_metrics,
            "lineage": {"job_id": row.job_id, "dataset_id": row.dataset_id,
                        "encoder_version": row.encoder_version},
            "active": row.version == active, "created_at": row.created_at,
            "report_plots": plots, "comparison": row.comparison}


def activate(session: Any, scorer: Any, name: str, version: int) -> dict[str, Any]:
    """Move the name's ``active`` alias to ``version`` in ``session`` and serve it. The bundle
    is loaded first: a version this code cannot load is 409 ``MODEL_NOT_LOADABLE`` and the
    alias does not move. ``session`` is committed before the load (the registry read must not
    hold SQLite's write lock across it), so what the caller wrote in it before is committed even
    when the load then fails."""
    registry.get_version(session, name, version)
    # End this read before the load, which reads the registry in a session of its own: on
    # SQLite every transaction holds the write lock (BEGIN IMMEDIATE), so the load would wait
    # out the busy timeout behind this one.
    session.commit()
    try:
        loaded = scorer.models.load(name, version)
    except ServiceError as exc:
        raise ServiceError("MODEL_NOT_LOADABLE", f"{exc.message}; the active version is "
                           "unchanged", details={"name": name, "version": version}) from exc
    registry.set_alias(session, name, version)
    session.commit()
    scorer.models.install(loaded)
    return version_public(registry.get_version(session, name, version), version)
