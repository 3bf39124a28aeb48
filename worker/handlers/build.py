"""``build_dataset``: encode a registered CSV into the dataset's shards (``ml.datasets.build``)
and mark the dataset ready with its manifest; a failed build marks the dataset failed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from service.db import session_scope
from service.errors import JobFailure
from service.store import datasets as dataset_store
from service.store import jobs as job_store
from service.tables import Job
from worker.context import Cancelled, JobContext, LeaseLost
from worker.handlers.failures import fail_if_disk_full
from worker.processes import children_allowed


def run(ctx: JobContext, params: dict[str, Any]) -> str:
    from ml.datasets.build import BuildCancelled, BuildOptions, build_dataset

    with session_scope() as session:
        ds = dataset_store.get_dataset(session, params["dataset_id"])
        source, out, metrics = Path(ds.source_path), Path(ds.path), tuple(ds.metrics)
    ctx.progress(0.0, f"building {source.name}")
    opts = BuildOptions(source=source, out=out, metrics=metrics,
                        workers=max(1, ctx.settings.dataset_workers), progress=False,
                        on_progress=lambda done, total: ctx.progress(
                            done / total if total else 0.0, f"{done}/{total} rows encoded"),
                        should_stop=ctx.should_stop)
    try:
        with ctx.cancellation(BuildCancelled), children_allowed():
            manifest = build_dataset(opts)
    except (Cancelled, LeaseLost):
        raise
    except Exception as exc:
        fail_if_disk_full(exc, out)
        if isinstance(exc, (OSError, ValueError, KeyError)):
            raise JobFailure("DATASET_INVALID", f"{source.name}: {exc}") from exc
        raise
    with session_scope() as session:
        ctx.still_owned(session)
        dataset_store.mark(session, params["dataset_id"], "ready", manifest)
        counts = manifest.get("counts", {})
        message = f"built {counts.get('rows', 0)} rows ({counts.get('ok', 0)} ok)"
        job_store.finish(session, ctx.job_id, ctx.attempt, "succeeded", message)
    return "succeeded"


def on_failure(session: Session, job: Job) -> None:
    """The dataset this build was making will not be: clients polling it see ``failed``."""
    if job.dataset_id:
        dataset_store.mark(session, job.dataset_id, "failed")
