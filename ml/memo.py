"""Bounded, thread-safe memos of per-layer results (so that a search is fast enough).

Used by the compiler (per layer, below) and by the path features (``ml.features.paths``,
per graph structure).

Why: a bred genome shares almost all of its layers with its parents, and building the
meta-device ``nn.Module`` of a layer (a ``Conv2d``'s ``reset_parameters`` runs torch's
decompositions even on meta) was most of the cost of compiling one. A layer's result depends
only on what it is (its name and evaluated arguments) and on the shape that flows into it, so
the compiler looks it up by that key before building it.

Keys spell each argument with ``repr``: Python's ``==`` would merge ``1``, ``1.0`` and ``True``
(and ``0.0`` with ``-0.0``), which build different modules. Only successes are remembered: a
layer that fails is rebuilt every time, so its error (with its own genome's offset) is exactly
what a fresh compile reports. Cached modules are shared between genomes and must be treated as
read-only (as the backbone parts already are); the compiler never puts one module object twice
into a genome (:func:`ml.arch.compiler.compile_genome`).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from cachetools import LRUCache

T = TypeVar("T")

#: Entries per compile memo. A meta-device module holds no storage: ~4 KB of Python objects per
#: entry (measured), so at most ~17 MB each. 2,000 bred genomes used ~250 entries.
MAX_ENTRIES = 4096


class Memo:
    """An LRU of at most ``maxsize`` results, safe to share between threads."""

    def __init__(self, maxsize: int = MAX_ENTRIES) -> None:
        self._cache: LRUCache[Hashable, Any] = LRUCache(maxsize=maxsize)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def maxsize(self) -> int:
        return int(self._cache.maxsize)

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, key: Hashable) -> Any:
        """The remembered result of ``key``, else None."""
        with self._lock:
            value = self._cache.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._cache[key] = value

    def get_or_build(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()`` once per key (a build that raises is not remembered)."""
        value = self.get(key)
        if value is None:
            value = build()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self.hits = self.misses = 0


def spelled(args: tuple) -> tuple[str, ...]:
    """Arguments as a key that keeps int/float/bool and the sign of zero apart."""
    return tuple(map(repr, args))
