"""The Celery worker application (``celery -A worker.celery_app worker|beat``): the service's
queue configuration (:mod:`service.queue`) with this package's tasks.

Start workers with ``celery -A worker.celery_app worker -Q cpu`` (dataset builds) and, one per
GPU, ``celery -A worker.celery_app worker -Q gpu -c 1 --prefetch-multiplier=1
--max-tasks-per-child=1``.

SIGTERM reaching a pool process that runs a job (SLURM's ``scancel``, or the warning signal
before a time limit that ``deploy/slurm/worker.sbatch`` forwards) asks that job to release
itself: it stops at its next progress check, goes back to ``queued`` and is sent again at once,
so another worker resumes it from its checkpoint instead of waiting for the lease to expire.
"""
from __future__ import annotations

import logging
import os
import signal
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_init

from service.queue import make_celery

app = make_celery(include=["worker.tasks"])
log = logging.getLogger(__name__)

#: Job ids of the tasks running in this process (task id → job id).
_running: dict[str, str] = {}


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    """A forked pool child must not share the parent's pooled DB connections (and never
    touches CUDA in the parent: models are loaded inside the task)."""
    from service.db import dispose_engines
    dispose_engines()


#: The SIGTERM handler this process had before :func:`_track` installed its own.
_previous_term: Any = signal.SIG_DFL


@task_prerun.connect
def _track(task_id: str | None = None, args: Any = None, **_: object) -> None:
    """Remember the job this process runs and take SIGTERM as "release it" (installed here,
    in the task's process: billiard resets a pool child's handlers after its initializer)."""
    global _previous_term
    if task_id and args:
        _running[task_id] = str(args[0])
    current = signal.getsignal(signal.SIGTERM)
    if current is not _release_on_term:
        _previous_term = current
        signal.signal(signal.SIGTERM, _release_on_term)


@task_postrun.connect
def _untrack(task_id: str | None = None, **_: object) -> None:
    _running.pop(task_id or "", None)


def _release_on_term(signum: int, _frame: Any) -> None:
    """Ask the running job(s) to stop and release themselves; with none running, the handler
    the process had before (billiard's clean exit, or dying of the signal)."""
    from worker.context import request_stop

    if not _running:
        signal.signal(signum, _previous_term)
        if callable(_previous_term):
            _previous_term(signum, _frame)
        else:
            os.kill(os.getpid(), signum)
        return
    for job_id in list(_running.values()):
        log.warning("SIGTERM: releasing job %s so another worker resumes it", job_id)
        request_stop(job_id, "shutdown")
