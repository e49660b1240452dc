"""Loading and saving weights from disk, safely: safetensors, or ``torch.load(weights_only=True)``.

Nothing here unpickles arbitrary objects: a ``.pt``/``.pth`` file that needs it (a pickled model
class, custom objects in a checkpoint) is refused with an explanation of how to convert it.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..io import atomic_path
from ..errors import CnnlensError

log = logging.getLogger(__name__)

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# nested state dicts found in common checkpoint layouts (Lightning, hand-written training loops)
NESTED_KEYS = ("state_dict", "model_state_dict", "model")
_SHOW = 8  # keys listed in an error before "... and N more"


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did: keys loaded, and (non-strict only) those left alone."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]  # in the model, not in the file: kept as initialized
    unexpected: tuple[str, ...]  # in the file, not in the model: ignored
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, file shape, model shape)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a ``{name: tensor}`` dict from ``.safetensors`` or a ``torch.save`` file (on CPU)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file {p} does not exist")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise CnnlensError(f"weights file {p} is not a readable safetensors file ({e}); re-export it "
                             "with safetensors.torch.save_file") from None
    if p.suffix not in TORCH_SUFFIXES:
        raise CnnlensError(f"weights file {p} has suffix {p.suffix!r}; give a .safetensors file or a "
                         f"torch.save file ({', '.join(TORCH_SUFFIXES)})")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        why = next((line.strip() for line in first if "GLOBAL" in line or "Unsupported" in line),
                   first[0] if first else "")
        raise CnnlensError(
            f"weights file {p} needs arbitrary unpickling to load ({why}). Unpickling can run any code, "
            "so cnnlens only reads tensors (torch.load(weights_only=True)) or safetensors. If you trust "
            "the file, convert it once: `python -c \"import torch; from safetensors.torch import "
            f"save_file; m = torch.load('{p}', weights_only=False); sd = getattr(m, 'state_dict', "
            f"lambda: m)(); save_file({{k: v.contiguous() for k, v in sd.items()}}, '{p.with_suffix('')}"
            ".safetensors')\"` and give the .safetensors file") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CnnlensError(f"weights file {p} is not a readable torch.save file ({e})") from None
    return _tensors_of(obj, p)


def _tensors_of(obj: object, p: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in NESTED_KEYS:
            inner = obj.get(key)
            if (isinstance(inner, Mapping) and inner
                    and all(isinstance(v, torch.Tensor) for v in inner.values())):
                log.info("%s: using the %r entry of the checkpoint", p, key)
                obj = inner
                break
        bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        if not bad:
            return {str(k): v for k, v in obj.items()}
        raise CnnlensError(f"weights file {p} holds a dict whose entries {bad[:_SHOW]} are not tensors; "
                         f"give a state dict (name -> tensor), or a checkpoint with one under "
                         f"{' / '.join(NESTED_KEYS)}")
    raise CnnlensError(f"weights file {p} holds a {type(obj).__name__}, not a state dict; save "
                     "model.state_dict() instead")


def nonfinite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or an infinity."""
    return [k for k, v in tensors.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]


def warn_nonfinite(tensors: Mapping[str, torch.Tensor], where: str) -> list[str]:
    """Log a warning naming the tensors of ``where`` that hold NaN/inf; returns their names."""
    bad = nonfinite_tensors(tensors)
    if bad:
        log.warning("%s holds NaN or infinite values in %d tensor(s): %s. The model's outputs will be "
                    "NaN or meaningless; these weights come from a training run that diverged or a "
                    "damaged file", where, len(bad), _listing(sorted(bad)))
    return bad


def _strip_prefix(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``module.`` from DDP, ``model.`` from Lightning) when that makes keys fit."""
    if set(sd) & model_keys:
        return sd
    for pre in ("module.", "model.", "net."):
        if sd and all(k.startswith(pre) for k in sd):
            stripped = {k[len(pre):]: v for k, v in sd.items()}
            if set(stripped) & model_keys:
                log.info("stripped the %r prefix from the weights' keys", pre)
                return stripped
    return sd


def _listing(keys: list[str]) -> str:
    more = f" ... and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> LoadReport:
    """Compare a state dict with the model's own: which keys fit, are missing, extra, mis-shaped."""
    own = model.state_dict()
    missing = tuple(k for k in own if k not in sd)
    unexpected = tuple(k for k in sd if k not in own)
    mismatched = tuple((k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own
                       if k in sd and tuple(sd[k].shape) != tuple(own[k].shape))
    bad = {m[0] for m in mismatched}
    loaded = tuple(k for k in own if k in sd and k not in bad)
    return LoadReport(loaded, missing, unexpected, mismatched)


def load_weights(model: nn.Module, path: str | os.PathLike[str] | Mapping[str, torch.Tensor],
                 strict: bool = True) -> LoadReport:
    """Load weights from ``path`` (``.safetensors`` or ``.pt/.pth``) into ``model``, in place.

    ``strict=True``: every key must be present in both with the same shape, else a ValueError
    lists the missing, unexpected and mis-shaped keys and nothing is changed. ``strict=False``:
    the fitting tensors are loaded and the rest is logged as a warning and returned.
    """
    sd = dict(path) if isinstance(path, Mapping) else read_state_dict(path)
    where = "the given state dict" if isinstance(path, Mapping) else f"weights file {path}"
    sd = _strip_prefix(sd, set(model.state_dict()))
    rep = check_state_dict(model, sd)
    problems = []
    if rep.missing:
        problems.append(f"missing from the file ({len(rep.missing)}): {_listing(list(rep.missing))}")
    if rep.unexpected:
        problems.append(f"not in the model ({len(rep.unexpected)}): {_listing(list(rep.unexpected))}")
    if rep.mismatched:
        shown = [f"{k} file {list(a)} vs model {list(b)}" for k, a, b in rep.mismatched]
        problems.append(f"shape mismatches ({len(shown)}): {_listing(shown)}")
    if problems and strict:
        raise CnnlensError(f"{where} does not fit {type(model).__name__}: " + "; ".join(problems)
                         + ". Check that the architecture, input channels and class count match the "
                         "ones the weights were trained with (or load with strict=False)")
    if problems:
        log.warning("%s: loaded %d tensors; %s", where, len(rep.loaded), "; ".join(problems))
    warn_nonfinite({k: sd[k] for k in rep.loaded}, where)
    own = model.state_dict()
    with torch.no_grad():
        for k in rep.loaded:
            own[k].copy_(sd[k].to(own[k].dtype))
    return rep


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model.state_dict()`` to ``path`` as safetensors (atomically)."""
    from safetensors.torch import save_file

    p = Path(path)
    if p.suffix != ".safetensors":
        raise CnnlensError(f"weights are saved as safetensors; give a path ending in .safetensors, not {p}")
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(p) as tmp:
        save_file(sd, str(tmp))
    return p
