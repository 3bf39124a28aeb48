"""Cache-miss genomes encoded and featurised in worker processes.

Parsing, compiling and encoding a genome is pure Python (~1.5 ms for a typical one), so one
process encodes one genome at a time whatever the cores; a batch of never-seen genomes for a
row-based predictor (stack, trees, gbt) is spread over ``processes`` workers instead, each of
which returns only what the caller caches: the canonical hash and the feature row (~9 KB), or
the genome's error. Graph records (~0.27 MB) never cross a process boundary.

* Workers are forked from a *fork server* (``multiprocessing``'s forkserver: a fresh,
  single-threaded interpreter, so never a fork of the threaded API process) that built every
  backbone variant once before its first fork (:mod:`ml.inference.preload`). A worker
  starts in milliseconds with the variants shared copy-on-write, and replacing a dead one costs
  a fork, not another warm-up. Workers run torch on one thread. :meth:`EncodingPool.ready` says
  when all of them answer; until then callers encode in process rather than wait.
* A worker's answer is the in-process answer: ``load`` → ``GenomeEncoder.record`` (the same
  compile and graph, the same ``INTERNAL_ERROR`` isolation) → the featuriser.
* The processes are :func:`ml.processes.process_pool`'s, like every other worker of the
  library: each ends with the process that owns the pool, even one killed by SIGKILL.
* A worker that dies (killed, out of memory, a crash in native code) loses no genome: the pool
  is replaced and the tasks it broke run again; tasks that break a second time are retried
  one genome per task, and a genome that kills a worker then is its ``INTERNAL_ERROR`` alone.

The featuriser is named by the predictor's ``feature_key`` (the encoding cache already keys rows
by it: one key, one featurisation; :mod:`ml.features.featurizers`), so no model is ever
pickled.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml.errors import GenomeError, internal_error
from ml.features.featurizers import ROW_FEATURIZERS
from ml.inference.chunks import run_isolated
from ml.memo import Memo
from ml.processes import pool_pids, process_pool, terminate

log = logging.getLogger(__name__)

#: The module the fork server imports before its first fork: it warms the server up.
PRELOAD = "ml.inference.preload"
#: Preloaded before it: the fork server ends with its owner while it imports and warms.
GUARD = "ml.orphan_guard"

#: How long a readiness probe keeps a worker busy, so that each worker answers one.
_PROBE_S = 0.2


@dataclass
class RowOutcome:
    """One genome's answer from a worker: hash and row, or its error (``row`` is None when
    the genome failed, or when only its featurisation failed)."""

    canonical_hash: str | None
    row: np.ndarray | None = None
    error: dict[str, Any] | None = None
    num_nodes: int = 0


def supports(feature_key: str | None) -> bool:
    """Whether rows of ``feature_key`` can be computed in a worker."""
    return feature_key in ROW_FEATURIZERS


# --- the worker side -------------------------------------------------------------------------

_ENCODER: Any = None


def _init_worker(max_length: int, warm: bool) -> None:
    """A worker's set-up. Forked from a warmed fork server, ``warm_process`` finds every
    variant built (a few milliseconds); otherwise it builds them here."""
    global _ENCODER
    import torch

    from ml.encoding.encoder import GenomeEncoder

    torch.set_num_threads(1)
    _ENCODER = GenomeEncoder(max_length=max_length)
    if warm:
        warm_process()


def warm_process() -> None:
    """What a long-lived encoding process builds before its first genome (the API process's
    warm-up thread and every encoder worker): every backbone variant, the heap frozen for the
    collector, then the variants' path tables (:func:`ml.features.paths.warm_layer_paths`)."""
    from ml.arch.backbones import warm_up
    from ml.features.paths import warm_layer_paths

    warm_up(freeze_heap=True)
    warm_layer_paths()


def _probe() -> tuple[int, bool]:
    """This worker's pid, and whether it started warm: forked from a fork server that had
    built every variant (the preload module is in the forked interpreter, and it warmed)."""
    import sys

    time.sleep(_PROBE_S)
    preload = sys.modules.get(PRELOAD)
    return os.getpid(), bool(getattr(preload, "WARMED", False))


#: Feature rows this process computed, by (feature key, canonical hash), with the graph's node
#: count. A bred genome is often a new spelling of one already encoded (a quarter of 3,000
#: offspring of the last real generation share their canonical form with another), and a row
#: depends only on the evaluated genome, so such a genome costs its parse and hash only.
#: ~9.5 KB per row: at most ~40 MB.
ROW_MEMO_ENTRIES = 4096
_ROWS = Memo(ROW_MEMO_ENTRIES)


