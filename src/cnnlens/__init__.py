"""cnnlens: train an image classifier and explain it, end to end."""

from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging

from .data import load_dataset
from .explain import Explanation, explain, methods, normalize_maps
from . import metrics  # noqa: E402,F401  (registers the trust controls as methods)
from .models import count_params, create_model

_logging.getLogger(__name__).addHandler(_logging.NullHandler())


_LAZY = {"train": "cnnlens.train.run", "load_run": "cnnlens.train.run", "Run": "cnnlens.train.run",
         "evaluate": "cnnlens.evaluate.core"}


def __getattr__(name: str):
    """Lazy public names (training pulls in Lightning). ``cnnlens.train`` and ``cnnlens.evaluate`` are
    both subpackages and functions: the functions win as attributes of ``cnnlens``."""
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnlens' has no attribute {name!r}")
    import importlib

    obj = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = obj  # importing the subpackage bound the module here; the function replaces it
    return obj


__all__ = ["Explanation", "Run", "count_params", "create_model", "evaluate", "explain", "load_dataset",
           "load_run", "methods", "normalize_maps", "train"]
