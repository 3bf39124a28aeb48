"""``dataset build``: stream a CSV (or a genome pool) into sharded on-disk graphs, in parallel.

The parent process reads rows, labels them (pure Python), and feeds chunks to worker processes
(:func:`ml.processes.process_pool`, ``spawn``: each worker imports torch and holds one encoder,
and ends with the build's process; the parent never imports torch, so it stays a few tens of
MB). At most ``2 x workers`` chunks are in flight, so memory does not grow
with the input size. Each finished chunk leaves ``shards/shard_NNNNNN.pt`` plus a JSON sidecar
(written last, atomically): on restart, chunks whose sidecar matches the build key (source
sha256 + encoder version + metrics + chunking) are skipped. The index and manifest are then
merged from the sidecars in row order.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml.datasets import shard_encoder as worker
from ml.datasets.atomic import atomic_write_bytes, atomic_write_json
from ml.datasets.labels import DEFAULT_METRICS, DIRECTIONS, BuildReport
from ml.datasets.memory import PeakMemory
from ml.datasets.source import (
    Chunk,
    build_key,
    check_metrics,
    file_digest,
    iter_chunks,
    iter_labelled_rows,
    iter_pool_rows,
)
from ml.processes import process_pool, terminate

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
INDEX = "index.csv"
ERRORS = "errors.jsonl"
SHARDS = "shards"
INDEX_COLUMNS = ("row", "canonical_hash", "individual_hash", "status", "shard", "position",
                 "generation", "duplicate", "failure_reason", "source_individual_hash")
#: Rows per shard. A worker holds a whole chunk of ``Data`` plus its packed copy and torch.save
#: buffer, so this bounds its transient memory: 256 -> 64 cut the 1-worker peak by ~110 MB RSS
#: (1,049 -> 940 MB summed, 1,000 sampled genomes) at no measurable cost in rows/s.
DEFAULT_CHUNK_SIZE = 64
#: Invalid genomes logged one by one; the rest are summarised (all of them go to errors.jsonl).
LOGGED_ERRORS = 20
#: The build's memory budget (RSS summed over its processes) and what one encoder worker takes
#: (measured on 1,000 sampled genomes, chunk 64: ~0.51 GB RSS after ``import torch``, ~0.73 GB
#: after torchvision + pyg + the encoder, ~0.9 GB peak while encoding, the extra ~0.15 GB being
#: the per-variant caches that ``ml.arch.backbones.warm_up()`` also fills). Two workers cannot
#: fit 1.5 GB summed RSS: their import floor alone is 2 x 0.73 GB + the parent (~25 MB), and
#: measured peaks are ~1.75-2.0 GB RSS / ~1.4-1.6 GB PSS. Hence the default of one worker
#: (2026-12-01: 900 MB summed RSS at 1,000 genomes, 924 MB at 100,000). The floor is the
#: CUDA build of torch this project pins: ``import torch`` is 508 MB RSS there (279 MB of it
#: anonymous, from the CUDA libraries' load) against 207 MB for the CPU build of 2.13.0.
MEMORY_BUDGET_MB = 1500
WORKER_RSS_MB = 1000


def default_workers() -> int:
    """As many workers as CPUs and the memory budget allow (at least one)."""
    return max(1, min(os.cpu_count() or 1, MEMORY_BUDGET_MB // WORKER_RSS_MB))


@dataclass
class BuildOptions:
    """What to build. ``metrics`` is ignored for a pool (unlabelled genomes)."""

    source: Path
    out: Path
    pool: bool = False
    metrics: tuple[str, ...] = DEFAULT_METRICS
    workers: int = field(default_factory=default_workers)
    chunk_size: int = DEFAULT_CHUNK_SIZE
    progress: bool = True
    #: Called with (rows done, rows expected) as chunks finish (the service's job progress).
    on_progress: Callable[[int, int], None] | None = None
    #: Polled before each chunk is submitted; True stops the build with :class:`BuildCancelled`
    #: (finished shards are kept, so a later build resumes from them).
    should_stop: Callable[[], bool] | None = None


class BuildCancelled(RuntimeError):
    """The build stopped because ``should_stop`` asked it to."""


def _is_done(folder: Path, chunk: Chunk, key: str) -> bool:
    """A chunk is finished when its shard exists and its sidecar names the same build key."""
    sidecar = folder / worker.sidecar_name(chunk.index)
    if not sidecar.exists() or not (folder / worker.shard_name(chunk.index)).exists():
        return False
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    return (meta.get("key"), meta.get("start"), meta.get("stop")) == (key, chunk.start, chunk.stop)


class _Dispatcher:
    """Submits chunks to the pool with a bounded number in flight; tracks progress and errors."""

    def __init__(self, pool: Any, workers: int, bar: Any, memory: PeakMemory,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self.pool, self.bar, self.memory = pool, bar, memory
        self.on_progress = on_progress
        self.rows_done = 0
        self.slots = threading.BoundedSemaphore(2 * workers)
        self.errors: list[BaseException] = []
        self.built = 0

    def submit(self, chunk: Chunk, shards_dir: Path, meta: dict[str, Any]) -> None:
        self.slots.acquire()
        if self.errors:
            self.slots.release()
            raise RuntimeError(f"a worker failed: {self.errors[0]!r}") from self.errors[0]
        future = self.pool.submit(worker.encode_chunk, chunk, str(shards_dir), meta)
        future.add_done_callback(self._finished)

    def _finished(self, future: Future) -> None:
        if future.cancelled():
            self.slots.release()
            return
        exc = future.exception()
        if exc is not None:
            self.errors.append(exc)
        else:
            self.built += 1
            self.advance(future.result()["rows"])
        self.slots.release()

    def advance(self, rows: int) -> None:
        self.bar.update(rows)
        self.bar.set_postfix(rss_mb=round(self.memory.last_rss / 2**20), refresh=False)
        self.rows_done += rows
        if self.on_progress is not None:
            self.on_progress(self.rows_done, int(self.bar.total or 0))


def _rows(opts: BuildOptions) -> Iterator[Any]:
    return iter_pool_rows(opts.source) if opts.pool else iter_labelled_rows(opts.source,
                                                                            opts.metrics)


def build_dataset(opts: BuildOptions) -> dict[str, Any]:
    """Build (or resume) the dataset in ``opts.out``; returns the manifest."""
    from tqdm import tqdm

    if opts.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {opts.workers}")
    if not opts.source.is_file():
        raise OSError(f"{opts.source}: no such file")
    started = time.perf_counter()
    if not opts.pool:
        check_metrics(opts.source, opts.metrics)
    shards_dir = opts.out / SHARDS
    shards_dir.mkdir(parents=True, exist_ok=True)
    sha, approx_rows = file_digest(opts.source)
    hashed = time.perf_counter()
    mode = "pool" if opts.pool else "labelled"
    metrics = () if opts.pool else opts.metrics
    with PeakMemory() as memory, _terminate_as_interrupt():
        pool = _start_pool(opts.workers)
        try:
            vocab = pool.submit(worker.describe).result()
            key = build_key(sha, vocab["encoder_version"], metrics, opts.chunk_size, mode)
            meta = {"key": key, "encoder_version": vocab["encoder_version"],
                    "metrics": list(metrics)}
            total = max(0, approx_rows - (0 if opts.pool else 1))
            with tqdm(total=total, unit="rows", file=sys.stderr, disable=not opts.progress,
                      desc="dataset build", dynamic_ncols=True) as bar:
                dispatch = _Dispatcher(pool, opts.workers, bar, memory, opts.on_progress)
                chunks = reused = 0
                for chunk in iter_chunks(_rows(opts), opts.chunk_size):
                    if opts.should_stop is not None and opts.should_stop():
                        raise BuildCancelled(f"build stopped after {chunks} chunks")
                    chunks += 1
                    if _is_done(shards_dir, chunk, key):
                        reused += 1
                        dispatch.advance(len(chunk.rows))
                        continue
                    dispatch.submit(chunk, shards_dir, meta)
                pool.shutdown(wait=True)
                if dispatch.errors:
                    raise RuntimeError(f"a worker failed: {dispatch.errors[0]!r}")
        finally:
            terminate(pool)
        encoded = time.perf_counter()
        counts = _merge(opts.out, chunks)
    _remove_stale(shards_dir, chunks)
    finished = time.perf_counter()
    manifest = {
        "format": "nas-surrogate-dataset-v1",
        "encoder_version": vocab["encoder_version"], "encoding": "combined",
        "vocabularies": {k: v for k, v in vocab.items() if k != "encoder_version"},
        "metrics": list(metrics),
        "directions": {m: DIRECTIONS.get(m, 0) for m in metrics},
        "counts": counts.__dict__,
        "source": {"path": str(opts.source), "sha256": sha, "mode": mode},
        "build_key": key,
        "shards": [worker.shard_name(i) for i in range(chunks)],
        "index": INDEX, "errors": ERRORS,
        "parameters": {"workers": opts.workers, "chunk_size": opts.chunk_size,
                       "start_method": "spawn"},
        "timings": {"hash_s": round(hashed - started, 3), "encode_s": round(encoded - hashed, 3),
                    "total_s": round(finished - started, 3),
                    "rows_per_s": round(counts.rows / max(encoded - hashed, 1e-9), 2),
                    "shards_built": dispatch.built, "shards_reused": reused},
        "memory": {"peak_rss_sum_mb": round(memory.peak_rss / 2**20, 1),
                   "peak_pss_sum_mb": round(memory.peak_pss / 2**20, 1)},
    }
    atomic_write_json(opts.out / MANIFEST, manifest)
    return manifest


class _terminate_as_interrupt:
    """Treat SIGTERM like Ctrl-C while building, so workers are stopped and finished shards kept
    (the next run resumes from them). Only possible from the main thread."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _start_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned workers (no inherited torch state) with few malloc arenas: encoding allocates
    and frees whole networks, and glibc's per-thread arenas otherwise hold on to that memory."""
    return process_pool(workers, start_method="spawn", initializer=worker.init_worker,
                        malloc_arenas=2)


