"""SQL tables (SQLAlchemy 2.0). Job state lives here, never in Celery's result backend.

``jobs`` is the source of truth for both kinds of job (dataset builds and trainings): status,
progress, heartbeat, attempt, cancellation flag, error code. ``model_versions`` follows MLflow's
registry: ``(name, version)`` key, a unique ``job_id`` (one training registers at most one
version, whatever redelivery does), and ``model_aliases`` for the moving ``active`` alias.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON,
                           datetime: DateTime(timezone=True)}


#: The largest value of the integer columns (versions, key ids) and of the offsets that page
#: through them: every bound on such a number at the edge is this one.
INT32_MAX = 2**31 - 1
JOB_STATES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
JOB_KINDS = ("build_dataset", "append_dataset", "train", "propose", "pretrain")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    source_path: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|ready|failed
    job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    #: The version this one appends to (None: built from a CSV); versions are immutable.
    parent_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    #: The promote-if-better training an append with ``retrain`` queued for this version.
    retrain_job_id: Mapped[str | None] = mapped_column(String(36), default=None)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("principal", "idempotency_key", name="uq_jobs_principal_idempotency"),
        Index("ix_jobs_status_created", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    principal: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), default=None)
    request_sha256: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    model_name: Mapped[str | None] = mapped_column(String(200), default=None)
    model_version: Mapped[int | None] = mapped_column(Integer, default=None)
    #: What a job hands back besides a model (a ``propose`` job's proposals).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class JobEvent(Base):
    """A log line, a state change or one epoch's metrics (``kind`` says which)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))  # log | epoch | state
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int | None] = mapped_column(Integer, default=None)
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class RegisteredModel(Base):
    __tablename__ = "registered_models"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(ForeignKey("registered_models.name"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(32), default="READY")
    predictor: Mapped[str] = mapped_column(String(64))
    source_path: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), unique=True, default=None)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None)
    encoder_version: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[list[Any]] = mapped_column(JSON)
    training_metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Champion/challenger: both sides' generation-forward scores, the rule and the decision.
    comparison: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    __table_args__ = (ForeignKeyConstraint(["name", "version"],
                                           ["model_versions.name", "model_versions.version"]),)

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
