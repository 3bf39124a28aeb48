"""Compiled loops behind the row models' predictions: the tree walk and the RBF kernel sums.

Why compiled: a forest walk is a data-dependent gather per (row, tree, level), millions of them
for a batch, and numpy pays a full pass over memory per level; the kernel sum must give a row
the same bits whatever batch it came in (the service scores in chunks and caches rows), which a
BLAS matrix product does not promise (its blocking follows the batch). numba compiles both loops
once per machine (the machine code is kept beside this file, or in numba's user cache when
that is read-only; without either, once per process). This module imports numba, so callers
import it lazily: the first prediction of a process pays the import and, on a cold cache, the
compilation.

Arithmetic is plain IEEE (no fast-math, so no reassociation or fused multiply-add): every
output is the same sequence of operations whatever the batch size or the row's position. That
also makes rows independent, so :func:`by_rows` splits a large batch over a few threads (the
loops release the GIL) with the same bits as one thread.
"""
from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

#: Rows below which a batch is not split (a thread hand-off costs tens of microseconds; a
#: cached /predict chunk of 2,000 rows is where the split pays).
SPLIT_MIN_ROWS = 256
#: Threads a batch is split over: the cores this process may use, at most 4.
THREADS = max(1, min(4, len(os.sched_getaffinity(0))))
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def by_rows(loop: Callable[..., None], x: np.ndarray, *args: Any, out: np.ndarray) -> None:
    """``loop(x, *args, out)`` with the rows of ``x`` and ``out`` split over :data:`THREADS`
    threads (one process-wide executor, made on first use), or in this thread for a small
    batch. Every row's result is the same bits either way (see the module's docstring)."""
    parts = min(THREADS, len(x) // SPLIT_MIN_ROWS)
    if parts <= 1:
        loop(x, *args, out)
        return
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(THREADS, thread_name_prefix="compiled-rows")
    bounds = np.linspace(0, len(x), parts + 1).astype(int)
    futures = [_executor.submit(loop, x[a:b], *args, out[a:b])
               for a, b in itertools.pairwise(bounds)]
    for future in futures:
        future.result()


def _jit(func: Callable[..., None]) -> Callable[..., None]:
    """``numba.njit`` with the machine code cached on disk where numba finds a writable place
    (beside this file or its user cache); compiled once per process where it finds none."""
    try:
        return numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(func)


#: Rows walked together: their features are copied feature-major (one row's path then reads
#: a column, and rows sharing a node share its cache line); 64 x ~1,200 features fits L2.
ROW_BLOCK = 64
#: Rows sharing one pass over the support vectors in the kernel sum.
KERNEL_BLOCK = 4


@_jit
def walk(x: np.ndarray, feature: np.ndarray, threshold: np.ndarray, children: np.ndarray,
         nan_right: np.ndarray, value: np.ndarray, roots: np.ndarray, depths: np.ndarray,
         nan_aware: bool, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[i, t]`` = the leaf value row ``i`` reaches in tree ``t``.

    ``children[2 * node + go_right]`` is the next node (a leaf points to itself, so every row
    takes ``depths[t]`` steps without a branch on whether it has arrived); a row goes right
    unless ``x <= threshold`` (NaN goes right) or, with ``nan_aware``, by ``nan_right``."""
    n, d = x.shape
    trees = roots.shape[0]
    node = np.empty(ROW_BLOCK, np.int32)
    xt = np.empty((d, ROW_BLOCK))
    for start in range(0, n, ROW_BLOCK):
        m = min(ROW_BLOCK, n - start)
        for i in range(m):
            for j in range(d):
                xt[j, i] = x[start + i, j]
        for t in range(trees):
            root = roots[t]
            for i in range(m):
                node[i] = root
            for _ in range(depths[t]):
                if nan_aware:
                    for i in range(m):
                        c = node[i]
                        v = xt[feature[c], i]
                        go = not v <= threshold[c]
                        if v != v:
                            go = nan_right[c]
                        node[i] = children[2 * c + go]
                else:
                    for i in range(m):
                        c = node[i]
                        node[i] = children[2 * c + (not xt[feature[c], i] <= threshold[c])]
            for i in range(m):
                out[start + i, t] = value[node[i]]


@_jit
def rbf_sums(x: np.ndarray, columns: np.ndarray, mean: np.ndarray, scale: np.ndarray,
             support_t: np.ndarray, dual: np.ndarray, gamma: float,
             out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[i, k] += sum_s dual[s, k] * exp(-gamma * |xs_i - sv_s|^2)`` with ``xs_i`` row ``i``
    in the kernel's space (``(x[i, columns] - mean) / scale``, non-finite as 0: the same
    operations as :meth:`ml.models.kernel.KernelSVR.transform`) and the squared distance as
    ``|x|^2 + |sv|^2 - 2 x.sv`` (clamped at 0). ``support_t`` is [D, S] (feature-major, so the
    dot products of a row with every support vector advance together along the features)."""
    n = x.shape[0]
    dims, sv = support_t.shape
    outputs = dual.shape[1]
    sv_sq = np.zeros(sv)
    for j in range(dims):
        for s in range(sv):
            sv_sq[s] += support_t[j, s] * support_t[j, s]
    dots = np.empty((KERNEL_BLOCK, sv))
    x_sq = np.empty(KERNEL_BLOCK)
    for start in range(0, n, KERNEL_BLOCK):
        m = min(KERNEL_BLOCK, n - start)
        for r in range(m):
            x_sq[r] = 0.0
            for s in range(sv):
                dots[r, s] = 0.0
        for j in range(dims):
            for r in range(m):
                xv = (x[start + r, columns[j]] - mean[j]) / scale[j]
                if not np.isfinite(xv):
                    xv = 0.0
                x_sq[r] += xv * xv
                for s in range(sv):
                    dots[r, s] += xv * support_t[j, s]
        for r in range(m):
            for s in range(sv):
                d2 = x_sq[r] + sv_sq[s] - 2.0 * dots[r, s]
                k = np.exp(-gamma * max(d2, 0.0))
                for o in range(outputs):
                    out[start + r, o] += dual[s, o] * k


@_jit
def interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, start: np.ndarray, low: float,
           step: float, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``np.interp(x, xp, fp)`` for 1-d ``x``, the same value bit for bit: numpy's bracket ``j``
    (the last knot <= x) and its arithmetic (``slope * (x - xp[j]) + fp[j]``, the slope from
    ``j`` to ``j + 1``, the fallbacks for a NaN result), where numpy finds ``j`` by binary
    search per value. Here ``start[b]`` is the bracket at the left edge of bucket ``b`` of an
    even grid from ``low`` in steps of ``step`` (:func:`interp_grid`), so finding ``j`` is a
    step or two from there, whichever way a rounding points."""
    last = xp.shape[0] - 1
    buckets = start.shape[0]
    for i in range(x.shape[0]):
        v = x[i]
        if v != v:
            out[i] = v
            continue
        if v < xp[0]:
            out[i] = fp[0]
            continue
        if v > xp[last]:
            out[i] = fp[last]
            continue
        b = int((v - low) / step)
        b = min(max(b, 0), buckets - 1)
        j = start[b]
        while j > 0 and xp[j] > v:
            j -= 1
        while j < last and xp[j + 1] <= v:
            j += 1
        if j == last or xp[j] == v:
            out[i] = fp[j]
            continue
        slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
        r = slope * (v - xp[j]) + fp[j]
        if r != r:
            r = slope * (v - xp[j + 1]) + fp[j + 1]
            if r != r and fp[j] == fp[j + 1]:
                r = fp[j]
        out[i] = r


def interp_grid(xp: np.ndarray, per_knot: int = 8) -> tuple[np.ndarray, float, float]:
    """``(start, low, step)`` for :func:`interp` on knots ``xp`` (ascending, at least two):
    ``per_knot`` buckets per knot over ``[xp[0], xp[-1]]``."""
    buckets = max(1, per_knot * len(xp))
    low, step = float(xp[0]), float(xp[-1] - xp[0]) / buckets
    if not step > 0:
        return np.zeros(1, np.int64), low, 1.0
    edges = low + step * np.arange(buckets)
    start = np.clip(np.searchsorted(xp, edges, side="right") - 1, 0, len(xp) - 1)
    return start.astype(np.int64), low, step


def prime() -> None:
    """Compile (or load from numba's cache) every loop for the argument types the row models
    pass, so a service's first prediction does not pay it (seconds on a machine whose cache is
    cold). The arrays are tiny and of exactly those types (C-contiguous, the same dtypes);
    ``tests/ml/models/test_stack.py`` checks that a real prediction then compiles nothing new."""
    x, out = np.zeros((1, 1)), np.empty((1, 1))
    walk(x, np.zeros(1, np.int32), np.zeros(1), np.zeros(2, np.int32), np.zeros(1, np.bool_),
         np.zeros(1), np.zeros(1, np.int32), np.zeros(1, np.int32), False, out)
    rbf_sums(x, np.zeros(1, np.int64), np.zeros(1), np.ones(1), np.zeros((1, 1)),
             np.zeros((1, 1)), 1.0, out)
    xp = np.array([0.0, 1.0])
    start, low, step = interp_grid(xp)
    values = np.zeros(1)
    interp(values, xp, np.array([0.0, 1.0]), start, low, step, np.empty_like(values))
