"""Symbolic shape propagation over a traced backbone, compiled into a per-variant ShapeProgram.

A real meta-device forward of one backbone costs 0.3-1.5 s (thousands of Python meta kernels), and
custom layers in front of a backbone give it a different input size in almost every sampled
genome, so a cache keyed by size alone does not help. Instead each traced variant is interpreted
ONCE with a symbolic input ``(1, C, H, W)``: every tensor dimension becomes a constant or a *level*
of the H or W axis (see :mod:`ml.arch.levels`). The result is a :class:`ShapeProgram` whose
:meth:`ShapeProgram.evaluate` turns a concrete ``(H, W)`` into every node's shape, the validity of
every op, and the multiply-accumulate count with two short Python loops and one numpy gather.

The interpreter knows the op vocabulary of the 42 torchvision variants (conv/pool/norm/activation
modules, residual ``add``/``mul``, ``cat``, ``chunk``/``view``/``transpose`` channel shuffles,
``permute``, and Swin's wrapped functions). An op outside it raises ``NotImplementedError`` when the
variant is first built, never silently. ``tests/ml/arch/test_arch.py`` checks the programs
against real meta-device ``ShapeProp`` runs at random sizes.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torchvision.models import swin_transformer
from torchvision.ops import stochastic_depth

from ml.arch.levels import (
    AXIS_NAMES,
    H_AXIS,
    W_AXIS,
    Dim,
    FloorAffine,
    LevelTable,
    Sym,
    evaluate_levels,
)
from ml.arch.tracing import node_target

#: Shape reported for a node whose output is not a tensor (``size()``, ``getitem`` of a size...).
NO_SHAPE = -1


@dataclass(frozen=True)
class TensorSpec:
    """A tensor flowing through the graph during symbolic propagation: its dims, batch first."""

    dims: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        return len(self.dims)


class ShapeFailure(Exception):
    """A backbone op cannot run at the given input size (the original would have crashed)."""

    def __init__(self, node_index: int, message: str) -> None:
        super().__init__(message)
        self.node_index = node_index
        self.message = message


# ----------------------------------------------------------------------------------- the program
@dataclass(frozen=True)
class ProgramResult:
    """One evaluation of a program: ``values`` is the gather table every index array points into."""

    program: ShapeProgram
    values: np.ndarray

    def node_chw(self) -> np.ndarray:
        """(N, 3) int64: per node the last three dims of its output (-1 padded / non-tensor)."""
        return self.values[self.program.node_index]

    def node_shape(self, i: int) -> tuple[int, ...] | None:
        """Full output shape of node ``i`` (None when it is not a tensor)."""
        dims = self.program.node_dims[i]
        return None if dims is None else tuple(int(self.values[j]) for j in dims)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(int(self.values[j]) for j in self.program.output_dims)

    @property
    def macs(self) -> int:
        v = self.values
        return sum(coef * int(v[h]) * int(v[w]) for (h, w), coef in self.program.mac_terms)


@dataclass(frozen=True)
class ShapeProgram:
    """Everything about a variant's shapes, as a function of its input ``(H, W)``.

    Index arrays point into the value table ``[H levels..., W levels..., constants...]``.
    """

    h_rows: tuple[tuple[int, int, int, int, int], ...]
    w_rows: tuple[tuple[int, int, int, int, int], ...]
    h_creator: tuple[int, ...]
    w_creator: tuple[int, ...]
    constants: np.ndarray
    #: (N, 3) indices: per node, its output's last three dims (left-padded with -1).
    node_index: np.ndarray
    #: Per node the indices of every output dim, or None for non-tensor outputs.
    node_dims: tuple[tuple[int, ...] | None, ...]
    output_dims: tuple[int, ...]
    #: (K, 3): (H index, W index, node) of every batch norm; N*H*W == 1 fails in training mode.
    batchnorm_checks: np.ndarray
    #: (K, 3): (index a, index b, node) of sizes that must agree (cat / broadcast of two levels).
    equalities: np.ndarray
    #: ((H index, W index), coefficient): MACs = sum(coef * value[H] * value[W]).
    mac_terms: tuple[tuple[tuple[int, int], int], ...]
    node_names: tuple[str, ...]

    @property
    def num_levels(self) -> tuple[int, int]:
        return len(self.h_rows) + 1, len(self.w_rows) + 1

    def evaluate(self, height: int, width: int) -> ProgramResult:
        """Shapes at input ``(1, C, height, width)``; raises ShapeFailure where an op cannot run."""
        hv = evaluate_levels(self.h_rows, height)
        wv = evaluate_levels(self.w_rows, width)
        values = np.concatenate((np.asarray(hv, dtype=np.int64), np.asarray(wv, dtype=np.int64),
                                 self.constants))
        eq, bn = self.equalities, self.batchnorm_checks
        if (min(hv) < 1 or min(wv) < 1 or (values[eq[:, 0]] != values[eq[:, 1]]).any()
                or (values[bn[:, 0]] * values[bn[:, 1]] == 1).any()):
            raise self._first_failure(hv, wv, values)
        return ProgramResult(self, values)

    def _first_failure(self, hv: list[int], wv: list[int], values: np.ndarray) -> ShapeFailure:
        """The failure of the earliest failing node in graph order (where the forward stopped)."""
        failures: list[tuple[int, str]] = []
        for axis, levels, creators in ((H_AXIS, hv, self.h_creator), (W_AXIS, wv, self.w_creator)):
            failures += [(creators[i], f"output {AXIS_NAMES[axis]} would be {v} (input too small)")
                         for i, v in enumerate(levels) if v < 1]
        failures += [(int(n), f"sizes {values[a]} and {values[b]} do not match")
                     for a, b, n in self.equalities if values[a] != values[b]]
        failures += [(int(n), "expected more than 1 value per channel when training (1x1 map)")
                     for h, w, n in self.batchnorm_checks if values[h] * values[w] == 1]
        node, message = min(failures)
        where = self.node_names[node] if node >= 0 else "the input"
        return ShapeFailure(node, f"{message} at {where}")


# ------------------------------------------------------------------------------ the interpreter
def _arg(args: tuple, kwargs: dict, position: int, name: str, default: Any = None) -> Any:
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])
    return value, value


def _first_tensor(args: tuple) -> TensorSpec:
    for a in args:
        if isinstance(a, TensorSpec):
            return a
    raise NotImplementedError("op without a tensor argument")


class ShapeProgramBuilder:
    """Interprets a traced backbone once with symbolic H and W and emits its ShapeProgram."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.levels = (LevelTable(), LevelTable())
        self.node = -1
        self.batchnorms: list[tuple[Dim, Dim, int]] = []
        self.equalities: list[tuple[Dim, Dim, int]] = []
        self.macs: list[tuple[int, Dim, Dim]] = []
        self._modules: dict[type, Callable[[nn.Module, tuple, dict], Any]] = {
            nn.Conv2d: self._conv2d, nn.Linear: self._linear, nn.BatchNorm2d: self._batchnorm,
            nn.MaxPool2d: self._module_pool, nn.AvgPool2d: self._module_pool,
            nn.AdaptiveAvgPool2d: self._adaptive_pool, nn.AdaptiveMaxPool2d: self._adaptive_pool,
        }
        self._same_shape_modules = (nn.ReLU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
                                    nn.GELU, nn.Dropout, nn.Identity, nn.LayerNorm)
        self._functions: dict[Any, Callable[[tuple, dict], Any]] = {
            operator.add: self._binary(operator.add), operator.mul: self._binary(operator.mul),
            torch.add: self._binary(operator.add), torch.mul: self._binary(operator.mul),
            operator.getitem: self._getitem, operator.floordiv: self._floordiv,
            torch.cat: self._cat, torch.permute: self._permute, torch.transpose: self._transpose,
            torch.sigmoid: self._same, F.relu: self._same, F.layer_norm: self._same,
            stochastic_depth: self._same,
            F.max_pool2d: self._max_pool_function, F.avg_pool2d: self._avg_pool_function,
            swin_transformer.shifted_window_attention: self._window_attention,
            swin_transformer._patch_merging_pad: self._patch_merging_pad,
            swin_transformer._get_relative_position_bias: self._relative_position_bias,
        }
        self._methods: dict[str, Callable[[tuple, dict], Any]] = {
            "size": self._size, "view": self._view, "permute": self._permute_method,
            "contiguous": self._same, "chunk": self._chunk,
        }

    # ------------------------------------------------------------------------------- driving
    def build(self, input_channels: int) -> ShapeProgram:
        env: dict[fx.Node, Any] = {}
        body = [n for n in self.gm.graph.nodes if n.op not in ("placeholder", "output")]
        names = tuple(node_target(n) for n in body)
        output_value: Any = None
        index_of = {n: i for i, n in enumerate(body)}
        for node in self.gm.graph.nodes:
            self.node = index_of.get(node, -1)
            if node.op == "placeholder":
                env[node] = TensorSpec((1, input_channels, Sym(H_AXIS, 0), Sym(W_AXIS, 0)))
                continue
            args = fx.node.map_arg(node.args, env.__getitem__)
            kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
            if node.op == "output":
                output_value = args[0]
                continue
            env[node] = self._run(node, args, kwargs)
        if not isinstance(output_value, TensorSpec):
            raise NotImplementedError("backbone output is not a single tensor")
        return self._emit([env[n] for n in body], output_value, names)

    def _run(self, node: fx.Node, args: tuple, kwargs: dict) -> Any:
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            handler = self._modules.get(type(module))
            if handler is not None:
                return handler(module, args, kwargs)
            if isinstance(module, self._same_shape_modules):
                return args[0]
            raise NotImplementedError(f"no shape rule for module {type(module).__qualname__}")
        if node.op == "call_function":
            handler = self._functions.get(node.target)
            if handler is None:
                raise NotImplementedError(f"no shape rule for function {node.target}")
            return handler(args, kwargs)
        if node.op == "call_method":
            handler = self._methods.get(node.target)
            if handler is None:
                raise NotImplementedError(f"no shape rule for method {node.target}")
            return handler(args, kwargs)
        if node.op == "get_attr":
            value = self.gm
            for part in node.target.split("."):
                value = getattr(value, part)
            return TensorSpec(tuple(value.shape)) if isinstance(value, torch.Tensor) else value
        raise NotImplementedError(f"no shape rule for {node.op}")

    # ----------------------------------------------------------------------------- dim algebra
    def _map_dim(self, dim: Dim, fmap: FloorAffine) -> Dim:
        if isinstance(dim, Sym):
            return Sym(dim.axis, self.levels[dim.axis].apply(dim.level, fmap, self.node))
        value = fmap(dim)
        if value < 1:
            raise NotImplementedError(f"constant size {dim} maps to {value} at node {self.node}")
        return value

    def _unify(self, a: Dim, b: Dim, broadcast: bool) -> Dim:
        """Size of one dim of ``a op b``; records a runtime equality check when not provable."""
        if a == b:
            return a
        if broadcast and b == 1:
            return a
        if broadcast and a == 1:
            return b
        if isinstance(a, int) and isinstance(b, int):
            raise NotImplementedError(f"sizes {a} and {b} never match at node {self.node}")
        self.equalities.append((a, b, self.node))
        return a

    def _add_macs(self, coef: int, dims: tuple[Dim, ...]) -> None:
        """Record ``coef * prod(dims)`` MACs; dims hold at most one level per axis."""
        by_axis: list[Dim] = [1, 1]
        for d in dims:
            if isinstance(d, Sym):
                if by_axis[d.axis] != 1:
                    raise NotImplementedError("MAC term with two levels of one axis")
                by_axis[d.axis] = d
            else:
                coef *= d
        self.macs.append((coef, by_axis[H_AXIS], by_axis[W_AXIS]))

    # --------------------------------------------------------------------------------- modules
    def _conv2d(self, m: nn.Conv2d, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise NotImplementedError("string padding / non-zero padding mode in a backbone conv")
        if x.dims[1] != m.in_channels:
            raise NotImplementedError(f"conv expects {m.in_channels} channels, got {x.dims[1]}")
        h, w = (self._map_dim(x.dims[2 + i], FloorAffine.window(
            m.kernel_size[i], m.stride[i], m.padding[i], m.dilation[i])) for i in range(2))
        out = TensorSpec((x.dims[0], m.out_channels, h, w))
        self._add_macs(m.out_channels * (m.in_channels // m.groups)
                       * m.kernel_size[0] * m.kernel_size[1], (h, w))
        return out

    def _linear(self, m: nn.Linear, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        out = TensorSpec(x.dims[:-1] + (m.out_features,))
        self._add_macs(m.in_features * m.out_features, x.dims[:-1])
        return out

    def _batchnorm(self, m: nn.BatchNorm2d, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        self.batchnorms.append((x.dims[2], x.dims[3], self.node))
        return x

    def _module_pool(self, m: nn.MaxPool2d | nn.AvgPool2d, args: tuple, kwargs: dict) -> TensorSpec:
        dilation = getattr(m, "dilation", 1)
        return self._pool(args[0], m.kernel_size, m.stride, m.padding, dilation, m.ceil_mode)

    def _adaptive_pool(self, m: nn.Module, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        size = _pair(m.output_size)
        h, w = (x.dims[2 + i] if size[i] is None else size[i] for i in range(2))
        return TensorSpec(x.dims[:2] + (h, w))

    def _pool(self, x: TensorSpec, kernel: Any, stride: Any, padding: Any, dilation: Any,
              ceil_mode: bool) -> TensorSpec:
        if ceil_mode:
            raise NotImplementedError("ceil_mode pooling in a backbone")
        k, p, d = _pair(kernel), _pair(padding), _pair(dilation)
        s = _pair(stride) if stride not in (None, [], ()) else k
        h, w = (self._map_dim(x.dims[2 + i], FloorAffine.window(k[i], s[i], p[i], d[i]))
                for i in range(2))
        return TensorSpec(x.dims[:2] + (h, w))

    # ------------------------------------------------------------------------------- functions
    def _same(self, args: tuple, kwargs: dict) -> TensorSpec:
        return _first_tensor(args)

    def _binary(self, scalar_op: Callable[[Any, Any], Any]) -> Callable[[tuple, dict], Any]:
        """Elementwise binary op: broadcast tensor shapes; plain numbers are just computed."""

        def run(args: tuple, kwargs: dict) -> Any:
            tensors = [a for a in args[:2] if isinstance(a, TensorSpec)]
            if not tensors:
                if any(isinstance(a, Sym) for a in args[:2]):
                    raise NotImplementedError("arithmetic on symbolic sizes")
                return scalar_op(*args[:2])
            return tensors[0] if len(tensors) == 1 else self._broadcast(*tensors)

        return run

    def _broadcast(self, a: TensorSpec, b: TensorSpec) -> TensorSpec:
        rank = max(a.rank, b.rank)
        da = (1,) * (rank - a.rank) + a.dims
        db = (1,) * (rank - b.rank) + b.dims
        return TensorSpec(tuple(self._unify(x, y, broadcast=True) for x, y in zip(da, db)))

    def _getitem(self, args: tuple, kwargs: dict) -> Any:
        container, index = args
        if isinstance(container, (tuple, list)) and isinstance(index, int):
            return container[index]
        raise NotImplementedError("tensor indexing in a backbone")

    def _floordiv(self, args: tuple, kwargs: dict) -> Any:
        a, b = args
        if isinstance(a, int) and isinstance(b, int):
            return a // b
        if isinstance(a, Sym) and isinstance(b, int):
            return self._map_dim(a, FloorAffine.canonical(0, b))
        raise NotImplementedError("floordiv of symbolic sizes")

    def _cat(self, args: tuple, kwargs: dict) -> TensorSpec:
        tensors: list[TensorSpec] = list(_arg(args, kwargs, 0, "tensors"))
        dim = _arg(args, kwargs, 1, "dim", 0)
        rank = tensors[0].rank
        dim %= rank
        dims = list(tensors[0].dims)
        for t in tensors[1:]:
            for i in range(rank):
                if i == dim:
                    if not (isinstance(dims[i], int) and isinstance(t.dims[i], int)):
                        raise NotImplementedError("concatenation along a spatial axis")
                    dims[i] += t.dims[i]
                else:
                    dims[i] = self._unify(dims[i], t.dims[i], broadcast=False)
        return TensorSpec(tuple(dims))

    def _permute(self, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        order = _arg(args, kwargs, 1, "dims")
        return TensorSpec(tuple(x.dims[i] for i in order))

    def _permute_method(self, args: tuple, kwargs: dict) -> TensorSpec:
        x, order = args[0], args[1:]
        if len(order) == 1 and isinstance(order[0], (tuple, list)):
            order = order[0]
        return TensorSpec(tuple(x.dims[i] for i in order))

    def _transpose(self, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        d0, d1 = args[1] % x.rank, args[2] % x.rank
        dims = list(x.dims)
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return TensorSpec(tuple(dims))

    def _max_pool_function(self, args: tuple, kwargs: dict) -> TensorSpec:
        # F.max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, ..)
        return self._pool(args[0], _arg(args, kwargs, 1, "kernel_size"),
                          _arg(args, kwargs, 2, "stride"), _arg(args, kwargs, 3, "padding", 0),
                          _arg(args, kwargs, 4, "dilation", 1),
                          _arg(args, kwargs, 5, "ceil_mode", False))

    def _avg_pool_function(self, args: tuple, kwargs: dict) -> TensorSpec:
        # F.avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, ..)
        return self._pool(args[0], _arg(args, kwargs, 1, "kernel_size"),
                          _arg(args, kwargs, 2, "stride"), _arg(args, kwargs, 3, "padding", 0),
                          1, _arg(args, kwargs, 4, "ceil_mode", False))

    def _window_attention(self, args: tuple, kwargs: dict) -> TensorSpec:
        """Swin's (shifted) window attention keeps the NHWC shape; counts its projections."""
        x: TensorSpec = args[0]
        window = _arg(args, kwargs, 4, "window_size")
        channels = x.dims[3]
        padded = tuple(self._map_dim(x.dims[1 + i], FloorAffine.canonical(
            window[i] - 1, window[i], window[i], 0)) for i in range(2))
        tokens_per_window = window[0] * window[1]
        # qkv (C -> 3C) and proj (C -> C) projections per padded token, plus q@k^T and attn@v.
        self._add_macs(4 * channels * channels + 2 * tokens_per_window * channels, padded)
        return x

    def _patch_merging_pad(self, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        half = FloorAffine.canonical(1, 2)
        h, w = (self._map_dim(x.dims[-3 + i], half) for i in range(2))
        return TensorSpec(x.dims[:-3] + (h, w, 4 * x.dims[-1]))

    def _relative_position_bias(self, args: tuple, kwargs: dict) -> TensorSpec:
        table: TensorSpec = args[0]
        window = args[2]
        n = window[0] * window[1]
        return TensorSpec((1, table.dims[-1], n, n))

    # --------------------------------------------------------------------------------- methods
    def _size(self, args: tuple, kwargs: dict) -> Any:
        x: TensorSpec = args[0]
        dim = _arg(args, kwargs, 1, "dim")
        return x.dims if dim is None else x.dims[dim]

    def _view(self, args: tuple, kwargs: dict) -> TensorSpec:
        x: TensorSpec = args[0]
        shape = list(args[1:])
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = list(shape[0])
        remaining = list(x.dims)
        known_const = 1
        for d in shape:
            if isinstance(d, Sym):
                if d not in remaining:
                    raise NotImplementedError("view that merges spatial sizes")
                remaining.remove(d)
            elif d != -1:
                known_const *= d
        if any(isinstance(d, Sym) for d in remaining):
            raise NotImplementedError("view that merges spatial sizes")
        total = math.prod(remaining)
        if -1 in shape:
            shape[shape.index(-1)] = total // known_const
        elif total != known_const:
            raise NotImplementedError("view with mismatching element count")
        return TensorSpec(tuple(shape))

    def _chunk(self, args: tuple, kwargs: dict) -> tuple[TensorSpec, ...]:
        x: TensorSpec = args[0]
        chunks = _arg(args, kwargs, 1, "chunks")
        dim = _arg(args, kwargs, 2, "dim", 0) % x.rank
        size = x.dims[dim]
        if not isinstance(size, int):
            raise NotImplementedError("chunk along a spatial axis")
        step = -(-size // chunks)
        return tuple(TensorSpec(x.dims[:dim] + (min(step, size - start),) + x.dims[dim + 1:])
                     for start in range(0, size, step))

    # ------------------------------------------------------------------------------------ emit
    def _emit(self, values: list[Any], output: TensorSpec, names: tuple[str, ...]) -> ShapeProgram:
        h_table, w_table = self.levels
        offset = (0, len(h_table))
        constants: dict[int, int] = {}
        base = len(h_table) + len(w_table)

        def index(dim: Dim) -> int:
            if isinstance(dim, Sym):
                return offset[dim.axis] + dim.level
            if dim not in constants:
                constants[dim] = base + len(constants)
            return constants[dim]

        index(NO_SHAPE)
        index(1)
        node_dims = tuple(tuple(index(d) for d in v.dims) if isinstance(v, TensorSpec) else None
                          for v in values)
        node_index = np.empty((len(values), 3), dtype=np.int64)
        for i, dims in enumerate(node_dims):
            last3 = (dims or ())[-3:]
            node_index[i] = (constants[NO_SHAPE],) * (3 - len(last3)) + tuple(last3)
        mac_terms: dict[tuple[int, int], int] = {}
        for coef, h, w in self.macs:
            key = (index(h), index(w))
            mac_terms[key] = mac_terms.get(key, 0) + coef
        return ShapeProgram(
            h_rows=h_table.compiled(), w_rows=w_table.compiled(),
            h_creator=tuple(h_table.creator), w_creator=tuple(w_table.creator),
            constants=np.fromiter(constants, dtype=np.int64, count=len(constants)),
            node_index=node_index, node_dims=node_dims,
            output_dims=tuple(index(d) for d in output.dims),
            batchnorm_checks=np.asarray([(index(h), index(w), n) for h, w, n in self.batchnorms],
                                        dtype=np.int64).reshape(-1, 3),
            equalities=np.asarray([(index(a), index(b), n) for a, b, n in self.equalities],
                                  dtype=np.int64).reshape(-1, 3),
            mac_terms=tuple(mac_terms.items()), node_names=names)


def build_shape_program(gm: fx.GraphModule, input_channels: int) -> ShapeProgram:
    """The ShapeProgram of a traced backbone fed ``(1, input_channels, H, W)``."""
    return ShapeProgramBuilder(gm).build(input_channels)
