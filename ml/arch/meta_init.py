"""Skip weight initialisation of meta-device tensors (they hold no values to initialise).

Every network here is built on the meta device, yet each module's ``reset_parameters`` still
runs ``torch.nn.init``: on meta tensors that goes through torch's Python decompositions
(``torch._refs``), which cost more than building the module itself: building a torchvision
detection head to count its parameters (``ml.arch.heads``) is then mostly ``normal_`` and
``uniform_`` on meta weights, a large share of encoding a never-seen genome (the profile is in
docs/results.md, "Figures moved from docstrings").

:func:`install` wraps each in-place initialiser of ``torch.nn.init`` so that it returns a meta
tensor untouched and calls the original for any other tensor, so real weights (training, the
GNNs, anything on CPU or CUDA, in any thread) are initialised exactly as before. It is
idempotent and process-wide; ``ml.arch`` installs it on import. What a compile produces
(shapes, parameter counts, errors) is the same with and without it (``tests/ml/test_memo.py``).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import init

#: Marks a wrapped initialiser (and keeps the original for :func:`uninstall`).
_ORIGINAL = "__meta_init_original__"


def _initialisers() -> list[str]:
    """The public in-place initialisers of ``torch.nn.init`` (``normal_``, ``kaiming_uniform_``,
    ...): callables whose name ends with one underscore."""
    return [name for name in dir(init)
            if name.endswith("_") and not name.startswith("_") and callable(getattr(init, name))]


def _skipping_meta(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(tensor, torch.Tensor) and tensor.is_meta:
            return tensor
        return fn(tensor, *args, **kwargs)
    setattr(wrapper, _ORIGINAL, fn)
    return wrapper


def install() -> None:
    """Wrap every initialiser of ``torch.nn.init`` (once)."""
    for name in _initialisers():
        fn = getattr(init, name)
        if not hasattr(fn, _ORIGINAL):
            setattr(init, name, _skipping_meta(fn))


def uninstall() -> None:
    """Restore the original initialisers (tests compare with and without)."""
    for name in _initialisers():
        original = getattr(getattr(init, name), _ORIGINAL, None)
        if original is not None:
            setattr(init, name, original)


def installed() -> bool:
    return hasattr(init.normal_, _ORIGINAL)
