"""Model registry and helpers: every architecture is built from (in_channels, num_classes, input_size)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..registry import Registry
from ..errors import CnnlensError

# name -> factory(in_channels: int, num_classes: int, input_size: int | tuple[int, int], **kw) -> nn.Module
MODELS: Registry = Registry("model")


def create_model(name: str, in_channels: int = 1, num_classes: int = 10,
                 input_size: int | tuple[int, int] = 32, *, trust_code: bool = False,
                 **kwargs: Any) -> nn.Module:
    """Build a registered model for the given input and class count.

    A user's file (``FILE.py:Class``, a TorchScript file) runs its code, so it is built only with
    ``trust_code=True``; without it a :class:`~cnnlens.errors.CnnlensError` names the file.

    >>> m = create_model("compact", in_channels=3, num_classes=7, input_size=48)
    >>> count_params(m)
    321511
    """
    if in_channels not in (1, 3) and not name.startswith(("torchvision:",)):
        if in_channels < 1:
            raise CnnlensError(f"in_channels must be >= 1; got {in_channels}")
    if num_classes < 2:
        raise CnnlensError(f"num_classes must be >= 2; got {num_classes}")
    if not trust_code:
        from .user import refuse_user_code

        refuse_user_code(name)
    factory = MODELS.get(name)
    import inspect

    try:
        takes_weights = "weights" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_weights = False
    weights = None if takes_weights else kwargs.pop("weights", None)
    model = factory(in_channels=in_channels, num_classes=num_classes, input_size=input_size, **kwargs)
    if weights is not None:  # any model: initial weights from a file (safetensors, or a safe .pt/.pth)
        from .weights import load_weights

        load_weights(model, weights)
    return model


def count_params(model: nn.Module | int, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only trainable ones); an int passes through."""
    if isinstance(model, int):
        return model
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def hw(input_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(input_size, int):
        return input_size, input_size
    h, w = input_size
    return int(h), int(w)


def conv_block(cin: int, cout: int, k: int = 3, pool: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, 1, k // 2), nn.BatchNorm2d(cout), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    return layers


@torch.no_grad()
def output_shape(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[int, ...]:
    was = module.training
    module.eval()
    try:
        return tuple(module(torch.zeros(1, *in_shape)).shape[1:])
    finally:
        module.train(was)


@torch.no_grad()
def check_runs(model: nn.Module, name: str, c: int, k: int, size: tuple[int, int], hint: str,
               errors: tuple[type[BaseException], ...] = (RuntimeError,)) -> None:
    """One forward pass of a zero image ``[1, c, *size]`` in eval mode (the model's mode restored):
    the model must take that input and return logits ``[1, k]``; else a :class:`CnnlensError`
    naming ``name`` (e.g. ``"timm:resnet18"``), the input and ``hint`` (what to change)."""
    was = model.training
    model.eval()
    try:
        out = model(torch.zeros(1, c, *size))
    except errors as e:
        raise CnnlensError(f"{name} cannot take {c}x{size[0]}x{size[1]} input ({e}); {hint}") from None
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, k):
        raise CnnlensError(f"{name} returned {type(out).__name__} instead of logits [1, {k}]")
