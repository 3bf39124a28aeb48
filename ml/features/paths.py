"""Input -> output path structure of a graph: the path block of the tree models' rows.

Over all source -> sink paths of a graph: the max and min per-type node counts, mixing-node
counts and lengths, the path count, the mixing-free fraction and the mean path's counts; then
the histogram of (source type, target type) edges. Three ways to the same bits: a plain
topological-order loop (the tests' oracle, ``tests/feature_reference.py``), a batched Kahn
sweep over any graphs (:func:`_path_block`), and, for genome graphs that carry their layer
segments, a composition of per-layer tables (:func:`_composed_row`), with a memo by structure
in front (:func:`path_block`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch_geometric.data import Data

from ml.encoding.vocab import MODULE_TYPES, NUM_NODE_TYPES
from ml.memo import Memo

#: Module types that mix values across positions (the grid analogue of a graph's message
#: passing): convolutions and pooling. How many of them a path stacks sets its receptive field.
MIXING_MODULES = ("conv.Conv2d", "conv.ConvTranspose2d", "pooling.")
_MIXING_TYPES = np.array([False] + [any(m in name for m in MIXING_MODULES)
                                    for name in MODULE_TYPES])
#: Columns propagated along paths: one per node type, then "mixing", then "any node" (length).
_PATH_COLUMNS = NUM_NODE_TYPES + 2
#: Path counts saturate here so every sum stays an exact integer in float64 (order-free).
_PATH_COUNT_CAP = float(2 ** 40)
#: Path summary: max, min and mean per column, log path count, mixing-free fraction.
_SUMMARY_DIM = 3 * _PATH_COLUMNS + 2
PATH_FEATURE_DIM = _SUMMARY_DIM + NUM_NODE_TYPES * NUM_NODE_TYPES


def node_mixing(record: Data) -> np.ndarray:
    """Per-node bool: does the op mix neighbours/positions? The record's own ``node_mixing``
    when it carries one (external benchmarks with their own vocabulary), else by module type."""
    own = getattr(record, "node_mixing", None)
    if own is not None:
        return own.numpy().astype(bool).reshape(-1)
    return _MIXING_TYPES[record.node_type.numpy()]


def _weight_table(largest: int) -> np.ndarray:
    """[2 * types, _PATH_COLUMNS]: what a node of each (type, mixing) code adds to a path:
    one-hot type, mixing flag, 1. int16 when the graphs are small enough (counts never exceed
    ``largest``, the biggest graph's node count): a quarter of int64's memory traffic."""
    small = np.iinfo(np.int16).max > largest
    table = np.zeros((NUM_NODE_TYPES * 2, _PATH_COLUMNS), dtype=np.int16 if small else np.int32)
    table[:, NUM_NODE_TYPES + 1] = 1
    table[NUM_NODE_TYPES:, NUM_NODE_TYPES] = 1
    table[np.arange(2 * NUM_NODE_TYPES), np.tile(np.arange(NUM_NODE_TYPES), 2)] = 1
    return table


def _weight_codes(types: np.ndarray, mixing: np.ndarray) -> np.ndarray:
    """Row of :func:`_weight_table` for each node."""
    return types + NUM_NODE_TYPES * mixing.astype(np.int64)


def _path_summary(top: np.ndarray, low: np.ndarray, paths: float, plain: float,
                  through: np.ndarray) -> np.ndarray:
    """One genome's path block from its sink reductions (shared by batch and reference).
    ``through`` [2 * types]: per weight code, the summed number of paths through its nodes."""
    mean = _mean_path(through) / paths if paths > 0 else np.zeros(_PATH_COLUMNS)
    return np.concatenate([np.log1p(top.astype(np.float64)), np.log1p(low.astype(np.float64)),
                           [np.log1p(paths), plain / paths if paths > 0 else 0.0],
                           np.log1p(mean)])


def _mean_path(through: np.ndarray) -> np.ndarray:
    """Per-column totals over all paths from per-code path-through sums: a node adds its
    weights (:func:`_weight_table`) once to every path through it, and the paths through a
    node number (paths into it) x (paths out of it). Written out per column, not as a matmul,
    so a genome's values never depend on the batch it came in (BLAS blocking would)."""
    types, mixing = through[..., :NUM_NODE_TYPES], through[..., NUM_NODE_TYPES:]
    return np.concatenate([types + mixing, mixing.sum(axis=-1, keepdims=True),
                           through.sum(axis=-1, keepdims=True)], axis=-1)


def _out_edges(frontier: np.ndarray, start: np.ndarray, degree: np.ndarray) -> np.ndarray:
    """Indices (into the src-sorted edge list) of every edge leaving ``frontier``."""
    lengths = degree[frontier]
    first = np.repeat(start[frontier] - np.cumsum(lengths) + lengths, lengths)
    return first + np.arange(int(lengths.sum()))


def _contract_chains(src: np.ndarray, dst: np.ndarray, codes: np.ndarray, table: np.ndarray,
                     total: int) -> tuple[np.ndarray, ...]:
    """Merge every run of single-input links (a node whose one predecessor has no other
    successor) into the run's first node: a path through a run gains the run's summed weights
    whichever way it is walked, so the sweep only needs the runs (about a third of the nodes
    of a genome graph). Returns the runs' first nodes, each node's run id, the runs' summed
    weights and the edges between runs (as run ids)."""
    fan_in = np.bincount(dst, minlength=total)
    fan_out = np.bincount(src, minlength=total)
    node = np.arange(total)
    pred = node.copy()
    lone = fan_in[dst] == 1
    pred[dst[lone]] = src[lone]
    head = np.where((fan_in == 1) & (fan_out[pred] == 1) & (pred != node), pred, node)
    for _ in range(64):  # pointer jumping: log2(longest run) rounds
        nxt = head[head]
        if np.array_equal(nxt, head):
            break
        head = nxt
    head = np.where(head[head] == head, head, node)  # a pure cycle never settles: unmerged
    runs = np.flatnonzero(head == node)
    run_of = (np.cumsum(head == node) - 1)[head]
    # (run, code) counts as a sparse matrix times the table: no [nodes, columns] intermediate.
    counts = sparse.csr_matrix((np.ones(total, dtype=np.int32), (run_of, codes)),
                               shape=(len(runs), len(table)))
    merged = (counts @ table.astype(np.int32)).astype(table.dtype)
    keep = head[dst] == dst
    return runs, run_of, merged, run_of[src[keep]], run_of[dst[keep]]


def _paths_to_sinks(src: np.ndarray, dst: np.ndarray, nodes: int) -> np.ndarray:
    """Number of paths from each node to a sink (capped like the forward counts), by a Kahn
    sweep over the reversed edges; nodes on a cycle keep a partial count (their genome's
    path block is zeroed anyway)."""
    by_dst = np.argsort(dst, kind="stable")
    rsrc, rdst = dst[by_dst], src[by_dst]  # reversed edges, sorted by their source
    degree = np.bincount(rsrc, minlength=nodes)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]]).astype(np.int64)
    waiting = np.bincount(rdst, minlength=nodes)
    onward = (waiting == 0).astype(np.float64)
    frontier = np.flatnonzero(waiting == 0)
    while frontier.size:
        out = _out_edges(frontier, start, degree)
        s, d = rsrc[out], rdst[out]
        np.add.at(onward, d, onward[s])  # exact: integers far below 2^53
        np.subtract.at(waiting, d, 1)
        frontier = np.unique(d[waiting[d] == 0])
        onward[frontier] = np.minimum(onward[frontier], _PATH_COUNT_CAP)
    return onward


