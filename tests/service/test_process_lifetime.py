"""Every process ``nas-surrogate serve`` starts ends with it (issue 28): the encoder pool's fork
server and workers and multiprocessing's resource tracker, after SIGTERM within the shutdown
grace, and after SIGKILL of serve itself within a few seconds (the workers watch serve's
process, :mod:`ml.lifeline`; the fork server and the tracker end when their last client does).
The process tree is recorded with psutil while serve runs, before the stop."""
from __future__ import annotations

import signal
import time

import httpx
import psutil

from .conftest import Served, wait_for

GRACE_S = 4


def _pool_ready(served: Served) -> bool:
    try:
        return bool(httpx.get(served.base + "/readyz", timeout=5).json()["encoder_pool"]["ready"])
    except (httpx.HTTPError, KeyError, ValueError):
        assert served.proc.poll() is None, served.log_path.read_text()[-3000:]
        return False


def _tree(served: Served) -> list[psutil.Process]:
    """serve's descendants with the encoder pool up: the fork server, its two workers and the
    resource tracker at least."""
    wait_for(lambda: _pool_ready(served), 240, interval=1.0, what="the encoder pool")
    tree = psutil.Process(served.proc.pid).children(recursive=True)
    lines = [" ".join(p.cmdline())[:120] for p in tree]
    assert sum("forkserver" in line for line in lines) >= 3, lines  # server + 2 workers
    assert any("resource_tracker" in line for line in lines), lines
    return tree


def _alive(tree: list[psutil.Process]) -> list[str]:
    out = []
    for process in tree:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{process.pid} {' '.join(process.cmdline())[:100]}")
        except psutil.NoSuchProcess:
            continue
    return out


def _reap(tree: list[psutil.Process]) -> None:
    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


def test_no_process_outlives_serve_sigterm_or_sigkill(tmp_path):
    seed = tmp_path / "no-seed.csv"  # no bootstrap jobs: only the pool's processes matter here
    env = {"SURROGATE_SHUTDOWN_GRACE_S": str(GRACE_S)}
    served = Served(tmp_path / "var", seed, tmp_path / "serve.log", env=env)
    tree: list[psutil.Process] = []
    try:
        tree = _tree(served)
        started = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        served.proc.wait(timeout=4 * GRACE_S)
        # uvicorn's grace for requests, then the job's grace to release itself: the process
        # tree is gone within both.
        limit = 2 * GRACE_S + 2
        wait_for(lambda: not _alive(tree), max(1.0, limit - (time.monotonic() - started)),
                 what="serve's processes to end after SIGTERM")
    finally:
        stragglers = _alive(tree)
        _reap(tree)
        served.stop(signal.SIGKILL, 10)
    assert not stragglers

    served = Served(tmp_path / "var", seed, tmp_path / "serve2.log", env=env)
    try:
        tree = _tree(served)
        served.proc.kill()
        served.proc.wait(timeout=10)
        wait_for(lambda: not _alive(tree), 5, what="serve's processes to end after SIGKILL")
    finally:
        stragglers = _alive(tree)
        _reap(tree)
        served.stop(signal.SIGKILL, 10)
    assert not stragglers


def test_serve_killed_while_its_fork_server_warms_leaves_nothing(tmp_path):
    """SIGKILL while the fork server still imports torch and builds the backbones (seconds;
    before ml.orphan_guard it and the resource tracker ran on until that was done)."""
    served = Served(tmp_path / "var", tmp_path / "no-seed.csv", tmp_path / "serve.log")
    tree: list[psutil.Process] = []
    try:
        def warming() -> bool:
            tree[:] = psutil.Process(served.proc.pid).children(recursive=True)
            return any("forkserver" in " ".join(p.cmdline()) for p in tree)

        wait_for(warming, 240, interval=0.05, what="the fork server to start")
        assert not _pool_ready_now(served), "the pool was ready: this test needs it warming"
        served.proc.kill()
        served.proc.wait(timeout=10)
        wait_for(lambda: not _alive(tree), 3, what="the warming fork server to end")
    finally:
        stragglers = _alive(tree)
        _reap(tree)
        served.stop(signal.SIGKILL, 10)
    assert not stragglers


def _pool_ready_now(served: Served) -> bool:
    try:
        return bool(httpx.get(served.base + "/readyz", timeout=2).json()["encoder_pool"]["ready"])
    except (httpx.HTTPError, KeyError, ValueError):
        return False
