"""The embedded executor: :class:`ThreadDispatcher` runs the same :func:`worker.jobs.run_job`
as the Celery tasks, on one background thread of the process that composes it (``nas-surrogate
serve``: no broker, no Celery). It exposes what :class:`service.queue.CeleryDispatcher` does
(``send``, ``revoke``, ``ping``), so the HTTP app cannot tell them apart.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

from service.config import Settings, get_settings

log = logging.getLogger(__name__)


class ThreadDispatcher:
    """Jobs one at a time on a background thread, plus a periodic reconciler thread.

    It keeps Celery's promises in-process: a job past its soft time limit is asked to stop and
    fails with ``TIME_LIMIT``; one still running at its hard limit is failed in SQL and
    abandoned (its later writes are fenced by the attempt number) while a fresh thread takes
    the queue. ``shutdown`` asks the running job to release itself (it is queued again and
    resumes from its checkpoint on the next start) and waits at most ``shutdown_grace_s``;
    every thread is a daemon, so the process never hangs on a long training.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: (job id, kind, monotonic start, thread) of the job running now.
        self._current: tuple[str, str, float, threading.Thread] | None = None
        self._worker = self._start_worker()
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name="job-watchdog")
        self._watchdog.start()
        self._reconciler: threading.Thread | None = None

    def _start_worker(self) -> threading.Thread:
        thread = threading.Thread(target=self._work, daemon=True, name="job")
        thread.start()
        return thread

    def send(self, job_id: str, kind: str) -> str:
        self._queue.put((job_id, kind))
        return f"thread-{uuid.uuid4()}"

    def _work(self) -> None:
        me = threading.current_thread()
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            job_id, kind = item
            with self._lock:
                self._current = (job_id, kind, time.monotonic(), me)
            try:
                self._run(job_id)
            finally:
                with self._lock:
                    abandoned = self._current is None or self._current[3] is not me
                    if not abandoned:
                        self._current = None
            if abandoned:
                return  # the watchdog gave the queue to a new thread past the hard limit

    def _run(self, job_id: str) -> str:
        from worker.jobs import run_job
        try:
            return run_job(job_id, self.settings, send=self.send)
        except Exception:  # noqa: BLE001 - transient: the reconciler re-sends it later
            log.exception("job %s: transient failure; it will be re-sent", job_id)
            return "retry"

    def limits(self, kind: str) -> tuple[float, float]:
        s = self.settings
        if kind in ("train", "pretrain"):
            return s.train_soft_limit_s, s.train_hard_limit_s
        return s.build_soft_limit_s, s.build_hard_limit_s

    def _watch(self) -> None:
        from worker.jobs import request_stop

        while not self._stop.wait(0.5):
            with self._lock:
                current = self._current
            if current is None:
                continue
            job_id, kind, started, thread = current
            soft, hard = self.limits(kind)
            elapsed = time.monotonic() - started
            if elapsed > soft:
                request_stop(job_id, "time_limit")
            if elapsed > hard and thread.is_alive():
                self._abandon(job_id, thread, hard)

    def _abandon(self, job_id: str, thread: threading.Thread, hard: float) -> None:
        from service.db import session_scope
        from service.store import jobs as job_store

        log.error("job %s: still running past its %.0f s hard limit; failing it and "
                  "abandoning its thread", job_id, hard)
        try:
            with session_scope() as session:
                job_store.finish(session, job_id, None, "failed", "hard time limit exceeded",
                                 error_code="TIME_LIMIT")
        except Exception:  # noqa: BLE001 - the reconciler's lease check catches it later
            log.warning("job %s: could not record the hard time limit", job_id)
        with self._lock:
            if self._current is not None and self._current[3] is thread:
                self._current = None
                self._worker = self._start_worker()

    def revoke(self, task_id: str | None) -> None:
        """Queued jobs are skipped by the claim once cancelled; nothing else to do."""

    def ping(self) -> bool:
        return True

    def start_reconciler(self) -> None:
        from worker.jobs import reconcile

        def loop() -> None:
            while not self._stop.wait(self.settings.reconcile_interval_s):
                try:
                    reconcile(self.send, self.settings)
                except Exception:  # noqa: BLE001 - keep reconciling after a DB outage
                    log.warning("reconciler pass failed", exc_info=True)

        self._reconciler = threading.Thread(target=loop, daemon=True, name="reconciler")
        self._reconciler.start()

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; ask the running one to release itself, and wait at most the
        grace period for it."""
        from worker.jobs import request_stop

        self._stop.set()
        with self._lock:
            current = self._current
        self._queue.put(None)
        if current is None:
            return
        job_id, _, _, thread = current
        request_stop(job_id, "shutdown")
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        thread.join(timeout=grace)
        if thread.is_alive():
            log.warning("job %s did not stop within %.0f s; exiting anyway (it resumes on the "
                        "next start)", job_id, grace)
