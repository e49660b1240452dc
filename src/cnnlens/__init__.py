"""cnnlens: train an image classifier and explain it, end to end."""

from __future__ import annotations

__version__ = "0.1.0"

import logging as _logging

from .data import load_dataset
from .fill import Fill
from .explain import Explanation, explain, explain_many, methods, normalize_maps
from . import metrics  # noqa: E402,F401  (registers the trust controls as methods)
from .models import count_params, create_model

# `cnnlens.train` and `cnnlens.evaluate` are subpackages and functions; binding the functions after the
# subpackages are loaded makes the functions win (Lightning itself is imported only inside train()).
from .evaluate.core import evaluate  # noqa: E402
from .train.run import Run, load_run, train  # noqa: E402
from .importing import import_model  # noqa: E402

_logging.getLogger(__name__).addHandler(_logging.NullHandler())


def __getattr__(name: str):  # noqa: ANN202
    # `cnnlens.run(...)` (what `cnnlens run` does) pulls in the pipeline and the report: loaded on first use
    if name == "run":
        from .workflow import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Explanation", "Run", "count_params", "create_model", "evaluate", "explain", "explain_many",
           "Fill", "import_model", "load_dataset",
           "load_run", "methods", "normalize_maps", "run", "train"]
