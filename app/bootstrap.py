"""First start of the embedded service: migrate, create the admin key, and (when no model is
active) build the dataset from the configured CSV and train + activate the default model.

Everything here is idempotent, so a restart part-way through continues instead of starting
over: the bootstrap jobs carry fixed idempotency keys, and jobs left ``running`` by a previous
process are re-sent at once (in embedded mode nothing else can be running them).
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.core.db import session_scope
from app.core.migrate import upgrade
from app.store import datasets as dataset_store
from app.store import jobs as job_store
from app.store import keys as key_store
from app.store import registry

log = logging.getLogger(__name__)

BOOTSTRAP_PRINCIPAL = "system:bootstrap"


def migrate(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)


def ensure_admin_key(settings: Settings) -> str | None:
    """Create an admin key on first start and write it to ``admin.key`` (mode 600).
    Returns the plaintext only when it was just created (print it once)."""
    path = settings.admin_key_file
    if path.exists():
        return None
    with session_scope() as session:
        _, plaintext = key_store.create_key(session, "admin (created by serve)", ["admin"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(plaintext + "\n")
    return plaintext


def bootstrap_model(settings: Settings, send: Any) -> str:
    """Queue the dataset build and the default training if no model is active; returns what
    happened in words. ``send(job_id, kind)`` dispatches (the thread executor runs jobs in
    order, so the training starts after the build)."""
    from worker.jobs import reconcile

    reconcile(send, settings, redispatch_after_s=0, lease_s=0)
    with session_scope() as session:
        if registry.alias_version(session, settings.model_name) is not None:
            return "a model is active"
    csv = settings.seed_csv
    if csv is None or not Path(csv).is_file():
        return ("no model is active and no seed CSV was found: pass --seed-csv CSV (a CSV of "
                "evaluated genomes with a 'genome' column), or POST /datasets then "
                "POST /jobs/train")
    from ml.datasets.labels import DEFAULT_METRICS

    with session_scope() as session:
        dataset_id = str(uuid.uuid4())
        build, created = job_store.create_job(
            session, kind="build_dataset", params={"dataset_id": dataset_id},
            principal=BOOTSTRAP_PRINCIPAL, request_sha256="bootstrap",
            idempotency_key=f"bootstrap-dataset:{Path(csv).resolve()}",
            max_attempts=settings.max_attempts)
        if created:
            dataset_store.create_dataset(
                session, dataset_id=dataset_id, name=Path(csv).name,
                source_path=str(Path(csv).resolve()),
                path=str((settings.datasets_dir / dataset_id / "graphs").resolve()),
                metrics=list(DEFAULT_METRICS))
            dataset_store.attach_job(session, dataset_id, build.id)
            build.dataset_id = dataset_id
        dataset_id = build.params["dataset_id"]
        train, train_created = job_store.create_job(
            session, kind="train", params={"dataset_id": dataset_id,
                                           "predictor": settings.default_predictor,
                                           "hyperparameters": {}, "model_name": None,
                                           "activate": True, "cv_folds": 5},
            principal=BOOTSTRAP_PRINCIPAL, request_sha256="bootstrap",
            idempotency_key=f"bootstrap-train:{dataset_id}", dataset_id=dataset_id,
            max_attempts=settings.max_attempts)
        pending = [(j.id, j.kind) for j, new in ((build, created), (train, train_created))
                   if new]
    for job_id, kind in pending:
        task_id = send(job_id, kind)
        with session_scope() as session:
            job_store.mark_dispatched(session, job_id, task_id)
    return (f"no model is active: building {Path(csv).name} and training the default "
            f"predictor ({settings.default_predictor}); /predict answers when it finishes")
