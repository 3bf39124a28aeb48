"""One module per job kind, and the one table that names them (:data:`HANDLERS`).

A handler's ``run(ctx, params)`` does the kind's work through the core library, reports through
its :class:`worker.context.JobContext`, writes its result under ``ctx.still_owned`` and returns
``"succeeded"``; it raises :class:`service.errors.JobFailure` (a stable code) for a deterministic
failure and lets transient errors propagate: the runner (:mod:`worker.runner`) claims, ends and
releases the job. ``on_failure(session, job)``, where a kind has one, runs in the session that
marks the job failed. ``failures``, ``recipes`` and ``promotion`` are helpers the handlers share.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from service.tables import Job
from worker.context import JobContext
from worker.handlers import append, build, pretrain, propose, train


@dataclass(frozen=True)
class Handler:
    """What the runner calls for one job kind."""

    run: Callable[[JobContext, dict[str, Any]], str]
    on_failure: Callable[[Session, Job], None] | None = None


#: Job kind (``jobs.kind``, the API's contract) → its handler.
HANDLERS: dict[str, Handler] = {
    "build_dataset": Handler(build.run, on_failure=build.on_failure),
    "append_dataset": Handler(append.run),
    "train": Handler(train.run),
    "propose": Handler(propose.run),
    "pretrain": Handler(pretrain.run),
}
