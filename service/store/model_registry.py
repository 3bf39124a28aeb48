"""The model registry (MLflow's shape): versions per model name and a moving ``active`` alias.

Version numbers are allocated as ``max + 1`` under a row lock on the model (and retried on
IntegrityError), so two trainings finishing together get n and n+1. A version is keyed to its
training job (unique ``job_id``): registering again for the same job returns the existing
version, which is what makes a redelivered training register exactly one version.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.errors import ServiceError
from service.store import get_or_raise
from service.tables import ModelAlias, ModelVersion, RegisteredModel, utcnow

ACTIVE = "active"


def _ensure_model(session: Session, name: str) -> None:
    if session.get(RegisteredModel, name) is None:
        try:
            with session.begin_nested():
                session.add(RegisteredModel(name=name))
        except IntegrityError:
            pass  # registered concurrently


def register_version(session: Session, *, name: str, predictor: str, source_path: str,
                     encoder_version: str, metrics: list[str], training_metrics: dict[str, Any],
                     job_id: str | None = None, dataset_id: str | None = None,
                     comparison: dict[str, Any] | None = None,
                     attempts: int = 10) -> ModelVersion:
    if job_id is not None:
        existing = session.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id))
        if existing is not None:
            return existing
    _ensure_model(session, name)
    # Serialise allocation per model name on PostgreSQL (a row lock on the model, held until
    # commit); SQLite serialises writers anyway. The IntegrityError retry stays as a backstop.
    session.execute(select(RegisteredModel.name).where(RegisteredModel.name == name)
                    .with_for_update())
    for _ in range(attempts):
        latest = session.scalar(select(func.max(ModelVersion.version))
                                .where(ModelVersion.name == name)) or 0
        row = ModelVersion(name=name, version=latest + 1, status="READY", predictor=predictor,
                           source_path=source_path, job_id=job_id, dataset_id=dataset_id,
                           encoder_version=encoder_version, metrics=list(metrics),
                           training_metrics=training_metrics, comparison=comparison)
        try:
            with session.begin_nested():
                session.add(row)
            return row
        except IntegrityError:
            if job_id is not None:
                existing = session.scalar(select(ModelVersion)
                                          .where(ModelVersion.job_id == job_id))
                if existing is not None:
                    return existing
    raise RuntimeError(f"could not allocate a version of {name} after {attempts} tries")


def approve(session: Session, name: str, version: int, principal: str) -> ModelVersion:
    """Record an admin's approval on a version the measured rule recommended under the
    ``approve`` promotion policy (in this transaction; the caller moves the alias in it too).
    ``MODEL_NOT_AWAITING_APPROVAL`` for any other version: approval is not a second activate."""
    row = get_version(session, name, version)
    comparison = dict(row.comparison or {})
    if not comparison.get("awaiting_approval"):
        raise ServiceError("MODEL_NOT_AWAITING_APPROVAL", f"version {version} of model {name} "
                           "is not awaiting approval", details={"name": name, "version": version})
    comparison.update(awaiting_approval=False, promoted=True, approved_by=principal,
                      approved_at=utcnow().isoformat())
    row.comparison = comparison  # a new object: the JSON column is written
    return row


def get_version(session: Session, name: str, version: int) -> ModelVersion:
    return get_or_raise(session, ModelVersion, (name, version), "MODEL_NOT_FOUND",
                        f"no version {version} of model {name}")


def list_versions(session: Session, name: str, limit: int = 100,
                  offset: int = 0) -> tuple[list[ModelVersion], int]:
    rows = list(session.scalars(select(ModelVersion).where(ModelVersion.name == name)
                                .order_by(ModelVersion.version.desc()).offset(offset)
                                .limit(limit)))
    total = session.scalar(select(func.count()).select_from(ModelVersion)
                           .where(ModelVersion.name == name)) or 0
    return rows, int(total)


def name_exists(session: Session, name: str) -> bool:
    return session.get(RegisteredModel, name) is not None


def alias_version(session: Session, name: str, alias: str = ACTIVE) -> int | None:
    return session.scalar(select(ModelAlias.version).where(ModelAlias.name == name,
                                                           ModelAlias.alias == alias))


def set_alias(session: Session, name: str, version: int, alias: str = ACTIVE) -> None:
    """Point ``alias`` at ``version`` in this transaction (last writer wins)."""
    get_version(session, name, version)
    for _ in range(3):
        moved = session.execute(update(ModelAlias).where(
            ModelAlias.name == name, ModelAlias.alias == alias).values(
            version=version, updated_at=utcnow())).rowcount
        if moved:
            return
        try:
            with session.begin_nested():
                session.add(ModelAlias(name=name, alias=alias, version=version))
            return
        except IntegrityError:
            continue  # created concurrently: update it on the next pass
    raise RuntimeError(f"could not move alias {alias} of {name}")


def list_names(session: Session, limit: int = 200) -> list[str]:
    """Registered model names, alphabetically (the dashboard's overview)."""
    return list(session.scalars(select(RegisteredModel.name).order_by(RegisteredModel.name)
                                .limit(limit)))


def aliases(session: Session, name: str) -> dict[int, list[str]]:
    """Every alias of a name, by the version it points at."""
    out: dict[int, list[str]] = {}
    for alias, version in session.execute(select(ModelAlias.alias, ModelAlias.version)
                                          .where(ModelAlias.name == name)
                                          .order_by(ModelAlias.alias)):
        out.setdefault(int(version), []).append(str(alias))
    return out