def _path_block(records: list[Data]) -> np.ndarray:
    """[n, PATH_FEATURE_DIM] the tests' per-record reference row of every record at once.

    All graphs are stacked into one, single-input runs are merged (:func:`_contract_chains`)
    and the runs are swept in Kahn order: each step takes the runs whose predecessors are all
    final and pushes their running max/min counts along their out-edges (a copy for one-input
    targets, a sorted ``reduceat`` for joins), promoting the targets with nothing pending.
    Steps = the longest run path in the batch (hundreds), each a few numpy calls, instead of a
    Python loop over every node of every genome: 2,000 real genomes in ~0.4 s on one core.
    """
    sizes = np.array([len(r.node_type) for r in records], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    total = int(sizes.sum())
    owner = np.repeat(np.arange(len(records)), sizes)
    types = torch.cat([r.node_type for r in records]).numpy().astype(np.int64)
    mixing_nodes = (np.concatenate([node_mixing(r) for r in records]) if total
                    else np.zeros(0, bool))
    edges = [r.edge_index.numpy().reshape(2, -1) + b for r, b in zip(records, base)]
    src, dst = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), dtype=np.int64)
    pairs = np.bincount(owner[src] * NUM_NODE_TYPES ** 2 + types[src] * NUM_NODE_TYPES
                        + types[dst], minlength=len(records) * NUM_NODE_TYPES ** 2)
    pairs = np.log1p(pairs.reshape(len(records), -1).astype(np.float64))

    table = _weight_table(int(sizes.max(initial=0)))
    sinks = np.flatnonzero(np.bincount(src, minlength=total) == 0)
    codes = _weight_codes(types, mixing_nodes)
    runs, run_of, weights, src, dst = _contract_chains(src, dst, codes, table, total)
    nodes, run_owner = len(runs), owner[runs]
    mixing = weights[:, NUM_NODE_TYPES] > 0
    by_src = np.argsort(src, kind="stable")
    src, dst = src[by_src], dst[by_src]
    degree = np.bincount(src, minlength=nodes)
    start = np.concatenate([[0], np.cumsum(degree)[:-1]]).astype(np.int64)
    waiting = np.bincount(dst, minlength=nodes)
    fan_in = waiting.copy()
    top = np.where((waiting == 0)[:, None], weights, 0)
    low = np.where((waiting == 0)[:, None], weights, np.iinfo(weights.dtype).max)
    count = (waiting == 0).astype(np.float64)
    plain = ((waiting == 0) & ~mixing).astype(np.float64)
    done = np.zeros(nodes, dtype=bool)
    frontier = np.flatnonzero(waiting == 0)
    while frontier.size:
        done[frontier] = True
        out = _out_edges(frontier, start, degree)
        s, d = src[out], dst[out]
        single = fan_in[d] == 1  # most nodes have one input: final in one copy, no ufunc.at
        one, src_one = d[single], s[single]
        top[one] = top[src_one] + weights[one]
        low[one] = low[src_one] + weights[one]
        count[one] = count[src_one]
        plain[one] = np.where(mixing[one], 0.0, plain[src_one])
        by_dst = np.argsort(d[~single], kind="stable")  # group joins by target: reduceat
        s, d = s[~single][by_dst], d[~single][by_dst]
        if d.size:
            first = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
            target = d[first]
            top[target] = np.maximum(top[target], np.maximum.reduceat(top[s], first, axis=0))
            low[target] = np.minimum(low[target], np.minimum.reduceat(low[s], first, axis=0))
            count[target] += np.add.reduceat(count[s], first)
            plain[target] += np.add.reduceat(plain[s], first)
            waiting[target] -= np.diff(np.r_[first, d.size])
        many = np.unique(d[waiting[d] == 0])
        top[many] += weights[many]
        low[many] += weights[many]
        count[many] = np.minimum(count[many], _PATH_COUNT_CAP)
        plain[many] = np.where(mixing[many], 0.0, np.minimum(plain[many], _PATH_COUNT_CAP))
        frontier = np.concatenate([one, many])

    # Paths through a run = paths into it x paths out of it (every node of a run shares both).
    through = count * _paths_to_sinks(src, dst, nodes)
    through = np.bincount(owner * 2 * NUM_NODE_TYPES + codes, weights=through[run_of],
                          minlength=len(records) * 2 * NUM_NODE_TYPES)
    through = through.reshape(len(records), 2 * NUM_NODE_TYPES)
    out = np.zeros((len(records), PATH_FEATURE_DIM))
    out[:, _SUMMARY_DIM:] = pairs
    complete = (np.bincount(owner[done[run_of]], minlength=len(records)) == sizes) & (sizes > 0)
    sink = np.unique(run_of[sinks[complete[owner[sinks]]]])  # sinks' runs, genome-ordered
    if sink.size:  # grouped by genome: segment reductions
        first = np.flatnonzero(np.r_[True, run_owner[sink][1:] != run_owner[sink][:-1]])
        rows = run_owner[sink][first]
        paths = np.add.reduceat(count[sink], first)
        plain_paths = np.add.reduceat(plain[sink], first)
        top_sink = np.maximum.reduceat(top[sink], first, axis=0)
        low_sink = np.minimum.reduceat(low[sink], first, axis=0)
        for j, row in enumerate(rows):
            out[row, :_SUMMARY_DIM] = _path_summary(top_sink[j], low_sink[j], float(paths[j]),
                                                    float(plain_paths[j]), through[row])
    return out


