"""cnnlens: train an image classifier and explain it, end to end."""

from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging

from .data import load_dataset
from .explain import Explanation, explain, methods, normalize_maps
from . import metrics  # noqa: E402,F401  (registers the trust controls as methods)
from .models import count_params, create_model

_logging.getLogger(__name__).addHandler(_logging.NullHandler())


def __getattr__(name: str):  # lazy: training pulls in Lightning
    if name in ("train", "load_run", "Run"):
        from . import train as _t

        return getattr(_t, name)
    if name == "evaluate":
        from .evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'cnnlens' has no attribute {name!r}")


__all__ = ["Explanation", "Run", "count_params", "create_model", "evaluate", "explain", "load_dataset",
           "load_run", "methods", "normalize_maps", "train"]
