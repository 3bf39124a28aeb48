"""What a running job reports through and how it learns to stop: :class:`JobContext` (heartbeat,
throttled progress, the cancellation flag), the stop requests an executor makes, and the two
ways a job ends early, :class:`Cancelled` and :class:`LeaseLost`.

The runner (:mod:`worker.runner`) makes one context per claimed attempt and hands it to the
job kind's handler (:mod:`worker.handlers`); a handler turns its core library's "stopped"
exception into :class:`Cancelled` once, through :meth:`JobContext.cancellation`, and the runner
decides from the stop reason what that means (cancelled, failed past a time limit, or released
at shutdown).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from ml.jsonsafe import json_safe
from service.config import Settings
from service.db import session_scope
from service.errors import ServiceError
from service.store import jobs as job_store

log = logging.getLogger(__name__)

#: Errors a retry may not repeat (the database or the broker was away): the claim is released
#: and the Celery task retries with backoff, instead of failing the job.
TRANSIENT = (OperationalError, DBAPIError, ConnectionError, TimeoutError)

#: ``send(job_id, kind)`` dispatches a job (returns the task id).
Send = Callable[[str, str], str]


class Cancelled(Exception):
    """The job was asked to stop (a cancel request, its soft time limit, or the process
    shutting down); the runner reads :func:`stop_reason` to tell which."""


class LeaseLost(Exception):
    """Another worker claimed the job (this one's heartbeat went stale): stop without writing;
    the job belongs to the newer attempt."""


#: Why the executor asked a running job of this process to stop: "time_limit" (past its soft
#: limit: it fails with TIME_LIMIT) or "shutdown" (the process is stopping: the job is released
#: to the queue and resumes from its checkpoint on the next start). Read by JobContext.
_stop_reasons: dict[str, str] = {}
_stop_lock = threading.Lock()


def request_stop(job_id: str, reason: str) -> None:
    """Ask the job running in this process to stop at its next check; the first reason wins."""
    with _stop_lock:
        _stop_reasons.setdefault(job_id, reason)


def stop_reason(job_id: str) -> str | None:
    with _stop_lock:
        return _stop_reasons.get(job_id)


def clear_stop(job_id: str) -> None:
    with _stop_lock:
        _stop_reasons.pop(job_id, None)


def worker_name() -> str:
    """Who holds a claim: host, process and thread (the embedded executor runs jobs on
    threads of one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class JobContext:
    """What a running job reports through: throttled progress and epoch rows, the cancellation
    flag (polled at most every ``progress_interval_s``) and a heartbeat thread that keeps the
    lease while the job computes. Losing the lease (another worker claimed the job) reads as a
    cancellation so the stale attempt stops without writing a result. ``send`` dispatches a job
    this one queues (an append's retraining); without it the reconciler sends that job."""

    def __init__(self, job_id: str, attempt: int, settings: Settings,
                 send: Send | None = None) -> None:
        self.job_id, self.attempt, self.settings, self.send = job_id, attempt, settings, send
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._pending: list[dict[str, Any]] = []
        self._progress: tuple[float, str] | None = None
        self._fraction = 0.0
        self._last_flush = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._lock = threading.Lock()
        self._beat = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                      name=f"heartbeat-{job_id[:8]}")

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> JobContext:
        self._beat.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
        try:
            self.flush(force=True)
        except TRANSIENT + (ServiceError,):
            log.warning("job %s: could not flush the last progress rows", self.job_id)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s):
            try:
                with session_scope() as session:
                    if not job_store.heartbeat(session, self.job_id, self.attempt):
                        self.lost.set()
                        return
            except TRANSIENT + (ServiceError,):
                log.warning("job %s: heartbeat failed (database unreachable)", self.job_id)

    # -- reporting -------------------------------------------------------------------------
    def progress(self, fraction: float | None, message: str) -> None:
        """Report ``fraction`` done (``None``: where it stands, a new message)."""
        with self._lock:
            self._fraction = self._fraction if fraction is None else fraction
            self._progress = (self._fraction, message)
        self.flush()

    def epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        with self._lock:
            self._pending.append({"epoch": epoch, "metrics": metrics})
        self.flush()

    def log(self, message: str, **data: Any) -> None:
        with session_scope() as session:
            job_store.add_event(session, self.job_id, "log", message, attempt=self.attempt,
                                data=data or None)

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self.settings.progress_interval_s:
            return
        with self._lock:
            pending, self._pending = self._pending, []
            progress, self._progress = self._progress, None
            self._last_flush = now
        if not pending and progress is None:
            return
        with session_scope() as session:
            for row in pending:
                job_store.add_event(session, self.job_id, "epoch", attempt=self.attempt,
                                    epoch=row["epoch"], data=json_safe(row["metrics"]))
            if progress is not None and not job_store.set_progress(
                    session, self.job_id, self.attempt, *progress):
                self.lost.set()

    # -- stopping --------------------------------------------------------------------------
    def should_stop(self) -> bool:
        """Polled by the core library between units of work (rows, epochs, generations)."""
        if self.lost.is_set() or self._cancelled or stop_reason(self.job_id) is not None:
            return True
        now = time.monotonic()
        if now - self._last_cancel_check >= min(1.0, self.settings.progress_interval_s):
            self._last_cancel_check = now
            try:
                with session_scope() as session:
                    self._cancelled = job_store.cancel_requested(session, self.job_id)
            except TRANSIENT + (ServiceError,):
                return False
        return self._cancelled

    @contextmanager
    def cancellation(self, *stopped: type[BaseException]) -> Iterator[None]:
        """The one translation of a core library's "stopped because ``should_stop`` said so"
        (``BuildCancelled``, ``SearchCancelled``, ``TrainingCancelled``) into the job's terms:
        :class:`LeaseLost` when a newer attempt took the job (nothing may be written), else
        :class:`Cancelled`."""
        try:
            yield
        except stopped as exc:
            if self.lost.is_set():
                raise LeaseLost() from exc
            raise Cancelled() from exc

    def still_owned(self, session: Session) -> None:
        """Fence the result: lock the job row and check this attempt still owns it (a newer
        attempt, a cancellation or the embedded hard time limit may have taken it meanwhile).
        Call it in the session that writes the result, before writing."""
        if not job_store.owns(session, self.job_id, self.attempt):
            raise LeaseLost()
