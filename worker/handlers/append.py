"""``append_dataset``: a new immutable dataset version from its parent and the screened records
of ``POST /evaluations`` (``ml.datasets.versions``: only new genomes are encoded); with
``retrain``, one promote-if-better training of the serving recipe is queued on it."""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.db import session_scope
from service.errors import JobFailure
from service.store import datasets as dataset_store
from service.store import jobs as job_store
from service.tables import Job
from worker.context import JobContext
from worker.handlers.failures import fail_if_disk_full
from worker.handlers.recipes import active_recipe

log = logging.getLogger(__name__)

#: The folds of a retraining's trust report when the serving version had none (the bootstrap's):
#: the version the loop is about to trust must carry the figures that say how far.
RETRAIN_CV_FOLDS = 5


def run(ctx: JobContext, params: dict[str, Any]) -> str:
    """Build the new version from the parent and the screened records (only new genomes are
    encoded); with ``retrain``, queue one promote-if-better training on it."""
    from ml.datasets.labels import classify_record
    from ml.datasets.source import SourceRow
    from ml.datasets.versions import append_dataset

    with session_scope() as session:
        ds = dataset_store.get_dataset(session, params["dataset_id"])
        parent = dataset_store.get_dataset(session, params["parent_id"])
        source, out, parent_path = Path(ds.source_path), Path(ds.path), Path(parent.path)
        metrics = tuple(parent.metrics)

    def rows() -> Iterator[SourceRow]:
        with open(source) as handle:
            for line in handle:
                record = json.loads(line)
                generation = record.get("generation")
                yield SourceRow(int(record["index"]), record["genome"],
                                classify_record(record.get("metrics"), metrics,
                                                record.get("failed")),
                                float("nan") if generation is None else float(generation), None)

    ctx.progress(0.0, f"appending to {params['parent_id'][:8]}")
    if out.exists():  # a retried attempt: the earlier one's partial directory is not a version
        shutil.rmtree(out)
    try:
        result = append_dataset(parent_path, rows(), out, source=f"evaluations:{ds.id}")
    except Exception as exc:
        fail_if_disk_full(exc, out)
        if isinstance(exc, (OSError, ValueError)):
            raise JobFailure("DATASET_INVALID", f"{type(exc).__name__}: {exc}") from exc
        raise
    with session_scope() as session:
        ctx.still_owned(session)
        dataset_store.mark(session, params["dataset_id"], "ready", result.manifest)
        message = (f"added {result.added} rows ({result.repeats} repeated measurements, "
                   f"{result.manifest['timings']['encoded_genomes']} genomes encoded)")
        retrain = _queue_retrain(session, ctx, params) if params.get("retrain") else None
        if retrain is not None:
            message += f"; queued training {retrain}"
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded", message)
    if retrain is not None and ctx.send is not None:
        try:
            task_id = ctx.send(retrain, "train")
            with session_scope() as session:
                job_store.mark_dispatched(session, retrain, task_id)
        except Exception:
            log.warning("job %s: could not dispatch the retraining %s now", ctx.job_id, retrain)
    return "succeeded"


def _queue_retrain(session: Session, ctx: JobContext, params: dict[str, Any]) -> str:
    """One promote-if-better training of the serving model's recipe on the new version (the
    reconciler dispatches it: ``dispatched_at`` is NULL). Idempotent per version."""
    settings = ctx.settings
    name = params.get("model") or settings.model_name
    recipe = active_recipe(session, name, settings)
    job = session.get(Job, ctx.job_id)
    assert job is not None  # the row this attempt still owns (fenced just before)
    train_params = {"dataset_id": params["dataset_id"], "predictor": recipe["predictor"],
                    "hyperparameters": recipe["hyperparameters"],
                    "model_name": None if name == settings.model_name else name,
                    "activate": False, "promote": "if_better",
                    "cv_folds": recipe.get("cv_folds") or RETRAIN_CV_FOLDS}
    train, _ = job_store.create_job(
        session, kind="train", params=train_params, principal=job.principal,
        request_sha256="retrain", idempotency_key=f"retrain:{params['dataset_id']}",
        dataset_id=params["dataset_id"], max_attempts=settings.max_attempts)
    dataset_store.set_retrain_job(session, params["dataset_id"], train.id)
    return train.id