def _merge(out: Path, chunks: int) -> BuildReport:
    """Write index.csv and errors.jsonl from the sidecars, in row order; count statuses."""
    counts, seen = BuildReport(), set()
    shards_dir = out / SHARDS

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as index, open(out / f".{ERRORS}.tmp", "w") as errors:
            writer = csv.writer(index)
            writer.writerow(INDEX_COLUMNS)
            for i in range(chunks):
                sidecar = json.loads((shards_dir / worker.sidecar_name(i)).read_text())
                counts.rows += sidecar["rows"]
                for error in sidecar["errors"]:
                    if counts.invalid_genome < LOGGED_ERRORS:
                        log.warning("row %d skipped: [%s] %s", error["row"], error["code"],
                                    error["message"])
                    counts.count_error(error["code"])
                    errors.write(json.dumps(error) + "\n")
                for row, chash, ihash, status, position, gen, reason, source_hash in \
                        sidecar["entries"]:
                    duplicate = chash in seen
                    seen.add(chash)
                    counts.duplicates += duplicate
                    counts.individual_hash_mismatches += bool(source_hash) and source_hash != ihash
                    setattr(counts, status, getattr(counts, status) + 1)
                    if reason:
                        counts.count_reason(reason)
                    writer.writerow((row, chash, ihash, status, sidecar["shard"], position,
                                     gen, int(duplicate), reason or "", source_hash))
        os.replace(out / f".{ERRORS}.tmp", out / ERRORS)
        if counts.invalid_genome > LOGGED_ERRORS:
            log.warning("%d invalid genomes in all, by code %s; every one is in %s",
                        counts.invalid_genome, counts.error_codes, ERRORS)

    atomic_write_bytes(out / INDEX, write)
    return counts


def _remove_stale(shards_dir: Path, chunks: int) -> None:
    """Drop shards of an earlier, longer build of another source in the same folder."""
    for path in shards_dir.glob("shard_*"):
        try:
            number = int(path.stem.split("_")[1])
        except (IndexError, ValueError):
            continue
        if number >= chunks:
            path.unlink()
