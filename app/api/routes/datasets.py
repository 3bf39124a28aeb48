"""``POST /datasets`` (a CSV upload or a server-side path → a dataset-build job),
``GET /datasets``, ``GET /datasets/{id}``."""
from __future__ import annotations

import csv
import shutil
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from app.api.deps import SessionDep, SettingsDep, TrainPrincipal
from app.api.routes import errors
from app.api.submission import IdempotencyKey, answer_submission, request_digest, require_broker
from app.schemas import DatasetPublic, DatasetsPublic
from app.services.datasets import dataset_view
from service.config import Settings
from service.db import disk_full_error, is_disk_full, session_scope
from service.errors import ServiceError
from service.store import datasets as dataset_store
from service.store import jobs as job_store
from service.tables import INT32_MAX

router = APIRouter(tags=["datasets"])


def allowed_path(path: str, settings: Settings) -> Path:
    """A server-side CSV must lie under one of the explicit ``dataset_roots``, and never under
    ``data_dir`` (database, bundles) or at the admin key file, even when a root contains them.
    Refusals name no server path, root or file content."""
    try:
        resolved = Path(path).expanduser().resolve()
    except (ValueError, OSError, RuntimeError) as exc:  # a NUL byte, a loop, no home dir
        raise ServiceError("INVALID_REQUEST", "not a usable path") from exc
    protected = [settings.data_dir.resolve(), settings.admin_key_file.resolve()]
    roots = [r.resolve() for r in settings.dataset_roots]
    if any(resolved.is_relative_to(p) for p in protected) or \
            not any(resolved.is_relative_to(root) for root in roots):
        raise ServiceError("PATH_NOT_ALLOWED", "the path is not under an allowed dataset root "
                           "(SURROGATE_DATASET_ROOTS); upload the file instead")
    if not resolved.is_file():
        raise ServiceError("INVALID_REQUEST", "the path is not a readable file")
    return resolved


def check_csv(path: Path, metrics: tuple[str, ...]) -> None:
    """The CSV has a ``genome`` column and the requested metric columns. The message names only
    what the request asked for, never the file's header or content."""
    from ml.datasets.source import ColumnsError, check_metrics
    try:
        check_metrics(path, metrics)
    except ColumnsError as exc:
        what = ("has no 'genome' column" if exc.missing == ["genome"] else
                f"lacks the requested metric column(s) {exc.missing}")
        raise ServiceError("INVALID_REQUEST", f"the CSV {what}",
                           details={"missing": exc.missing}) from exc
    except (ValueError, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ServiceError("INVALID_REQUEST", "not a readable UTF-8 CSV") from exc


@router.post("/datasets", response_model=DatasetPublic, status_code=202,
             responses=errors(409))
def create_dataset(request: Request, response: Response, principal: TrainPrincipal,
                   settings: SettingsDep, idempotency_key: IdempotencyKey = None,
                   file: Annotated[UploadFile | None, File(description="a CSV with a "
                                                           "'genome' column")] = None,
                   path: Annotated[str | None, Form(max_length=4096)] = None,
                   name: Annotated[str | None, Form(max_length=200)] = None,
                   metrics: Annotated[str | None, Form(max_length=2000, description="comma-"
                                                       "separated metric columns")] = None
                   ) -> dict[str, Any]:
    """Build a graph dataset from a CSV of evaluated genomes: upload it as ``file`` or name a
    server-side ``path``. Returns the dataset with its build job (poll ``GET /datasets/{id}``)."""
    from ml.datasets.labels import DEFAULT_METRICS
    from ml.datasets.source import file_digest

    if (file is None) == (path is None):
        raise ServiceError("INVALID_REQUEST", "send exactly one of 'file' or 'path'")
    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics \
        else tuple(DEFAULT_METRICS)
    require_broker(request)
    dataset_id = str(uuid.uuid4())
    folder = settings.datasets_dir / dataset_id
    try:
        if file is not None:
            source = save_upload(file, folder)
            label = name or file.filename or "upload"
        else:
            source = allowed_path(path or "", settings)
            label = name or source.name
        check_csv(source, chosen)
        digest = request_digest({"kind": "dataset", "metrics": chosen, "name": label, "source":
                                 str(source) if file is None else file_digest(source)[0]})
        job_id, ds_id, created = _store(principal.ident, settings, digest, idempotency_key,
                                        dataset_id, label, source, folder, chosen)
    except BaseException:
        # A refused or failed upload leaves nothing behind (not even a partial source.csv).
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if not created:
        shutil.rmtree(folder, ignore_errors=True)
    answer_submission(request, response, created, job_id, "build_dataset", f"/datasets/{ds_id}")
    with session_scope() as session:
        return dataset_view(session, dataset_store.get_dataset(session, ds_id), principal)


def save_upload(file: UploadFile, folder: Path) -> Path:
    """The upload as ``folder/source.csv``; a full disk is 507 ``DISK_FULL`` (the caller removes
    the folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source.csv"
    try:
        with source.open("wb") as out:
            shutil.copyfileobj(file.file, out, 1 << 20)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error() from exc
        raise
    return source


def _store(principal: str, settings: Settings, digest: str, idempotency_key: str | None,
           dataset_id: str, label: str, source: Path, folder: Path, chosen: tuple[str, ...]
           ) -> tuple[str, str, bool]:
    """The build job and the dataset row in one transaction, or the job an earlier request
    with the same ``idempotency_key`` created: (job id, dataset id, created)."""
    with session_scope() as session:
        job, created = job_store.create_job(
            session, kind="build_dataset", params={"dataset_id": dataset_id},
            principal=principal, request_sha256=digest, idempotency_key=idempotency_key,
            max_attempts=settings.max_attempts, max_open=settings.max_jobs_per_key)
        if created:
            dataset_store.create_dataset(session, dataset_id=dataset_id, name=label,
                                         source_path=str(source), path=str(folder / "graphs"),
                                         metrics=list(chosen))
            dataset_store.attach_job(session, dataset_id, job.id)
            job.dataset_id = dataset_id
        return job.id, job.params["dataset_id"], created


@router.get("/datasets", response_model=DatasetsPublic, responses=errors())
def list_datasets(session: SessionDep, principal: TrainPrincipal, limit: int = 50,
                  offset: Annotated[int, Query(le=INT32_MAX)] = 0) -> dict[str, Any]:
    # (limit and a negative offset are clamped below; a huge offset would reach SQL as a
    # DataError, i.e. a misleading 503)
    rows, total = dataset_store.list_datasets(session, max(1, min(limit, 500)), max(0, offset))
    return {"data": [dataset_view(session, r, principal) for r in rows], "count": total}


@router.get("/datasets/{dataset_id}", response_model=DatasetPublic, responses=errors(404))
def get_dataset(dataset_id: str, session: SessionDep, principal: TrainPrincipal
                ) -> dict[str, Any]:
    """A version with its lineage and counts; its build job and retraining only where the key
    may see them (``GET /jobs/{id}``'s rule: the owner's or an admin's)."""
    row = dataset_store.get_dataset(session, dataset_id)
    return dataset_view(session, row, principal)