#: :func:`_path_block` rows by graph structure. The path block reads only node types, mixing
#: flags and edges, and a row never depends on its batch (exact integer sweeps, per-genome
#: reductions), so genomes sharing a layer skeleton (most of a search's brood: ~120
#: skeletons among 2,000 offspring) share one row. 2,048 rows of 7 KB: at most ~14 MB.
PATH_MEMO = Memo(2048)


def _structure_key(record: Data) -> bytes:
    """A digest of everything :func:`_path_block` reads from ``record``."""
    types = np.ascontiguousarray(record.node_type.numpy(), dtype=np.int64)
    edges = np.ascontiguousarray(record.edge_index.numpy().reshape(2, -1), dtype=np.int64)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.array([types.size, edges.shape[1]], dtype=np.int64).tobytes())
    digest.update(types.tobytes())
    digest.update(edges.tobytes())
    digest.update(np.packbits(node_mixing(record)).tobytes())
    return digest.digest()


def path_block(records: list[Data]) -> np.ndarray:
    """[n, PATH_FEATURE_DIM] :func:`_path_block`, computing only the structures not remembered,
    and those of genome graphs that carry ``layer_segments`` by composition (bit-identical:
    ``tests/ml/models/test_models.py`` and ``tests/ml/test_memo.py`` compare with the plain
    block)."""
    keys = [_structure_key(r) for r in records]
    rows = [PATH_MEMO.get(k) for k in keys]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        first: dict[bytes, int] = {}
        for i in missing:
            first.setdefault(keys[i], i)
        todo = list(first.values())
        fresh: dict[int, np.ndarray] = {}
        swept = []
        for i in todo:
            summary = _composed_summary(records[i])
            if summary is None:
                swept.append(i)
            else:
                fresh[i] = np.concatenate([summary, _edge_pairs(records[i])])
        if swept:
            fresh.update(zip(swept, _path_block([records[i] for i in swept])))
        for i in todo:
            row = fresh[i].copy()  # a view would keep its whole batch alive in the memo
            row.setflags(write=False)
            PATH_MEMO.put(keys[i], row)
            rows[i] = row
        for i in missing:
            rows[i] = rows[first[keys[i]]]
    return np.stack(rows) if rows else np.zeros((0, PATH_FEATURE_DIM))


