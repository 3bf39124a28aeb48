"""The 43-key per-node hyper-parameter vector of the "combined" encoding.

The seed parsed ``extra_repr()`` with ``eval`` and ``float()`` and lost positional fields and every
tuple. Here values are read from the module's own attributes, with one rule per kind of value:

* every key has two columns, ``<key>.0`` and ``<key>.1`` (height-like and width-like);
  a scalar fills both, a 1-tuple fills both, a 2-tuple fills one each, a longer tuple keeps its
  first and last element;
* numbers as ``float``; booleans 0/1; a tensor-valued attribute (``bias``) is 1 when present;
* strings are the index in :data:`STRING_VOCABULARY` of that key;
* ``Permute.dims`` is its permutation read as a base-``len(dims)`` number;
* ``None`` inside a tuple (adaptive pooling's "keep this size") is -1;
* the mask column of a key is 1 iff the module has the attribute with a value other than None,
  so an absent key and a zero value stay distinguishable;
* a value beyond float32's range (a hand-written ``1e308`` slope) is clipped to its largest
  finite value, so no feature is ever inf.

Values stay raw; standardisation is fitted on training data by the trainer.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

HYPERPARAM_KEYS: tuple[str, ...] = (
    "_random_samples", "affine", "align_corners", "approximate", "args", "bias", "ceil_mode",
    "count_include_pad", "device", "dilation", "dims", "divisor_override", "dtype",
    "elementwise_affine", "eps", "groups", "in_channels", "in_features", "inplace",
    "kernel_size", "kwargs", "mode", "momentum", "negative_slope", "norm_type",
    "normalized_shape", "num_features", "out_channels", "out_features", "output_padding",
    "output_ratio", "output_size", "p", "padding", "padding_mode", "recompute_scale_factor",
    "return_indices", "scale_factor", "size", "stride", "threshold", "track_running_stats",
    "value",
)
assert len(HYPERPARAM_KEYS) == 43 and list(HYPERPARAM_KEYS) == sorted(HYPERPARAM_KEYS)
HYPERPARAM_COLUMNS = tuple(f"{k}.{i}" for k in HYPERPARAM_KEYS for i in (0, 1))
NUM_COLUMNS = len(HYPERPARAM_COLUMNS)

STRING_VOCABULARY: dict[str, tuple[str, ...]] = {
    "padding_mode": ("zeros", "reflect", "replicate", "circular"),
    "mode": ("nearest", "linear", "bilinear", "bicubic", "trilinear", "row", "batch"),
    "approximate": ("none", "tanh"),
    "padding": ("valid", "same"),
}
_KEY_INDEX = {k: i for i, k in enumerate(HYPERPARAM_KEYS)}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _scalar(key: str, value: Any) -> float:
    if value is None:
        return -1.0
    if isinstance(value, str):
        vocab = STRING_VOCABULARY.get(key, ())
        return float(vocab.index(value)) if value in vocab else -2.0
    if isinstance(value, torch.Tensor):
        return 1.0
    return float(value)


def encode_value(key: str, value: Any) -> tuple[float, float] | None:
    """The two columns of one attribute value, or None when the key is absent."""
    if value is None:
        return None
    if key == "dims":
        dims = list(value)
        code = 0
        for d in dims:
            code = code * len(dims) + int(d)
        return float(code), float(code)
    if isinstance(value, (tuple, list, torch.Size)):
        items = list(value)
        if not items:
            return None
        return _scalar(key, items[0]), _scalar(key, items[-1])
    v = _scalar(key, value)
    return v, v


_CACHE: dict[tuple[type, str], tuple[np.ndarray, np.ndarray]] = {}
#: ~1 KB per entry (key string + two small arrays); adapters add entries per in_channels, so
#: 65,536 entries grew a long-running dataset worker by ~65 MB. 4,096 (~4 MB) still holds every
#: backbone module of the catalogue plus the recent adapters.
_CACHE_LIMIT = 4096


def module_vector(module: nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    """(values [86], mask [43]) for one module; zeros for non-module nodes.

    Memoised on (class, ``extra_repr()``), which names the constructor arguments of the module
    types that occur, so genomes that repeat a layer or an adapter width pay once. A class with
    an empty ``extra_repr`` (FractionalMaxPool2d) is keyed on its public attributes instead.
    """
    if module is None:
        return _read(None)
    described = module.extra_repr()
    if not described:
        described = repr(sorted((k, repr(v)) for k, v in vars(module).items()
                                if not k.startswith("_") and k != "training"))
    key = (type(module), described)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        hit = _CACHE[key] = _read(module)
    return hit


def _read(module: nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    values = np.zeros(NUM_COLUMNS, dtype=np.float32)
    mask = np.zeros(len(HYPERPARAM_KEYS), dtype=np.float32)
    if module is None:
        return values, mask
    for key in HYPERPARAM_KEYS:
        if key in ("args", "kwargs", "device", "dtype"):
            continue  # constructor-only names, never module attributes
        encoded = encode_value(key, getattr(module, key, None))
        if encoded is None:
            continue
        i = _KEY_INDEX[key]
        values[2 * i], values[2 * i + 1] = (min(max(v, -_FLOAT32_MAX), _FLOAT32_MAX)
                                            for v in encoded)
        mask[i] = 1.0
    values.flags.writeable = False  # shared through the memo
    mask.flags.writeable = False
    return values, mask
