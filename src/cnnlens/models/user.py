"""A user's own model: ``path/to/net.py:ClassName`` or a TorchScript file (``torch.jit.save``).

Both run the user's code (the Python file is imported, the TorchScript program executed). That
happens only with an explicit opt-in each time: ``trust_code=True`` in Python, ``--trust-code`` on
the command line (:func:`user_code_file` tells such names apart, :func:`refuse_user_code` says what
the flag does). Weights for a ``.py`` model come from ``weights=FILE`` (safetensors or tensors-only
``torch.load``); a TorchScript file carries its own.
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
    try:
        model = cls(**args, **kw)
    except Exception as e:  # the user's __init__: a bad option becomes a message naming it
        given_s = ", ".join(f"{k}={v!r}" for k, v in {**args, **kw}.items())
        opts = f" (check the model option(s) {', '.join(kw)})" if kw else ""
        raise CnnlensError(f"{p}:{cls_name}({given_s}) raised {type(e).__name__}: {e}{opts}. Model options "
                           "(--model-option KEY=VALUE) are read as YAML: a list is [1, 2], a string "
                           "with a comma stays a string") from None
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


def user_code_file(name: str) -> Path | None:
    """The file whose code building model ``name`` would run (``FILE.py:Class``, or an existing
    TorchScript file), or ``None`` for any other name. Reads at most a zip's file list."""
    if name in MODELS or name.partition(":")[0] in MODELS.prefixes():
        return None
    m = _PY_CLASS.match(name)
    if m is not None:
        return Path(m["path"])
    p = Path(name)
    if p.is_file() and is_torchscript(p):
        return p
    return None


def refuse_user_code(name: str, where: str = "") -> None:
    """Raise the opt-in error for model ``name`` when it is user code (see :func:`user_code_file`)."""
    f = user_code_file(name)
    if f is None:
        return
    kind = "imports and runs the Python file" if f.suffix == ".py" else "runs the TorchScript program in"
    raise CnnlensError(
        f"{where}model {name!r} is user code: building it {kind} {f}. cnnlens runs code from a file only "
        "when you opt in, each time: pass --trust-code (command line) or trust_code=True (Python) if you "
        "trust that file. Without it nothing from the file is executed")


def instance_name(net: nn.Module, in_channels: int, num_classes: int,
                  input_size: int | tuple[int, int]) -> str:
    """How a run records an ``nn.Module`` instance handed to ``train``/``import_model``.

    ``FILE.py:Class`` when the class is defined at the top level of a file (not ``__main__``) and
    :func:`build_from_file`'s call (``in_channels``/``num_classes``/``input_size`` where accepted, no
    other options) gives a model whose outputs, with ``net``'s weights, equal ``net``'s on a random
    input; otherwise ``custom:module.Class`` (the run then cannot be reopened without code, and
    :func:`custom_model_hint` says how to re-import it). ``net`` comes back untouched.
    """
    cls = type(net)
    custom = f"custom:{cls.__module__}.{cls.__qualname__}"
    try:
        src = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        src = None
    if (src is None or not src.endswith(".py") or cls.__module__ == "__main__" or "." in cls.__qualname__
            or isinstance(net, torch.jit.ScriptModule)):
        return custom
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())
    given = {"in_channels": in_channels, "num_classes": num_classes, "input_size": input_size}
    args = {k: v for k, v in given.items() if takes_any or k in params}
    h, w = hw(input_size)
    was = [m.training for m in net.modules()]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            rebuilt = cls(**args)
            rebuilt.load_state_dict(net.state_dict())
            dev = next((t.device for t in net.state_dict().values()), torch.device("cpu"))
            x = torch.randn(2, in_channels, h, w, device=dev)
            net.eval()
            rebuilt.to(x.device).eval()
            with torch.no_grad():
                same = torch.equal(net(x), rebuilt(x))
    except Exception as e:  # the user's class cannot be rebuilt from the recorded arguments
        log.info("%s cannot be rebuilt as %s:%s(%s): %s", cls.__qualname__, src, cls.__qualname__, args, e)
        return custom
    finally:
        for m, t in zip(net.modules(), was):
            m.training = t
    return f"{Path(src).resolve()}:{cls.__qualname__}" if same else custom


def custom_model_hint(name: str, run: Path, spec: str) -> str:
    """What to do with a run whose model (``custom:...``) cannot be rebuilt without the user's code."""
    cls = name[len("custom:"):].rpartition(".")[2]
    return (f"{run} holds a model handed to cnnlens as a Python object ({name[len('custom:'):]}), and its "
            "architecture cannot be rebuilt from model.json. Put the class in a file and import the weights "
            f"once: `cnnlens import FILE.py:{cls} --data {spec} --weights {run / 'model.safetensors'} --out "
            f"{run} --force --trust-code` (add --model-option KEY=VALUE for its __init__ arguments); or in "
            f"Python, rebuild it yourself and load {run / 'model.safetensors'} with "
            "cnnlens.models.load_weights")


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