# ---------------------------------------------------- genome graphs: composition of layer tables

def _edge_pairs(record: Data) -> np.ndarray:
    """One record's log1p (source type, target type) edge histogram (as :func:`_path_block`)."""
    types = record.node_type.numpy().astype(np.int64)
    src, dst = record.edge_index.numpy().reshape(2, -1)
    pairs = np.bincount(types[src] * NUM_NODE_TYPES + types[dst],
                        minlength=NUM_NODE_TYPES ** 2)
    return np.log1p(pairs.astype(np.float64))


@dataclass(frozen=True)
class _LayerPaths:
    """Paths through one backbone segment of a genome graph, computed once per variant.

    A genome graph is a chain: placeholder -> layer segments -> output, each segment entered by
    one edge into its first node (the adapter) and left by one edge from its exit node; a
    segment may hold sources of its own (``get_attr`` nodes: ConvNeXt, Swin), never a sink.
    So every source -> sink path is a path into a segment's exit times the one way on. Counts
    are kept capped at ``_PATH_COUNT_CAP`` (a capped sweep's count is ``min(true count, cap)``
    at every node, so capped tables compose exactly: see :func:`_composed_summary`).
    """

    types: np.ndarray
    edges: int
    exit: int
    #: Per node: paths from the entry, paths from the segment's own sources, paths to the exit.
    from_entry: np.ndarray
    from_inner: np.ndarray
    to_exit: np.ndarray
    #: Mixing-free paths entry -> exit and own sources -> exit.
    plain: float
    plain_inner: float
    #: Per path column: max / min over entry -> exit paths, and over own sources -> exit paths
    #: (None when the segment has no sources of its own).
    top: np.ndarray
    low: np.ndarray
    top_inner: np.ndarray | None
    low_inner: np.ndarray | None


