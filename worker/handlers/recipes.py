"""A model's recipe (its predictor and hyper-parameters) as the training and append handlers
read it: what the serving version was trained with, and an ``embedding`` hyper-parameter (the
API names a ``pretrain`` job) resolved to that job's embedder file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.config import Settings
from service.db import session_scope
from service.errors import JobFailure
from service.store import model_registry as registry
from service.tables import Job


def active_recipe(session: Session, name: str, settings: Settings) -> dict[str, Any]:
    """The predictor and hyper-parameters the active version of ``name`` was trained with (the
    configured default when nothing is active)."""
    version = registry.alias_version(session, name)
    if version is None:
        return {"predictor": settings.default_predictor, "hyperparameters": {}}
    row = registry.get_version(session, name, version)
    job = session.get(Job, row.job_id) if row.job_id else None
    params = dict(job.params or {}) if job is not None else {}
    hyper = dict(params.get("hyperparameters") or {})
    return {"predictor": row.predictor, "hyperparameters": hyper, "version": version,
            "cv_folds": int(params.get("cv_folds") or 0)}


def embedder_path(job_id: str) -> str:
    """The embedder file of a succeeded ``pretrain`` job (``EMBEDDING_NOT_FOUND`` otherwise)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        result = dict(job.result or {}) if job is not None else {}
        ok = job is not None and job.kind == "pretrain" and job.status == "succeeded"
    path = result.get("path")
    if not ok or not path or not Path(path).is_file():
        raise JobFailure("EMBEDDING_NOT_FOUND", f"no embedder from a succeeded pretrain job "
                         f"{job_id!r}")
    return str(path)


def resolved(hyperparameters: dict[str, Any] | None) -> dict[str, Any]:
    """A recipe's hyper-parameters as the model reads them: an ``embedding`` (the API names a
    ``pretrain`` job) becomes that job's embedder file."""
    out = dict(hyperparameters or {})
    if out.get("embedding"):
        out["embedding"] = embedder_path(str(out["embedding"]))
    return out
