"""Checks at the explanation entry points: targets are class indices, and the model and the data
are somewhere real (not PyTorch's ``meta`` device, not spread over several devices)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CnnlensError, CnnlensTypeError
from ..nn import ModelState, model_state

_TARGET_FORMS = ("None, 'pred', 'label' (with labels=...), a class index (an int) or one class index per "
                 "image (a sequence of ints, an integer tensor or array)")


def check_target(target: Any, n: int) -> None | int | str | torch.Tensor:
    """``target`` checked to be a target spec for ``n`` images; classes must be integers.

    Returns ``None``, ``"pred"``, ``"label"``, an ``int`` (also for a one-element sequence or
    tensor: that class for every image), or an ``int64`` tensor ``[n]`` (from a sequence, a NumPy
    array or a tensor; a tensor keeps its device). A bool or float (``True``, ``2.5``, a float
    tensor) is refused rather than read as a class.
    """
    import numbers

    import numpy as np

    if target is None or isinstance(target, str):
        if target not in (None, "pred", "label"):
            raise CnnlensError(f"target must be {_TARGET_FORMS}; got {target!r}")
        return target
    kind = type(target).__name__
    if isinstance(target, bool | np.bool_) or (isinstance(target, numbers.Number)
                                               and not isinstance(target, numbers.Integral)):
        raise CnnlensTypeError(f"target must be {_TARGET_FORMS}; got {target!r} ({kind}): a class index is "
                               "an integer, and a bool or float is not read as one. Pass the class as an int")
    if isinstance(target, numbers.Integral):
        return int(target)
    if isinstance(target, torch.Tensor):
        if target.device.type == "meta":
            raise CnnlensError("target is a tensor on the meta device, which holds no values; give the "
                               "class indices on the CPU or the model's device")
        t = target
    elif isinstance(target, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(target)) if target.dtype != object else None
    elif isinstance(target, Sequence):
        bad = [v for v in target if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Integral)]
        if bad:
            raise CnnlensTypeError(f"target must be {_TARGET_FORMS}; got a sequence holding {bad[0]!r} "
                                   f"({type(bad[0]).__name__}): class indices are integers")
        t = torch.as_tensor([int(v) for v in target], dtype=torch.long)
    else:
        t = None
    if t is None:
        raise CnnlensTypeError(f"target must be {_TARGET_FORMS}; got a {kind}")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        what = (f"NumPy array of dtype {target.dtype}" if isinstance(target, np.ndarray)
                else f"tensor of dtype {t.dtype}")
        raise CnnlensTypeError(f"target must be {_TARGET_FORMS}; got a {what}: class indices are integers, "
                               "and a bool or float is not read as one")
    t = t.long().view(-1)
    if t.numel() not in (1, n):
        raise CnnlensError(f"target must give one class per image ({n}); got {t.numel()}")
    return int(t[0]) if t.numel() == 1 else t  # one class: the same for every image


def check_model_device(model: nn.Module, state: ModelState | None = None) -> torch.device:
    """The one device holding ``model``'s parameters and buffers (CPU for a model without any).

    Raises a ``CnnlensError`` for a model on the meta device (no weights: nothing to explain) or
    spread over several devices. ``state``: the model's :func:`~cnnlens.nn.model_state` (its
    devices), when the caller has it for :func:`~cnnlens.nn.model_guard` too: one walk for both.
    """
    devs = (state if state is not None else model_state(model)).devices
    if any(d.type == "meta" for d in devs):
        raise CnnlensError("the model has parameters on the meta device, which hold no values (a model "
                           "built without weights); load its weights first, e.g. "
                           "model.to_empty(device='cpu') then load_state_dict(...), or "
                           "load_state_dict(..., assign=True)")
    if len(devs) > 1:
        raise CnnlensError(f"the model's parameters and buffers are on several devices "
                           f"({', '.join(sorted(map(str, devs)))}); explaining needs the whole model on one "
                           "device: model.to(device)")
    return next(iter(devs)) if devs else torch.device("cpu")
