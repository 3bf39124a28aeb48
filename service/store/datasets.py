"""Dataset rows: a CSV (uploaded or server-side) built into an on-disk graph dataset by a job."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from service.store import get_or_raise
from service.tables import Dataset


def create_dataset(session: Session, *, dataset_id: str, name: str, source_path: str, path: str,
                   metrics: list[str], parent_id: str | None = None) -> Dataset:
    row = Dataset(id=dataset_id, name=name, source_path=source_path, path=path,
                  metrics=list(metrics), status="pending", parent_id=parent_id)
    session.add(row)
    session.flush()
    return row


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    return get_or_raise(session, Dataset, dataset_id, "DATASET_NOT_FOUND",
                        f"no dataset {dataset_id}")


def attach_job(session: Session, dataset_id: str, job_id: str) -> None:
    session.execute(update(Dataset).where(Dataset.id == dataset_id).values(job_id=job_id))


def mark(session: Session, dataset_id: str, status: str,
         manifest: dict[str, Any] | None = None) -> None:
    values: dict[str, Any] = {"status": status}
    if manifest is not None:
        values["manifest"] = manifest
    session.execute(update(Dataset).where(Dataset.id == dataset_id).values(**values))


def list_datasets(session: Session, limit: int = 50, offset: int = 0) -> tuple[list[Dataset], int]:
    rows = list(session.scalars(select(Dataset).order_by(Dataset.created_at.desc())
                                .offset(offset).limit(limit)))
    return rows, int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


def lineage_ids(session: Session, row: Dataset, limit: int = 10_000) -> list[str]:
    """The ids of a version's ancestors, oldest first."""
    chain: list[str] = []
    parent = row.parent_id
    while parent is not None and len(chain) < limit:
        chain.append(parent)
        ancestor = session.get(Dataset, parent)
        parent = ancestor.parent_id if ancestor is not None else None
    return chain[::-1]


def set_retrain_job(session: Session, dataset_id: str, job_id: str) -> None:
    session.execute(update(Dataset).where(Dataset.id == dataset_id)
                    .values(retrain_job_id=job_id))
