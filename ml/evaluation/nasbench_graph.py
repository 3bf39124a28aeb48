"""nas-bench-graph (THUMNLab, ``pip install nas-bench-graph``) as records in our graph layout.

An independent external benchmark for the predictors: 26,206 GNN architectures per dataset with
their trained accuracy. Each architecture becomes a ``torch_geometric`` ``Data`` shaped like an
encoded genome, so every predictor runs on it unchanged:

* nodes: 0 = input, 1..4 = the computing ops (node i+1 takes its input from node ``link[i]``),
  5 = output, fed by every computing node no other computing node reads (the leaves);
* ``node_type`` / ``x`` (long): index in :data:`OP_VOCABULARY`, a small vocabulary of its own
  (0 input, 1-9 the benchmark's ops in its ``gnn_list`` order, 10 output), inside our 28 types'
  index range but *not* sharing their meaning;
* ``hyperparams`` [6, 86], ``hyperparams_mask`` [6, 43], ``node_shape`` [6, 3], ``model_info``
  [1, 34], ``training`` [1, 47]: all zero (the benchmark fixes hyper-parameters per dataset);
* ``global_features`` [1, 29]: zero except ``log_total_params`` = log1p(``para`` · 1e6), the
  benchmark's parameter count (``para`` is in millions); ``latency`` is not used (a measured,
  noisy wall time);
* ``node_mixing`` [6] (bool): the op aggregates over graph neighbours (the 7 message-passing
  ops; not ``fc``, ``skip``, input, output), read by the path features in place of the
  genome vocabulary's convolution/pooling flag;
* ``op_onehot`` [1, 36]: one-hot op per position (4 × 9), the ridge floor's features;
  ``link_onehot`` [1, 9]: one-hot link pattern;
* ``y`` [1, 1] = ``perf`` (test accuracy, higher is better), ``valid_perf`` (float), ``failed``
  = 0, ``canonical_hash`` = the benchmark's ``valid_hash`` (isomorphs share it).
"""
from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from ml.encoding.encoder import GLOBAL_FEATURES
from ml.encoding.genome_vector import MODEL_INFO_DIM, TRAINING_KEYS
from ml.encoding.hyperparams import HYPERPARAM_KEYS, NUM_COLUMNS

#: The benchmark's ops, in its ``gnn_list`` order.
NB_OPS: tuple[str, ...] = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
#: Node-type vocabulary of converted architectures.
OP_VOCABULARY: tuple[str, ...] = ("input", *NB_OPS, "output")
#: Ops that pass messages between graph neighbours (``fc`` and ``skip`` act per node).
MESSAGE_PASSING: frozenset[str] = frozenset(NB_OPS[:7])
#: The 9 canonical link patterns of the benchmark.
LINK_PATTERNS: tuple[tuple[int, ...], ...] = (
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1), (0, 0, 1, 2), (0, 0, 1, 3),
    (0, 1, 1, 1), (0, 1, 1, 2), (0, 1, 2, 2), (0, 1, 2, 3))
METRICS: tuple[str, ...] = ("perf",)
DIRECTIONS: tuple[int, ...] = (+1,)
#: Every dataset the package ships (``nas_bench_graph/light/*.bench``). ``proteins`` holds
#: only 2,021 of the 26,206 architectures (a smaller op set); the others hold all of them.
DATASETS: tuple[str, ...] = ("cora", "citeseer", "pubmed", "cs", "physics", "photo",
                             "computers", "arxiv", "proteins")
_PARAMS_COLUMN = GLOBAL_FEATURES.index("log_total_params")


def graph_edges(link: Sequence[int]) -> list[tuple[int, int]]:
    """Edges (src, dst) of one architecture: input → ops per ``link``, leaves → output."""
    n_ops = len(link)
    edges = [(int(src), i + 1) for i, src in enumerate(link)]
    used = {int(src) for src in link}
    output = n_ops + 1
    edges += [(node, output) for node in range(1, n_ops + 1) if node not in used]
    return edges


def op_onehot(ops: Sequence[str]) -> np.ndarray:
    """Position-wise one-hot ops (4 × 9): the ridge floor's encoding."""
    features = np.zeros(len(ops) * len(NB_OPS), dtype=np.float32)
    for position, op in enumerate(ops):
        features[position * len(NB_OPS) + NB_OPS.index(op)] = 1.0
    return features


def link_onehot(link: Sequence[int]) -> np.ndarray:
    """One-hot of the canonical link pattern (9)."""
    features = np.zeros(len(LINK_PATTERNS), dtype=np.float32)
    features[LINK_PATTERNS.index(tuple(link))] = 1.0
    return features


def arch_to_data(link: Sequence[int], ops: Sequence[str], entry: dict | None = None,
                 arch_hash: int | None = None) -> Data:
    """One architecture (and optionally its benchmark entry) as a record in our layout."""
    types = [0, *(1 + NB_OPS.index(op) for op in ops), len(OP_VOCABULARY) - 1]
    mixing = [False, *(op in MESSAGE_PASSING for op in ops), False]
    node_type = torch.tensor(types, dtype=torch.long)
    num_nodes = len(types)
    edge_index = torch.tensor(graph_edges(link), dtype=torch.long).t().contiguous()
    global_features = torch.zeros(1, len(GLOBAL_FEATURES))
    if entry is not None:
        global_features[0, _PARAMS_COLUMN] = math.log1p(float(entry["para"]) * 1e6)
        y = torch.tensor([[float(entry["perf"])]], dtype=torch.float32)
        failed = torch.tensor([0.0])
        valid_perf = float(entry["valid_perf"])
    else:
        y, failed, valid_perf = torch.full((1, 0), math.nan), torch.tensor([math.nan]), math.nan
    return Data(
        x=node_type.clone(), node_type=node_type, edge_index=edge_index, num_nodes=num_nodes,
        node_mixing=torch.tensor(mixing, dtype=torch.bool),
        hyperparams=torch.zeros(num_nodes, NUM_COLUMNS),
        hyperparams_mask=torch.zeros(num_nodes, len(HYPERPARAM_KEYS)),
        node_shape=torch.zeros(num_nodes, 3), model_info=torch.zeros(1, MODEL_INFO_DIM),
        training=torch.zeros(1, len(TRAINING_KEYS)), global_features=global_features,
        op_onehot=torch.from_numpy(op_onehot(ops)).unsqueeze(0),
        link_onehot=torch.from_numpy(link_onehot(link)).unsqueeze(0),
        y=y, failed=failed, valid_perf=valid_perf,
        canonical_hash=str(arch_hash) if arch_hash is not None else None,
        link=list(link), ops=list(ops))


def load_benchmark(dataset: str = "arxiv") -> list[Data]:
    """Every architecture the dataset has an entry for, as a labelled record (benchmark order;
    ``proteins`` has entries for 2,021 of them)."""
    from nas_bench_graph import all_archs, light_read  # optional 'benchmarks' extra

    if dataset not in DATASETS:
        raise ValueError(f"unknown nas-bench-graph dataset {dataset!r}; one of {DATASETS}")
    with contextlib.redirect_stdout(io.StringIO()):  # all_archs() prints a count
        archs = all_archs()
    bench = light_read(dataset)
    records = []
    for arch in archs:
        key = arch.valid_hash()
        if key in bench:
            records.append(arch_to_data(arch.link, arch.ops, bench[key], key))
    return records
