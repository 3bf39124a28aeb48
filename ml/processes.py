"""The one way the library starts worker processes: a ``ProcessPoolExecutor`` whose workers end
with the process that started them, however it ends.

Dataset builds, pre-training's corpus and the encoder pool of :mod:`ml.inference.pool` all
start their workers here, so each gets the same guarantees: every worker runs
:func:`ml.lifeline.exit_with` on its owner before its own initializer (a SIGKILLed owner leaves
no worker behind), an initializer that needs fewer malloc arenas gets them, and
:func:`terminate` stops a pool now rather than after its queued work.

This module imports only the standard library and :mod:`ml.lifeline`, so a parent that must stay
small (the dataset build's, which never imports torch) can use it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: glibc's ``mallopt`` parameter for the number of malloc arenas (malloc.h).
_M_ARENA_MAX = -8


def _limit_arenas(arenas: int) -> None:
    """Cap glibc's malloc arenas in this process: workers that allocate and free whole networks
    otherwise keep that memory in per-thread arenas. A no-op where glibc is not the allocator."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        ctypes.CDLL(name).mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        return


def _bootstrap(owner: int, arenas: int | None, initializer: Callable[..., None] | None,
               initargs: Sequence[Any]) -> None:
    """Every worker's first step: tie its life to ``owner``'s, then the pool's initializer."""
    from ml.lifeline import exit_with

    exit_with(owner)
    if arenas:
        _limit_arenas(arenas)
    if initializer is not None:
        initializer(*initargs)


def process_pool(processes: int, *, start_method: str = "spawn",
                 initializer: Callable[..., None] | None = None, initargs: Sequence[Any] = (),
                 malloc_arenas: int | None = None,
                 preload: Sequence[str] = ()) -> ProcessPoolExecutor:
    """``processes`` workers started by ``start_method`` ("spawn": nothing inherited from a
    threaded parent; "forkserver": forked from a single-threaded server that imported
    ``preload`` first). Each worker ends when the calling process ends (:mod:`ml.lifeline`),
    then runs ``initializer(*initargs)``; ``malloc_arenas`` caps its malloc arenas first."""
    context = multiprocessing.get_context(start_method)
    if preload and start_method == "forkserver":  # heeded if the server has not started yet
        context.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(processes, mp_context=context, initializer=_bootstrap,
                               initargs=(os.getpid(), malloc_arenas, initializer,
                                         tuple(initargs)))


def pool_pids(executor: ProcessPoolExecutor | None) -> list[int]:
    """The ids of ``executor``'s live worker processes (for tests and monitoring)."""
    processes = getattr(executor, "_processes", None) or {}
    return sorted(processes)


def terminate(executor: ProcessPoolExecutor) -> None:
    """Stop ``executor`` now: its workers are terminated, queued work is cancelled."""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(5)