_LAYER_PATHS: dict[tuple[str, int], _LayerPaths] = {}
#: :func:`_weight_table` in int64 (the composed sums are exact integers whatever the graph).
_WEIGHTS = _weight_table(0).astype(np.int64)


def _layer_paths(types: np.ndarray, src: np.ndarray, dst: np.ndarray) -> _LayerPaths | None:
    """The tables of one segment from its node types and local edges (``dst == len(types)`` is
    the exit edge), by a plain topological loop; None when it is not a one-entry, one-exit,
    sink-free acyclic segment."""
    m = len(types)
    exits = src[dst == m]
    inside = dst < m
    src, dst = src[inside], dst[inside]
    if len(exits) != 1 or (dst == 0).any() or (src == exits[0]).any():
        return None
    mixing = _MIXING_TYPES[types]
    weights = _WEIGHTS[_weight_codes(types, mixing)]
    preds: list[list[int]] = [[] for _ in range(m)]
    succs: list[list[int]] = [[] for _ in range(m)]
    for s, d in zip(src.tolist(), dst.tolist()):
        preds[d].append(s)
        succs[s].append(d)
    if any(not succ for v, succ in enumerate(succs) if v != exits[0]):
        return None  # a sink inside the segment
    waiting = [len(p) for p in preds]
    ready = [v for v in range(m) if not waiting[v]]
    order: list[int] = []
    while ready:
        v = ready.pop()
        order.append(v)
        for d in succs[v]:
            waiting[d] -= 1
            if not waiting[d]:
                ready.append(d)
    if len(order) != m:
        return None  # a cycle
    cap = _PATH_COUNT_CAP
    entry, inner = np.zeros(m), np.zeros(m)
    plain, plain_inner = np.zeros(m), np.zeros(m)
    big = np.iinfo(np.int64).max // 4
    top, low = np.full((m, _PATH_COLUMNS), -big), np.full((m, _PATH_COLUMNS), big)
    top_in, low_in = top.copy(), low.copy()
    for v in order:
        if v == 0:
            entry[v], plain[v] = 1.0, float(not mixing[v])
            top[v] = low[v] = weights[v]
        elif not preds[v]:  # a source of the segment's own
            inner[v], plain_inner[v] = 1.0, float(not mixing[v])
            top_in[v] = low_in[v] = weights[v]
        else:
            p = preds[v]
            entry[v] = min(sum(entry[u] for u in p), cap)
            inner[v] = min(sum(inner[u] for u in p), cap)
            if not mixing[v]:
                plain[v] = min(sum(plain[u] for u in p), cap)
                plain_inner[v] = min(sum(plain_inner[u] for u in p), cap)
            top[v] = weights[v] + top[p].max(axis=0)
            low[v] = weights[v] + low[p].min(axis=0)
            top_in[v] = weights[v] + top_in[p].max(axis=0)
            low_in[v] = weights[v] + low_in[p].min(axis=0)
    onward = np.zeros(m)
    x = int(exits[0])
    for v in reversed(order):
        onward[v] = 1.0 if v == x else min(sum(onward[d] for d in succs[v]), cap)
    has_inner = inner[x] > 0
    return _LayerPaths(types.copy(), int(inside.sum()), x, entry, inner, onward,
                       float(plain[x]), float(plain_inner[x]), top[x], low[x],
                       top_in[x] if has_inner else None, low_in[x] if has_inner else None)


def warm_layer_paths() -> int:
    """Build the tables of every backbone variant built so far (a long-lived process calls it
    after ``warm_up``: ~5 ms per variant, otherwise paid by the first genomes that use them).
    Returns how many tables there are."""
    from ml.arch.backbones import cached_variants
    from ml.encoding.graph import variant_segment
    from ml.encoding.vocab import type_index

    for builder, variant in cached_variants().items():
        module_types, edges = variant_segment(variant)
        types = np.array([type_index(t) for t in module_types], dtype=np.int64)
        if (builder, len(types)) not in _LAYER_PATHS:
            paths = _layer_paths(types, edges[:, 0], edges[:, 1])
            if paths is not None:
                _LAYER_PATHS[(builder, len(types))] = paths
    return len(_LAYER_PATHS)


