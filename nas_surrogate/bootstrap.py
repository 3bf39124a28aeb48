"""First start of the embedded service: migrate, create the admin key, and (when no model is
active, or the active one was trained by a version of this code that cannot load it any more)
build the dataset from the configured CSV and train + activate the default model.

Everything here is idempotent, so a restart part-way through continues instead of starting
over: the bootstrap jobs carry fixed idempotency keys, and jobs left ``running`` by a previous
process are re-sent at once (in embedded mode nothing else can be running them).
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from service.config import Settings
from service.db import session_scope
from service.store import datasets as dataset_store
from service.store import jobs as job_store
from service.store import keys as key_store
from service.store import model_registry as registry

log = logging.getLogger(__name__)

BOOTSTRAP_PRINCIPAL = "system:bootstrap"


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


def _active_model_problem(settings: Settings) -> tuple[int | None, str | None]:
    """(active version, why this code cannot serve it); (None, None) when none is active."""
    from ml.train import bundle_problem

    with session_scope() as session:
        version = registry.alias_version(session, settings.model_name)
        if version is None:
            return None, None
        path = registry.get_version(session, settings.model_name, version).source_path
    return version, bundle_problem(path)


def _load_problem(settings: Settings, version: int) -> str | None:
    """Why the active bundle does not load (a corrupt or truncated file), or None. Its
    bundle.json can be fine while its weights are not, so this loads it once."""
    from ml.train import load_bundle

    with session_scope() as session:
        path = registry.get_version(session, settings.model_name, version).source_path
    try:
        load_bundle(path)
    except Exception as exc:
        return type(exc).__name__
    return None


def _path_tag(path: str | Path) -> str:
    """A short fixed-length tag of a resolved path (idempotency keys hold 200 characters)."""
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


def bootstrap_model(settings: Settings, send: Any) -> str:
    """Queue the dataset build and the default training if no model is active, or if the active
    one cannot be loaded by this code (an upgrade changed its predictor or encoder version);
    returns what happened in words. ``send(job_id, kind)`` dispatches (the thread executor runs
    jobs in order, so the training starts after the build). The jobs' idempotency keys name
    the encoder and predictor versions: one build and one training per upgrade."""
    from ml.encoding.encoder import ENCODER_VERSION
    from ml.models.registry import model_class
    from worker.reconciler import reconcile

    reconcile(send, settings, redispatch_after_s=0, lease_s=0)
    version, problem = _active_model_problem(settings)
    if version is not None and problem is None:
        unloadable = _load_problem(settings, version)
        if unloadable is None:
            return "a model is active"
        log.error("model v%d is active but cannot be loaded (%s)", version, unloadable)
        return (f"model v{version} is active but cannot be loaded ({unloadable}): the newest "
                "older version that loads serves instead (GET /readyz says which); train or "
                "activate another version")
    reason = ("no model is active" if version is None else
              f"model v{version} cannot be served by this version ({problem})")
    if version is not None:
        log.warning("%s: training the default predictor again", reason)
    csv = settings.seed_csv
    if csv is None or not Path(csv).is_file():
        return (f"{reason} and no seed CSV was found: pass --seed-csv CSV (a CSV of "
                "evaluated genomes with a 'genome' column), or POST /datasets then "
                "POST /jobs/train")
    from ml.datasets.labels import DEFAULT_METRICS

    predictor = model_class(settings.default_predictor)
    predictor_tag = f"{settings.default_predictor}@{getattr(predictor, 'version', '?')}"

    with session_scope() as session:
        dataset_id = str(uuid.uuid4())
        build, created = job_store.create_job(
            session, kind="build_dataset", params={"dataset_id": dataset_id},
            principal=BOOTSTRAP_PRINCIPAL, request_sha256="bootstrap",
            idempotency_key=f"bootstrap-dataset:{_path_tag(csv)}:{ENCODER_VERSION}",
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
            idempotency_key=f"bootstrap-train:{dataset_id}:{predictor_tag}",
            dataset_id=dataset_id,
            max_attempts=settings.max_attempts)
        pending = [(j.id, j.kind) for j, new in ((build, created), (train, train_created))
                   if new]
    for job_id, kind in pending:
        task_id = send(job_id, kind)
        with session_scope() as session:
            job_store.mark_dispatched(session, job_id, task_id)
    return (f"{reason}: building {Path(csv).name} and training the default "
            f"predictor ({settings.default_predictor}); /predict answers when it finishes")
