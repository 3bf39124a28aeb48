"""The worker's process plumbing without a broker: the job-kind table matches the queue's
contract, and a job in a Celery prefork child may start the core library's spawn pools."""
from __future__ import annotations

import multiprocessing

from billiard.pool import Pool as BilliardPool


def test_every_queued_kind_has_one_handler():
    """A kind the API can queue without a handler would fail as INTERNAL_ERROR; a handler no
    task sends would never run."""
    from service.queue import TASK_OF
    from worker.handlers import HANDLERS

    assert set(HANDLERS) == set(TASK_OF)


def _spawn_a_pool(allow: bool) -> tuple[str, bool, bool]:
    """Runs in a billiard pool child, as a Celery task does: start a standard-library spawn
    pool (as the dataset build and the pre-training do), then report the flags left behind."""
    from worker.processes import children_allowed

    current = multiprocessing.current_process()
    try:
        if allow:
            with children_allowed(), multiprocessing.get_context("spawn").Pool(1) as pool:
                outcome = str(pool.map(abs, [-3]))
        else:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                outcome = str(pool.map(abs, [-3]))
    except AssertionError as exc:
        outcome = f"refused: {exc}"
    return outcome, current.daemon, type(current.authkey).__module__.startswith("billiard")


def test_a_pool_child_may_start_processes_inside_children_allowed_only():
    with BilliardPool(1) as pool:
        refused, daemon, billiard_key = pool.apply(_spawn_a_pool, (False,))
        assert refused.startswith("refused: daemonic processes"), refused
        assert daemon and billiard_key
        allowed, daemon, billiard_key = pool.apply(_spawn_a_pool, (True,))
    assert allowed == "[3]"
    assert daemon and billiard_key  # put back as billiard made them
