"""The Celery application: settings from service-notes §1.1, all read from the one Settings.

Only job ids (JSON strings) cross the broker; state lives in SQL. Start workers with
``celery -A worker.celery_app worker -Q cpu`` (dataset builds) and, one per GPU,
``celery -A worker.celery_app worker -Q gpu -c 1 --prefetch-multiplier=1 --max-tasks-per-child=1``.
"""
from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

from app.core.config import get_settings

TASK_BUILD = "worker.tasks.build_dataset"
TASK_TRAIN = "worker.tasks.train"
TASK_RECONCILE = "worker.tasks.reconcile"
QUEUE_OF = {"build_dataset": "cpu", "train": "gpu"}
TASK_OF = {"build_dataset": TASK_BUILD, "train": TASK_TRAIN}


def make_celery() -> Celery:
    s = get_settings()
    app = Celery("nas_surrogate", broker=s.broker_url, include=["worker.tasks"])
    transport = {"visibility_timeout": s.visibility_timeout_s, "socket_connect_timeout": 2,
                 "socket_timeout": 10}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=False,
        task_queues=[Queue("cpu"), Queue("gpu")],
        task_default_queue="cpu",
        task_routes={TASK_TRAIN: {"queue": "gpu"}, TASK_BUILD: {"queue": "cpu"},
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


app = make_celery()


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    """A forked pool child must not share the parent's pooled DB connections (and never
    touches CUDA in the parent: models are loaded inside the task)."""
    from app.core.db import dispose_engines
    dispose_engines()
