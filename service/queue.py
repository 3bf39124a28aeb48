"""The job queue seen from the service: task names and queues, the Celery configuration
(every value read from the one Settings) and the client that publishes job
ids. Only job ids (JSON strings) cross the broker; state lives in SQL.

The HTTP adapter publishes with :class:`CeleryDispatcher`; the job adapter (``worker``) builds
its Celery worker app from the same :func:`make_celery`, so both always agree on routing.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

from celery import Celery
from kombu import Queue

from service.config import Settings, get_settings
from service.errors import ServiceError

log = logging.getLogger(__name__)

TASK_BUILD = "worker.tasks.build_dataset"
TASK_APPEND = "worker.tasks.append_dataset"
TASK_TRAIN = "worker.tasks.train"
TASK_PROPOSE = "worker.tasks.propose"
TASK_PRETRAIN = "worker.tasks.pretrain"
TASK_RECONCILE = "worker.tasks.reconcile"
QUEUE_OF = {"build_dataset": "cpu", "append_dataset": "cpu", "train": "gpu", "propose": "cpu",
            "pretrain": "gpu"}
TASK_OF = {"build_dataset": TASK_BUILD, "append_dataset": TASK_APPEND, "train": TASK_TRAIN,
           "propose": TASK_PROPOSE, "pretrain": TASK_PRETRAIN}


def make_celery(include: Sequence[str] = ()) -> Celery:
    """The Celery app: ``include`` names the task modules (the worker passes its own)."""
    s = get_settings()
    app = Celery("nas_surrogate", broker=s.broker_url, include=list(include))
    transport = {"visibility_timeout": s.visibility_timeout_s, "socket_connect_timeout": 2,
                 "socket_timeout": 10}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=False,
        task_queues=[Queue("cpu"), Queue("gpu")],
        task_default_queue="cpu",
        task_routes={TASK_TRAIN: {"queue": "gpu"}, TASK_PRETRAIN: {"queue": "gpu"},
                     TASK_BUILD: {"queue": "cpu"},
                     TASK_APPEND: {"queue": "cpu"}, TASK_PROPOSE: {"queue": "cpu"},
                     TASK_RECONCILE: {"queue": "cpu"}},
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        visibility_timeout=s.visibility_timeout_s,
        task_ignore_result=True,
        task_track_started=True,
        task_serializer="json", accept_content=["json"],
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=60,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        task_publish_retry=False,
        beat_schedule={"reconcile": {"task": TASK_RECONCILE,
                                     "schedule": s.reconcile_interval_s}},
        timezone="UTC",
    )
    return app



_client: Celery | None = None


def client() -> Celery:
    """The publishing app of this process (built on first use)."""
    global _client
    if _client is None:
        _client = make_celery()
    return _client


class CeleryDispatcher:
    """Publishes job ids with Celery; a broker outage is ``BROKER_UNAVAILABLE`` (503)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    def send(self, job_id: str, kind: str) -> str:
        try:
            result = client().send_task(TASK_OF[kind], args=[job_id], queue=QUEUE_OF[kind])
        except Exception as exc:
            raise ServiceError("BROKER_UNAVAILABLE", "the job queue is unreachable") from exc
        return str(result.id)

    def revoke(self, task_id: str | None) -> None:
        """Best effort: the claim refuses a cancelled job even if the revoke is lost."""
        if not task_id:
            return
        try:
            client().control.revoke(task_id)
        except Exception:
            log.warning("revoke of %s failed (broker unreachable)", task_id)

    def ping(self) -> bool:
        import redis
        try:
            probe = redis.Redis.from_url(self.settings.broker_url,
                                         socket_connect_timeout=self.settings.probe_timeout_s,
                                         socket_timeout=self.settings.probe_timeout_s)
            return bool(probe.ping())
        except Exception:
            return False
