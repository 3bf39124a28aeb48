"""Reference implementations of the feature rows: plain per-record loops that the batched,
memoised library code (:mod:`ml.features.paths`, :mod:`ml.features.vectors`) must equal bit for
bit. They are test oracles, so they live with the tests, not in the library."""
from __future__ import annotations

import numpy as np
from torch_geometric.data import Data

from ml.encoding.vocab import NUM_NODE_TYPES
from ml.features.paths import (
    _PATH_COUNT_CAP,
    _SUMMARY_DIM,
    _path_summary,
    _weight_codes,
    _weight_table,
    node_mixing,
)
from ml.features.vectors import genome_vector, hyperparam_summary_full, op_histogram


def path_features_reference(record: Data) -> np.ndarray:
    """One record's :func:`_path_block` row by a plain topological-order loop (tests compare).

    Over all source -> sink paths: max and min per-type node counts, mixing-node counts and
    lengths (log1p), log path count, fraction of paths without a mixing node, the mean path's
    counts (log1p); then the log1p histogram of (source type, target type) edges. A cyclic
    graph gets zeros for the path part.
    """
    types = record.node_type.numpy()
    n = len(types)
    src, dst = (record.edge_index.numpy() if record.edge_index.numel()
                else np.zeros((2, 0), dtype=np.int64))
    pairs = np.zeros(NUM_NODE_TYPES * NUM_NODE_TYPES)
    for s, d in zip(src, dst):
        pairs[types[s] * NUM_NODE_TYPES + types[d]] += 1
    mixing = node_mixing(record)
    weights = _weight_table(n)[_weight_codes(types, mixing)]
    preds: list[list[int]] = [[] for _ in range(n)]
    for s, d in zip(src, dst):
        preds[d].append(int(s))
    waiting = np.bincount(dst, minlength=n)
    ready = [v for v in range(n) if waiting[v] == 0]
    top, low = weights.copy(), weights.copy()
    count, plain, done, order = np.zeros(n), np.zeros(n), 0, []
    while ready:
        v = ready.pop()
        done += 1
        if preds[v]:
            top[v] += np.max(top[preds[v]], axis=0)
            low[v] += np.min(low[preds[v]], axis=0)
            count[v] = min(sum(count[p] for p in preds[v]), _PATH_COUNT_CAP)
            plain[v] = 0.0 if mixing[v] else min(sum(plain[p] for p in preds[v]), _PATH_COUNT_CAP)
        else:
            count[v], plain[v] = 1.0, float(not mixing[v])
        order.append(v)
        for d in dst[src == v]:
            waiting[d] -= 1
            if waiting[d] == 0:
                ready.append(int(d))
    if n == 0 or done < n:  # no paths to summarise; the edge histogram still holds
        return np.concatenate([np.zeros(_SUMMARY_DIM), np.log1p(pairs)])
    onward = np.zeros(n)  # paths from each node to a sink
    for v in reversed(order):
        succs = dst[src == v]
        onward[v] = min(sum(onward[d] for d in succs), _PATH_COUNT_CAP) if succs.size else 1.0
    through = np.bincount(_weight_codes(types, mixing), weights=count * onward,
                          minlength=2 * NUM_NODE_TYPES)
    sinks = np.flatnonzero(np.bincount(src, minlength=n) == 0)
    summary = _path_summary(top[sinks].max(axis=0), low[sinks].min(axis=0),
                            float(count[sinks].sum()), float(plain[sinks].sum()), through)
    return np.concatenate([summary, np.log1p(pairs)])


def tabular_features_reference(records: list[Data]) -> np.ndarray:
    """The straightforward per-record design matrix (what :func:`tabular_features` must equal)."""
    return np.stack([np.concatenate([genome_vector(r), op_histogram(r), hyperparam_summary_full(r),
                                     path_features_reference(r)])
                     for r in records])
