"""How the API hands a committed job to an executor.

``CeleryDispatcher`` publishes the job id to its queue (production). ``ThreadDispatcher`` runs
the same :func:`worker.jobs.run_job` on one background thread in the API process (the embedded
``serve`` mode: no broker, no Celery import). Both expose ``send``, ``revoke`` and ``ping``.
"""
from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from app.core.config import Settings, get_settings
from app.core.errors import ServiceError

log = logging.getLogger(__name__)


class ThreadDispatcher:
    """One job at a time on a background thread, plus a periodic reconciler thread."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job")
        self._stop = threading.Event()
        self._reconciler: threading.Thread | None = None

    def send(self, job_id: str, kind: str) -> str:
        self.pool.submit(self._run, job_id)
        return f"thread-{uuid.uuid4()}"

    def _run(self, job_id: str) -> str:
        from worker.jobs import run_job
        try:
            return run_job(job_id, self.settings)
        except Exception:  # noqa: BLE001 - transient: the reconciler re-sends it later
            log.exception("job %s: transient failure; it will be re-sent", job_id)
            return "retry"

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

    def shutdown(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)


class CeleryDispatcher:
    """Publishes job ids with Celery; a broker outage is ``BROKER_UNAVAILABLE`` (503)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    def send(self, job_id: str, kind: str) -> str:
        from worker.celery_app import QUEUE_OF, TASK_OF, app
        try:
            result = app.send_task(TASK_OF[kind], args=[job_id], queue=QUEUE_OF[kind])
        except Exception as exc:  # noqa: BLE001 - kombu raises many connection error types
            raise ServiceError("BROKER_UNAVAILABLE", "the job queue is unreachable") from exc
        return str(result.id)

    def revoke(self, task_id: str | None) -> None:
        """Best effort: the claim refuses a cancelled job even if the revoke is lost."""
        if not task_id:
            return
        from worker.celery_app import app
        try:
            app.control.revoke(task_id)
        except Exception:  # noqa: BLE001
            log.warning("revoke of %s failed (broker unreachable)", task_id)

    def ping(self) -> bool:
        import redis
        try:
            client = redis.Redis.from_url(self.settings.broker_url,
                                          socket_connect_timeout=self.settings.probe_timeout_s,
                                          socket_timeout=self.settings.probe_timeout_s)
            return bool(client.ping())
        except Exception:  # noqa: BLE001
            return False


def make_dispatcher(settings: Settings | None = None) -> ThreadDispatcher | CeleryDispatcher:
    settings = settings or get_settings()
    return CeleryDispatcher(settings) if settings.executor == "celery" else ThreadDispatcher(settings)
