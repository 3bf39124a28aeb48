"""Worker-process side of the build: one GenomeEncoder per process, one shard per chunk.

The parent sends a :class:`~ml.datasets.source.Chunk`; the worker encodes it, writes the shard and
then its JSON sidecar (both atomically). The sidecar is the "done" marker and carries everything
the parent needs for the index and manifest, so the parent never loads torch or a shard.
torch is imported here lazily, in the worker, never at module import in the parent.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ml.datasets.source import Chunk

log = logging.getLogger(__name__)
_ENCODER: Any = None


def shard_name(index: int) -> str:
    return f"shard_{index:06d}.pt"


def sidecar_name(index: int) -> str:
    return f"shard_{index:06d}.json"


def init_worker() -> None:
    """Pool initializer: build the process's encoder once (imports torch here). The pool
    (:func:`ml.processes.process_pool`) has tied the worker's life to the build's process."""
    global _ENCODER
    import torch

    from ml.encoding.encoder import GenomeEncoder

    torch.set_num_threads(1)  # the build's parallelism is across processes, not inside one
    _ENCODER = GenomeEncoder()


def describe() -> dict[str, Any]:
    """The encoder's version and vocabularies, for the manifest (asked once by the parent)."""
    from ml.encoding.encoder import ENCODER_VERSION, GLOBAL_FEATURES
    from ml.encoding.hyperparams import HYPERPARAM_COLUMNS, HYPERPARAM_KEYS
    from ml.encoding.vocab import MODULE_TYPES

    return {"encoder_version": ENCODER_VERSION, "module_types": ["other", *MODULE_TYPES],
            "hyperparam_keys": list(HYPERPARAM_KEYS),
            "hyperparam_columns": list(HYPERPARAM_COLUMNS),
            "global_features": list(GLOBAL_FEATURES)}


def _status(labels: Any) -> str:
    if labels is None:
        return "unlabelled"
    return "failed_evaluation" if labels.failed else "ok"


def encode_chunk(chunk: Chunk, shards_dir: str, meta: dict[str, Any],
                 encoder: Any = None) -> dict[str, Any]:
    """Encode one chunk, write its shard and sidecar; return the sidecar. ``encoder`` (an
    in-process caller's own) avoids the worker process's setup (one torch thread)."""
    from ml.datasets.atomic import atomic_write_json
    from ml.datasets.records import make_record
    from ml.datasets.storage import save_shard
    from ml.errors import GenomeError, internal_error

    if encoder is None:
        if _ENCODER is None:
            init_worker()
        encoder = _ENCODER
    started = time.perf_counter()
    records, entries, errors = [], [], []
    for item in chunk.rows:
        try:
            encoded = encoder.encode(item.genome)
            record = make_record(encoded, item.labels, item.row, item.generation)
        except Exception as exc:
            error = exc if isinstance(exc, GenomeError) else internal_error("recording", exc)
            log.warning("row %d skipped: %s", item.row, error)
            errors.append({"row": item.row, "code": error.code, "message": error.message,
                           "offset": error.offset})
            continue
        entries.append([item.row, encoded.canonical_hash, encoded.individual_hash,
                        _status(item.labels), len(records), item.generation,
                        None if item.labels is None else item.labels.reason,
                        item.individual_hash or ""])
        records.append(record)
        del encoded, record  # the compiled network and graph are not needed past the record
    folder = Path(shards_dir)
    shard_meta = {**meta, "chunk": chunk.index, "start": chunk.start, "stop": chunk.stop}
    save_shard(folder / shard_name(chunk.index), records, shard_meta)
    sidecar = {**shard_meta, "shard": shard_name(chunk.index), "rows": len(chunk.rows),
               "count": len(records), "entries": entries, "errors": errors,
               "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_json(folder / sidecar_name(chunk.index), sidecar)
    del records
    _release_memory()
    return sidecar


def _release_memory() -> None:
    """Hand freed heap back to the OS between chunks (compiled networks are large and
    short-lived; without this glibc keeps the high-water mark and RSS creeps up)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