def encode_rows(texts: Sequence[str], feature_key: str) -> list[RowOutcome]:
    """Encode (``load`` then ``GenomeEncoder.encode_genome``, as ``GenomeEncoder.encode``:
    only a ``GenomeError`` escapes them) and featurise ``texts`` in a worker; never raises for
    a bad genome. A genome whose canonical form was featurised here before (or earlier in this
    task) gets that row without being compiled again."""
    from ml.genome import canonical_hash, load

    outcomes: list[RowOutcome] = []
    records: list[Any] = []
    positions: list[int] = []
    twins: dict[str, tuple[int, list[int]]] = {}  # hash -> (its first, twins of this task)
    for text in texts:
        try:
            genome = load(text, max_length=_ENCODER.max_length)
            digest = canonical_hash(genome)
            known = _ROWS.get((feature_key, digest))
            if known is not None:
                outcomes.append(RowOutcome(digest, row=known[0], num_nodes=known[1]))
                continue
            if digest in twins:
                twins[digest][1].append(len(outcomes))
                outcomes.append(RowOutcome(digest))
                continue
            record = _ENCODER.record(genome, text, digest)
        except GenomeError as exc:  # whatever the text holds, it fails alone
            outcomes.append(RowOutcome(None, error=exc.with_text(text).to_dict()))
            continue
        twins[digest] = (len(outcomes), [])
        positions.append(len(outcomes))
        outcomes.append(RowOutcome(digest, num_nodes=int(record.num_nodes)))
        records.append(record)
    if records:
        kept, rows, _ = run_isolated(ROW_FEATURIZERS[feature_key], records, "featurising")
        for j, row in zip(kept, rows):
            first = outcomes[positions[j]]
            first.row = np.asarray(row)
            _ROWS.put((feature_key, first.canonical_hash), (first.row, first.num_nodes))
    for first, waiting in twins.values():
        for position in waiting:
            outcomes[position].row = outcomes[first].row
            outcomes[position].num_nodes = outcomes[first].num_nodes
    return outcomes


# --- the caller side -------------------------------------------------------------------------

def died_error() -> dict[str, Any]:
    return internal_error("encoding", RuntimeError(
        "the encoder process died while encoding this genome")).to_dict()


