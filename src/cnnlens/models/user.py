"""A user's own model: ``path/to/net.py:ClassName`` or a TorchScript file (``torch.jit.save``).

Both run the user's code (the Python file is imported, the TorchScript program executed), which
happens only because the user named that file. Weights for a ``.py`` model come from
``weights=FILE`` (safetensors or tensors-only ``torch.load``); a TorchScript file carries its own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import re
import sys
import warnings
import zipfile
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .base import MODELS, hw
from .weights import load_weights
from ..errors import CnnlensError, CnnlensTypeError

log = logging.getLogger(__name__)

_PY_CLASS = re.compile(r"^(?P<path>.+\.py):(?P<cls>[A-Za-z_][A-Za-z0-9_]*)$")
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript", ".jit")
BUILD_ARGS = ("in_channels", "num_classes", "input_size")
_modules: dict[tuple[str, int], ModuleType] = {}


def import_file(path: str | Path) -> ModuleType:
    """Import a Python file by path (cached per path and modification time)."""
    p = Path(path).resolve()
    key = (str(p), p.stat().st_mtime_ns)
    if key in _modules:
        return _modules[key]
    name = f"cnnlens_user_{p.stem}_{hashlib.sha1(str(p).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise CnnlensError(f"model file {p} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise CnnlensError(f"importing model file {p} failed: {type(e).__name__}: {e}") from e
    _modules[key] = module
    return module


def build_from_file(path: str, cls_name: str, in_channels: int = 1, num_classes: int = 10,
                    input_size: int | tuple[int, int] = 32, weights: str | None = None,
                    **kw: Any) -> nn.Module:
    """Instantiate ``cls_name`` from the file; pass ``in_channels``/``num_classes``/``input_size``
    (and any extra options) to its ``__init__`` where it accepts them, else call it with none."""
    p = Path(path)
    if not p.is_file():
        raise CnnlensError(f"model file {p} does not exist (from model name '{path}:{cls_name}')")
    module = import_file(p)
    cls = getattr(module, cls_name, None)
    if cls is None:
        found = [n for n, v in vars(module).items()
                 if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__]
        raise CnnlensError(f"model file {p} has no class {cls_name!r}; nn.Module classes defined there: "
                         f"{', '.join(found) or 'none'}")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CnnlensTypeError(f"{p}:{cls_name} is a {type(cls).__name__}, not an nn.Module subclass")
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())
    given = {"in_channels": in_channels, "num_classes": num_classes, "input_size": input_size}
    args = {k: v for k, v in given.items() if takes_any or k in params}
    bad = [k for k in kw if not (takes_any or k in params)]
    if bad:
        raise CnnlensTypeError(f"{p}:{cls_name}.__init__ does not accept {', '.join(bad)}; its parameters: "
                        f"{', '.join(n for n in params if n != 'self')}")
    model = cls(**args, **kw)
    if weights is not None:
        load_weights(model, weights)
    check_output(model, f"{p}:{cls_name}", in_channels, num_classes, input_size,
                 hint="" if "num_classes" in args else f" (its __init__ takes no num_classes, so it must "
                 f"already give {num_classes})")
    return model


def is_torchscript(path: str | Path) -> bool:
    """A TorchScript archive is a zip with ``<root>/code/`` and ``<root>/constants.pkl``;
    a ``torch.save`` zip has neither."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def load_torchscript(path: str, in_channels: int = 1, num_classes: int = 10,
                     input_size: int | tuple[int, int] = 32, **kw: Any) -> nn.Module:
    """Load a ``torch.jit.save`` file on the CPU and check it gives ``[B, num_classes]`` logits."""
    if kw:
        raise CnnlensTypeError(f"a TorchScript model takes no options (it is already built); got "
                        f"{', '.join(kw)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        try:
            model = torch.jit.load(path, map_location="cpu")
        except RuntimeError as e:
            raise CnnlensError(f"TorchScript file {path} cannot be loaded: {e}") from None
    check_output(model, path, in_channels, num_classes, input_size)
    return model


@torch.no_grad()
def check_output(model: nn.Module, what: str, c: int, k: int, input_size: int | tuple[int, int],
                 hint: str = "") -> None:
    """One forward pass on zeros ``[2, c, H, W]`` in eval mode; it must return logits ``[2, k]``."""
    h, w = hw(input_size)
    was = model.training
    model.eval()
    try:
        out = model(torch.zeros(2, c, h, w))
    except Exception as e:  # the user's code: any failure becomes a clear message
        raise CnnlensError(f"model {what} fails on input [2, {c}, {h}, {w}]: {type(e).__name__}: {e}") from None
    finally:
        model.train(was)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, k):
        raise CnnlensError(f"model {what} must return logits [B, {k}] for input [2, {c}, {h}, {w}]; it "
                         f"returned {shape}{hint}")


def resolve_py(name: str):
    m = _PY_CLASS.match(name)
    if m is None:
        return None
    return partial(build_from_file, m["path"], m["cls"])


def resolve_torchscript(name: str):
    p = Path(name)
    if p.suffix not in TORCHSCRIPT_SUFFIXES and not p.is_file():
        return None
    if not p.is_file():
        raise CnnlensError(f"model file {p} does not exist")
    if is_torchscript(p):
        return partial(load_torchscript, str(p))
    if p.suffix in TORCHSCRIPT_SUFFIXES:
        raise CnnlensError(f"{p} is not a TorchScript file (no code/ and constants.pkl inside). If it holds "
                         "weights, name the architecture and pass the file as weights, e.g. "
                         f"--model torchvision:resnet18 --weights {p}, or save the model with "
                         "torch.jit.save(torch.jit.script(model), path)")
    return None


MODELS.register_resolver("FILE.py:ClassName", resolve_py)
MODELS.register_resolver("TorchScript FILE (torch.jit.save)", resolve_torchscript)
