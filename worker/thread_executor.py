"""The embedded executor: :class:`ThreadDispatcher` runs the same :func:`worker.runner.run_job`
as the Celery tasks, on background threads of the process that composes it (``nas-surrogate
serve``: no broker, no Celery): one lane per kind of work (:data:`LANES`), so a long proposal
never holds up a dataset build or a training, nor the reverse.
It exposes what :class:`service.queue.CeleryDispatcher` does (``send``, ``revoke``, ``ping``),
so the HTTP app cannot tell them apart.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid

from service.config import Settings, get_settings

log = logging.getLogger(__name__)

#: Job kinds with a lane of their own: a predict key's search (``propose``) runs beside the
#: builds and trainings of the ``work`` lane, each lane one job at a time (as the Celery stack's
#: queues run on their own workers).
LANES = {"propose": "search"}
DEFAULT_LANE = "work"


def lane_of(kind: str) -> str:
    return LANES.get(kind, DEFAULT_LANE)


class _Lane:
    """One queue and the thread working through it; ``current`` is (job id, kind, monotonic
    start, thread) of the job running now."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self.current: tuple[str, str, float, threading.Thread] | None = None
        self.worker: threading.Thread | None = None


class ThreadDispatcher:
    """Jobs one at a time per lane on background threads, plus a periodic reconciler thread.

    It keeps Celery's promises in-process: a job past its soft time limit is asked to stop and
    fails with ``TIME_LIMIT``; one still running at its hard limit is failed in SQL and
    abandoned (its later writes are fenced by the attempt number) while a fresh thread takes
    the queue. ``shutdown`` asks the running job to release itself (it is queued again and
    resumes from its checkpoint on the next start) and waits at most ``shutdown_grace_s``;
    every thread is a daemon, so the process never hangs on a long training.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._lanes = {name: _Lane(name) for name in (DEFAULT_LANE, *sorted(set(LANES.values())))}
        for lane in self._lanes.values():
            lane.worker = self._start_worker(lane)
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name="job-watchdog")
        self._watchdog.start()
        self._reconciler: threading.Thread | None = None

    def _start_worker(self, lane: _Lane) -> threading.Thread:
        thread = threading.Thread(target=self._work, args=(lane,), daemon=True,
                                  name=f"job-{lane.name}")
        thread.start()
        return thread

    def send(self, job_id: str, kind: str) -> str:
        self._lanes[lane_of(kind)].queue.put((job_id, kind))
        return f"thread-{uuid.uuid4()}"

    def running(self) -> dict[str, str]:
        """The job running in each busy lane (lane -> job id), for tests and monitoring."""
        with self._lock:
            return {name: lane.current[0] for name, lane in self._lanes.items()
                    if lane.current is not None}

    def _work(self, lane: _Lane) -> None:
        me = threading.current_thread()
        while not self._stop.is_set():
            item = lane.queue.get()
            if item is None:
                return
            job_id, kind = item
            with self._lock:
                lane.current = (job_id, kind, time.monotonic(), me)
            try:
                self._run(job_id)
            finally:
                with self._lock:
                    abandoned = lane.current is None or lane.current[3] is not me
                    if not abandoned:
                        lane.current = None
            if abandoned:
                return  # the watchdog gave the lane to a new thread past the hard limit

    def _run(self, job_id: str) -> str:
        from worker.runner import run_job
        started = time.monotonic()
        try:
            outcome = run_job(job_id, self.settings, send=self.send)
        except Exception:
            log.exception("job %s: transient failure; it will be re-sent", job_id)
            return "retry"
        if outcome != "skipped":
            _log_outcome(job_id, outcome, time.monotonic() - started)
        return outcome

    def limits(self, kind: str) -> tuple[float, float]:
        s = self.settings
        if kind in ("train", "pretrain"):
            return s.train_soft_limit_s, s.train_hard_limit_s
        return s.build_soft_limit_s, s.build_hard_limit_s

    def _watch(self) -> None:
        from worker.context import request_stop

        while not self._stop.wait(0.5):
            for lane in self._lanes.values():
                with self._lock:
                    current = lane.current
                if current is None:
                    continue
                job_id, kind, started, thread = current
                soft, hard = self.limits(kind)
                elapsed = time.monotonic() - started
                if elapsed > soft:
                    request_stop(job_id, "time_limit")
                if elapsed > hard and thread.is_alive():
                    self._abandon(lane, job_id, thread, hard)

    def _abandon(self, lane: _Lane, job_id: str, thread: threading.Thread,
                 hard: float) -> None:
        from service.db import session_scope
        from service.store import jobs as job_store

        log.error("job %s: still running past its %.0f s hard limit; failing it and "
                  "abandoning its thread", job_id, hard)
        try:
            with session_scope() as session:
                job_store.finish(session, job_id, None, "failed", "hard time limit exceeded",
                                 error_code="TIME_LIMIT")
        except Exception:
            log.warning("job %s: could not record the hard time limit", job_id)
        with self._lock:
            if lane.current is not None and lane.current[3] is thread:
                lane.current = None
                lane.worker = self._start_worker(lane)

    def revoke(self, task_id: str | None) -> None:
        """Queued jobs are skipped by the claim once cancelled; nothing else to do."""

    def ping(self) -> bool:
        return True

    def start_reconciler(self) -> None:
        from worker.reconciler import reconcile

        def loop() -> None:
            while not self._stop.wait(self.settings.reconcile_interval_s):
                try:
                    reconcile(self.send, self.settings)
                except Exception:
                    log.warning("reconciler pass failed", exc_info=True)

        self._reconciler = threading.Thread(target=loop, daemon=True, name="reconciler")
        self._reconciler.start()

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; ask the running ones to release themselves, and wait at most
        the grace period for them (together, not one after the other)."""
        from worker.context import request_stop

        self._stop.set()
        with self._lock:
            running = [lane.current for lane in self._lanes.values() if lane.current]
        for lane in self._lanes.values():
            lane.queue.put(None)
        for job_id, _, _, _ in running:
            request_stop(job_id, "shutdown")
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        for job_id, _, _, thread in running:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("job %s did not stop within %.0f s; exiting anyway (it resumes on "
                            "the next start)", job_id, grace)


def _log_outcome(job_id: str, outcome: str, seconds: float) -> None:
    """One line per finished job in ``serve``'s log: what ran, how it ended, what it said."""
    from service.db import session_scope
    from service.tables import Job

    try:
        with session_scope() as session:
            job = session.get(Job, job_id)
            kind, message = (job.kind, job.message) if job is not None else ("?", "")
    except Exception:
        kind, message = "?", ""
    log.info("job %s (%s) %s in %.1f s: %s", job_id[:8], kind, outcome, seconds, message or "")
