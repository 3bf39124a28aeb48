"""The Celery worker application (``celery -A worker.celery_app worker|beat``): the service's
queue configuration (:mod:`service.queue`) with this package's tasks.

Start workers with ``celery -A worker.celery_app worker -Q cpu`` (dataset builds) and, one per
GPU, ``celery -A worker.celery_app worker -Q gpu -c 1 --prefetch-multiplier=1
--max-tasks-per-child=1``.
"""
from __future__ import annotations

from celery.signals import worker_process_init

from service.queue import make_celery

app = make_celery(include=["worker.tasks"])


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    """A forked pool child must not share the parent's pooled DB connections (and never
    touches CUDA in the parent: models are loaded inside the task)."""
    from service.db import dispose_engines
    dispose_engines()