class EncodingPool:
    """``processes`` encoder workers (forked from the warmed fork server); :meth:`encode`
    keeps the input order."""

    def __init__(self, processes: int, max_length: int, warm: bool = True,
                 task: Callable[[Sequence[str], str], list[RowOutcome]] = encode_rows,
                 start_method: str = "forkserver") -> None:
        """``start_method`` "spawn" (each worker builds its own backbones, as before the fork
        server) is kept for ``benchmarks/pool_start.py``, which measures one against the other."""
        self.processes, self.max_length, self.warm, self.task = processes, max_length, warm, task
        self.start_method = start_method
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._ready = threading.Event()
        self._closed = False
        #: Workers replaced after one died, and genomes encoded here (for /readyz and tests).
        self.restarts = 0
        self.encoded = 0
        #: Whether every worker that answered the last readiness probe was forked from a warmed
        #: fork server (False until the pool is ready, and where the server started unwarmed:
        #: a ``warm=False`` pool started it first in this process).
        self.warm_start = False

    def start(self) -> None:
        """Start the workers (non-blocking); :meth:`ready` turns true once each has answered."""
        with self._lock:
            if self._executor is None and not self._closed:
                self._executor = self._new_executor()
                executor = self._executor
                threading.Thread(target=self._probe_all, args=(executor,), daemon=True,
                                 name="encoding-pool-probe").start()

    def ready(self) -> bool:
        return self._ready.is_set() and not self._closed

    def wait_ready(self, timeout: float | None = None) -> bool:
        self.start()
        return self._ready.wait(timeout)

    def close(self, wait: bool = True) -> None:
        """Stop the workers: after their current task (``wait``), or now (terminated)."""
        with self._lock:
            self._closed = True
            self._ready.clear()
            executor, self._executor = self._executor, None
        if executor is None:
            return
        if wait:
            executor.shutdown(wait=True, cancel_futures=True)
        else:
            terminate(executor)

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and monitoring)."""
        return pool_pids(self._executor)

    def _new_executor(self) -> ProcessPoolExecutor:
        preload = [GUARD, PRELOAD] if self.warm else []
        return process_pool(self.processes, start_method=self.start_method,
                            initializer=_init_worker, initargs=(self.max_length, self.warm),
                            preload=preload)

    def _probe_all(self, executor: ProcessPoolExecutor) -> None:
        """Ready when every worker has answered a probe (each probe keeps one busy)."""
        seen: dict[int, bool] = {}
        try:
            for _ in range(20):
                probes = [executor.submit(_probe) for _ in range(self.processes)]
                seen.update(p.result() for p in probes)
                if len(seen) >= self.processes:
                    break
        except Exception as exc:
            log.error("the encoding pool did not start: %s", exc)
            return
        if executor is self._executor:
            self.warm_start = all(seen.values())
            self._ready.set()

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A fresh executor in place of ``broken`` (once, whoever notices first)."""
        with self._lock:
            if self._executor is broken and not self._closed:
                self.restarts += 1
                log.error("an encoder process died; replacing the pool (restart %d)",
                          self.restarts)
                self._executor = self._new_executor()
            current = self._executor
        broken.shutdown(wait=False, cancel_futures=True)
        if current is None:
            raise RuntimeError("the encoding pool is closed")
        return current

    def encode(self, texts: Sequence[str], feature_key: str, task_size: int | None = None,
               deadline: float | None = None,
               on_result: Callable[[int, RowOutcome], None] | None = None
               ) -> list[RowOutcome]:
        """One outcome per text, in order. ``deadline`` (a ``time.monotonic()`` value): stop
        waiting then, cancel what has not started and raise ``TimeoutError``; ``on_result``
        (called as results arrive: in order, then any retried after a worker died) lets the
        caller keep what was done, and may raise to stop the rest."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("the encoding pool is not started")
        n = len(texts)
        size = task_size or max(8, min(64, -(-n // (4 * self.processes))))
        spans = [(start, min(n, start + size)) for start in range(0, n, size)]
        out: list[RowOutcome | None] = [None] * n
        broken = self._run(executor, texts, feature_key, spans, out, deadline, on_result)
        if broken:  # a worker died: its tasks and those queued behind it, again in a new pool
            executor = self._replace(executor)
            broken = self._run(executor, texts, feature_key, broken, out, deadline, on_result)
        if broken:  # broken twice: one genome per task, so only a culprit fails
            executor = self._replace(executor)
            singles = [(i, i + 1) for a, b in broken for i in range(a, b)]
            for span in singles:
                if self._run(executor, texts, feature_key, [span], out, deadline, on_result):
                    log.error("genome %d killed an encoder process again: INTERNAL_ERROR",
                              span[0])
                    out[span[0]] = RowOutcome(None, error=died_error())
                    if on_result is not None:
                        on_result(span[0], out[span[0]])
                    executor = self._replace(executor)
        self.encoded += n
        return [o for o in out if o is not None]

    def _run(self, executor: ProcessPoolExecutor, texts: Sequence[str], feature_key: str,
             spans: list[tuple[int, int]], out: list[RowOutcome | None],
             deadline: float | None, on_result: Callable[[int, RowOutcome], None] | None
             ) -> list[tuple[int, int]]:
        """Run ``spans`` of ``texts`` as tasks into ``out``; the spans a dying worker broke."""
        futures: list[Future] = []
        try:
            for a, b in spans:
                futures.append(executor.submit(self.task, list(texts[a:b]), feature_key))
        except BrokenProcessPool:
            pass  # the spans not submitted count as broken
        broken: list[tuple[int, int]] = []
        try:
            for index, (a, b) in enumerate(spans):
                if index >= len(futures):
                    broken.append((a, b))
                    continue
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    result = futures[index].result(timeout=timeout)
                except BrokenProcessPool:
                    broken.append((a, b))
                    continue
                for offset, outcome in enumerate(result):
                    out[a + offset] = outcome
                    if on_result is not None:
                        on_result(a + offset, outcome)
        except BaseException:  # past the deadline (TimeoutError), or on_result gave up
            for future in futures:
                future.cancel()
            raise
        return broken


_POOLS: dict[tuple[int, int, bool], EncodingPool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(processes: int, max_length: int, warm: bool = True) -> EncodingPool:
    """This process's encoder pool of these parameters (not started). One per process, shared
    by every engine in it: workers cost memory and seconds to start, and a second service app
    in the process (tests) needs no more."""
    key = (processes, max_length, warm)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = EncodingPool(*key)
        return pool


def close_pools() -> None:
    """Stop this process's shared pools now (their workers are terminated; the fork server
    then exits, its last client gone). A later :func:`shared_pool` makes a fresh pool."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close(wait=False)
