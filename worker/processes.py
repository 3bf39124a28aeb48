"""Letting a job start processes from a Celery prefork pool child (:func:`children_allowed`).

Why it is needed: billiard (Celery's prefork pool) starts its pool children as *daemonic*
processes and installs its own ``Process`` object as ``multiprocessing.current_process()``. The
standard library refuses to start a process from a daemonic one ("daemonic processes are not
allowed to have children"), and a ``spawn`` start pickles the parent's authentication key, which
it only does for its own ``AuthenticationString`` type, not billiard's. The dataset build and
the pre-training start their encoder processes with the standard library's ``spawn`` pools.

Why there is no supported way: Celery documents none (its answers to celery/celery#1709 and
#4525 are ``--pool=solo`` or ``--pool=threads``, which give up the prefork pool's time limits
and the per-process SIGTERM release of :mod:`worker.celery_app`); billiard lets *its own*
``Pool`` start from a daemon, but the core library (``ml/``) knows nothing of Celery and uses
the standard library's pools. So this module sets the two flags for the duration of the job,
through the processes' public ``daemon`` and ``authkey`` setters, and puts them back.

Why it is safe: the pools started inside are joined or terminated before the build or the
pre-training returns, and their processes share the worker's process group, so nothing
outlives the task. In a process that is not a pool child (``nas-surrogate serve``'s executor
threads) it changes nothing: the process is not daemonic and its key is already the standard
library's type.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def children_allowed() -> Iterator[None]:
    """Make the current process non-daemonic with a key the standard library can pickle, for
    the duration of the block (not thread-safe across concurrent jobs in one process: a Celery
    pool child runs one task at a time)."""
    current = multiprocessing.current_process()
    daemon, authkey = current.daemon, bytes(current.authkey)
    current.daemon = False
    # The standard library's own ``authkey`` setter, whichever class ``current`` is: it stores
    # the key as the standard library's AuthenticationString, the one type spawn pickles.
    multiprocessing.Process.authkey.fset(current, authkey)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        current.daemon = daemon
        current.authkey = authkey
