"""Worker processes end with the process that owns them, however it ends.

A pool's owner that is stopped cleanly closes its pool; one killed by SIGKILL cannot, and its
workers would otherwise wait forever on their task queues (each worker holds a write end of its
own queue, so the queue never reads as closed). :func:`exit_with` runs in a worker's pool
initializer and ends the worker when the owner's process ends.

Why a pidfd and not the parent-death signal (``prctl(PR_SET_PDEATHSIG)``): that signal follows
the *thread* that created the child, not its process, so a pool started from a short-lived
thread (the encoder pool is started from request and probe threads) would lose its workers when
that thread returns; and the encoder workers are children of the fork server, not of the owner,
while the fork server outlives the owner as long as any worker holds its "alive" pipe. A pidfd
names the owner's process exactly, from any depth, and becomes readable when it exits (Linux
5.3+); elsewhere the owner is polled. No maintained package wraps either (python-prctl and
pyprctl were last released in 2020 and 2021), and both are a few lines of the standard library.
"""
from __future__ import annotations

import os
import select
import signal
import threading

#: How often the owner is polled where pidfds are unavailable.
POLL_S = 1.0
#: The exit status of a worker whose owner ended (what a SIGTERM would give).
ORPHAN_EXIT = 128 + 15


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_pidfd(pid: int) -> bool:
    """Block until ``pid`` exits; False when pidfds are unavailable here."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return False
    try:
        fd = opener(pid)
    except ProcessLookupError:
        return True  # already gone
    except OSError:
        return False  # an old kernel (ENOSYS) or a sandbox that refuses it
    try:
        select.select([fd], [], [])
    finally:
        os.close(fd)
    return True


def _watch(pid: int) -> None:
    if not _wait_pidfd(pid):
        event = threading.Event()
        while _alive(pid):
            event.wait(POLL_S)
    os._exit(ORPHAN_EXIT)  # the owner is gone: nobody will read what this process makes


def exit_with(owner_pid: int) -> None:
    """End this process (at once, with :data:`ORPHAN_EXIT`) when process ``owner_pid`` ends.
    Idempotent per process; a no-op in the owner itself."""
    if owner_pid == os.getpid() or getattr(exit_with, "_watching", None) == os.getpid():
        return
    exit_with._watching = os.getpid()  # type: ignore[attr-defined]
    if not _alive(owner_pid):
        os._exit(ORPHAN_EXIT)
    threading.Thread(target=_watch, args=(owner_pid,), daemon=True,
                     name="lifeline").start()



def start_orphan_check(interval_s: float = 0.5) -> None:
    """End this process (:data:`ORPHAN_EXIT`) as soon as its parent has ended, checked on a
    timer signal rather than a thread, until :func:`stop_orphan_check`.

    For the encoder pool's fork server: it imports torch and builds every backbone before it
    serves its first fork (seconds, more on a busy machine), and only then watches its owner's
    pipe, so an owner killed meanwhile left it and the resource tracker running until that was
    done. The server must stay free of threads of its own (it forks), hence ``SIGALRM`` and not
    :func:`exit_with`'s thread. Interrupted system calls restart, and a fork inherits no timer."""
    parent = os.getppid()

    def check(_signum: int, _frame: object) -> None:
        if os.getppid() != parent:
            os._exit(ORPHAN_EXIT)

    signal.signal(signal.SIGALRM, check)
    signal.siginterrupt(signal.SIGALRM, False)
    signal.setitimer(signal.ITIMER_REAL, interval_s, interval_s)


def stop_orphan_check() -> None:
    """End :func:`start_orphan_check`'s timer; the default ``SIGALRM`` handling is back."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