def _segment_paths(builder: str, types: np.ndarray, src: np.ndarray, dst: np.ndarray,
                   start: int) -> _LayerPaths | None:
    """The remembered tables of ``builder``'s segment at ``start`` (built on first sight),
    or None when this record's segment is not the one remembered (then the sweep answers)."""
    stop = start + len(types)
    paths = _LAYER_PATHS.get((builder, len(types)))
    if paths is None:
        local = (src >= start) & (src < stop)
        paths = _layer_paths(types, src[local] - start, dst[local] - start)
        if paths is None:
            return None
        _LAYER_PATHS[(builder, len(types))] = paths
    return paths if np.array_equal(paths.types, types) else None


def _composed_summary(record: Data) -> np.ndarray | None:
    """The path summary of a genome graph from its ``layer_segments`` (``(builder or None,
    start, stop)`` per layer, as :meth:`ml.encoding.encoder.EncodedGenome.layer_segments`
    gives them), or None when the record has none or is not such a chain.

    Along the chain it carries the paths from every source to the current exit: their count
    ``c`` and mixing-free count (capped), and their per-column max and min. A segment maps
    them to ``c * from_entry + from_inner`` at each of its nodes (capped: ``min`` commutes
    with the sums and products of counts >= 1, and float64 holds every integer below 2^53
    exactly, so each node gets the capped sweep's very value), and the paths on from a node
    are its ``to_exit`` times the count of the segments after it. The per-node product and the
    per-code sum in node order are then the sweep's own float operations.
    """
    segments: Sequence[Any] | None = getattr(record, "layer_segments", None)
    if segments is None or getattr(record, "node_mixing", None) is not None:
        return None
    types = record.node_type.numpy().astype(np.int64)
    n = len(types)
    src, dst = record.edge_index.numpy().reshape(2, -1)
    ends = [1] + [stop for _, _, stop in segments]
    if n < 2 or ends[-1] != n - 1 or any(s[1] != e for s, e in zip(segments, ends)):
        return None  # not placeholder -> layers tiling the nodes -> output
    cap = _PATH_COUNT_CAP
    mixing = _MIXING_TYPES[types]
    codes = _weight_codes(types, mixing)
    weights = _WEIGHTS
    into, onward = np.empty(n), np.empty(n)
    tables: list[_LayerPaths | None] = []
    edges = 1  # placeholder -> first layer
    c, plain = 1.0, float(not mixing[0])
    top, low = weights[codes[0]].copy(), weights[codes[0]].copy()
    into[0] = 1.0
    for builder, start, stop in segments:
        if builder is None:
            if stop != start + 1:
                return None
            into[start] = c
            plain = 0.0 if mixing[start] else plain
            top += weights[codes[start]]
            low += weights[codes[start]]
            tables.append(None)
            edges += 1
            continue
        paths = _segment_paths(builder, types[start:stop], src, dst, start)
        if paths is None:
            return None
        into[start:stop] = np.minimum(c * paths.from_entry + paths.from_inner, cap)
        c = float(into[start + paths.exit])
        plain = min(plain * paths.plain + paths.plain_inner, cap)
        if paths.top_inner is None:
            top, low = top + paths.top, low + paths.low
        else:
            top = np.maximum(top + paths.top, paths.top_inner)
            low = np.minimum(low + paths.low, paths.low_inner)
        tables.append(paths)
        edges += paths.edges + 1
    if edges != src.size:
        return None
    into[n - 1] = c  # the output node
    plain = 0.0 if mixing[n - 1] else plain
    top += weights[codes[n - 1]]
    low += weights[codes[n - 1]]
    after = 1.0  # paths from the next segment's entry to the output
    onward[n - 1] = after
    for (builder, start, stop), paths in zip(reversed(segments), reversed(tables)):
        if paths is None:
            onward[start] = after
        else:
            onward[start:stop] = np.minimum(paths.to_exit * after, cap)
            after = float(onward[start])
    onward[0] = after
    through = np.bincount(codes, weights=into * onward, minlength=2 * NUM_NODE_TYPES)
    return _path_summary(top, low, c, plain, through)
