"""FX trace of a backbone's kept part, flattened into the node table the graph encoders splice.

The original traced the whole backbone chain with ``torch.fx`` and listed every node in graph order
with an edge to each of its users. Within one backbone that structure never changes,
so it is computed once per variant here: the table's local node 0 is the adapter conv (it takes
the place of the part's placeholder), nodes 1..n are the part's nodes in graph order (without its
placeholder and output), and edges into the part's output are marked :data:`EXIT_NODE` so that
splicing a genome's graph is concatenation plus an index offset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.fx as fx
from torch import nn

#: Destination marker of an edge into the traced part's output (patched to the next layer).
EXIT_NODE = -1
#: Local index of the adapter conv in a backbone's node table.
ADAPTER_NODE = 0


def qualified_name(cls: type) -> str:
    """``torch.nn.modules.conv.Conv2d`` style fully qualified class name."""
    return f"{cls.__module__}.{cls.__qualname__}"


def node_target(node: fx.Node) -> str:
    """The node's target as a string: a module/attribute path, a function or method name."""
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


@dataclass(frozen=True)
class NodeTable:
    """A backbone segment's nodes (adapter first) and its local edges, shared by every genome."""

    ops: tuple[str, ...]
    #: Targets relative to the backbone wrapper: ``adapter``, ``model.<path>``, or a fn/method name.
    targets: tuple[str, ...]
    module_types: tuple[str | None, ...]
    #: The called module per node (None for the adapter, which is per genome, and non-modules).
    modules: tuple[nn.Module | None, ...]
    #: (E, 2) local edges in FX order; destination EXIT_NODE means "the next layer's first node".
    edges: np.ndarray
    adapter_type: str

    def __len__(self) -> int:
        return len(self.ops)


def trace_part(part: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with the default leaf rules, as the original did."""
    return fx.symbolic_trace(part)


def node_table(gm: fx.GraphModule, adapter_cls: type = nn.Conv2d) -> NodeTable:
    """Flatten a traced part into a NodeTable whose node 0 replaces the part's placeholder."""
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise NotImplementedError("a backbone part must take exactly one input")
    body = [n for n in nodes if n.op not in ("placeholder", "output")]
    local = {placeholders[0]: ADAPTER_NODE}
    local.update({n: i + 1 for i, n in enumerate(body)})
    ops, targets = ["call_module"], ["adapter"]
    types, modules = [qualified_name(adapter_cls)], [None]
    for n in body:
        ops.append(n.op)
        module = gm.get_submodule(n.target) if n.op == "call_module" else None
        modules.append(module)
        types.append(qualified_name(type(module)) if module is not None else None)
        targets.append(f"model.{n.target}" if n.op in ("call_module", "get_attr")
                       else node_target(n))
    edges = [(local[n], local.get(user, EXIT_NODE)) for n in [placeholders[0], *body]
             for user in n.users]
    return NodeTable(tuple(ops), tuple(targets), tuple(types), tuple(modules),
                     np.asarray(edges, dtype=np.int64).reshape(-1, 2), qualified_name(adapter_cls))
