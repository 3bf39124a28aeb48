"""How the core library's errors become a job's outcome, where more than one job kind needs the
same mapping: a fit's (training, pre-training) and a filled disk's (dataset builds, appends).
What is not mapped here propagates to the runner, which fails the job as ``INTERNAL_ERROR``.
"""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.db import is_disk_full
from service.errors import JobFailure
from worker.context import Cancelled, JobContext, LeaseLost


@contextmanager
def fitting(ctx: JobContext) -> Iterator[None]:
    """What a fit (training or pre-training) raises, as the job's outcome: a cancel (or a lost
    lease), out of memory, a deterministic ``TRAINING_FAILED``; anything else is a bug and
    propagates. A lease lost during the fit is noticed when it returns."""
    from ml.models.base import TrainingCancelled

    try:
        with ctx.cancellation(TrainingCancelled):
            yield
    except (Cancelled, LeaseLost):
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise JobFailure("OUT_OF_MEMORY", f"{type(exc).__name__}: {exc}"[:2000]) from exc
        if isinstance(exc, (ValueError, RuntimeError)):
            raise JobFailure("TRAINING_FAILED", f"{type(exc).__name__}: {exc}") from exc
        raise
    if ctx.lost.is_set():
        raise LeaseLost()


def is_out_of_memory(exc: BaseException) -> bool:
    """Host or CUDA out of memory (``torch.OutOfMemoryError`` is a RuntimeError subclass, so it
    must be recognised before the generic TRAINING_FAILED mapping)."""
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch
        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return "out of memory" in str(exc).lower() and isinstance(exc, RuntimeError)


def fail_if_disk_full(exc: BaseException, out: Path) -> None:
    """A build that filled the disk fails as ``DISK_FULL`` (not a torch message as an internal
    error), and its partial shards go at once: they hold the space the disk lacks, and a retry
    starts over."""
    if is_disk_full(exc):
        shutil.rmtree(out, ignore_errors=True)
        raise JobFailure("DISK_FULL", f"the disk filled up while writing the dataset "
                         f"({type(exc).__name__}); its partial output was removed") from exc
