"""The one process pool (ml.processes): its workers end with the process that started them,
even when that one is killed by SIGKILL, and run the pool's initializer after the lifeline."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]

OWNER = textwrap.dedent("""
    import os, sys, time
    from ml.processes import process_pool

    pool = process_pool(2, start_method=sys.argv[1], initializer=os.chdir, initargs=("/",),
                        malloc_arenas=2)
    while len(pool._processes or ()) < 2:   # spawned on demand: keep both busy once
        [f.result() for f in [pool.submit(time.sleep, 0.2) for _ in range(4)]]
    cwd = pool.submit(os.getcwd).result()
    print(" ".join(str(p) for p in sorted(pool._processes)), cwd, flush=True)
    time.sleep(600)
""")


def _owner(start_method: str) -> tuple[subprocess.Popen, list[int], str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", OWNER, start_method], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    return proc, [int(p) for p in line[:-1]], line[-1]


def test_workers_end_with_an_owner_killed_by_sigkill():
    for start_method in ("spawn", "forkserver"):
        proc, workers, marked = _owner(start_method)
        assert len(workers) == 2 and marked == "/"   # the initializer ran
        assert all(psutil.pid_exists(pid) for pid in workers)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), start_method


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
