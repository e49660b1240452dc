"""The model's input normalization, part of every run (``model.json`` ``normalization``, ``mean``, ``std``).

- ``"dataset"``: the dataset's train-split statistics (the default for training from scratch);
- ``"pretrained"``: what the pretrained weights expect (timm's ``pretrained_cfg``, torchvision's
  weights transforms; see :mod:`cnnlens.models.pretrained`);
- ``"none"``: raw pixels in ``[0, 1]`` (mean 0, std 1 per channel);
- ``(mean, std)`` / ``"MEAN,STD"``: given values, one pair for every channel or one per channel
  (recorded as ``custom``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..config import RunConfig
from ..data.base import ImageDataset
from ..errors import CnnlensError, CnnlensTypeError

NORMALIZATIONS = ("dataset", "pretrained", "none")
"""Named normalizations; anything else is given as numbers (``custom``)."""


def parse_normalize(value: str | Sequence[Any], ds: ImageDataset, model: str | None = None,
                    net: nn.Module | None = None) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """``(label, mean, std)`` for ``normalize`` on ``ds``'s channels (see the module docstring);
    ``pretrained`` reads it from ``model`` (the name) built as ``net``."""
    c = ds.channels
    if isinstance(value, str) and value.strip() in NORMALIZATIONS:
        if value.strip() == "none":
            return "none", (0.0,) * c, (1.0,) * c
        if value.strip() == "pretrained":
            from ..models.pretrained import expected_normalization

            if net is None:
                raise CnnlensError("normalize 'pretrained' needs the model (a timm: or torchvision: name)")
            return "pretrained", *expected_normalization(model or "", net, c)
        return "dataset", tuple(ds.mean), tuple(ds.std)
    how = (f"give dataset, pretrained, none, or MEAN,STD in [0, 1] pixel units: 2 numbers (every channel) or "
           f"{2 * c} ({c} means, then {c} stds)")
    if isinstance(value, str):
        try:
            nums = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise CnnlensError(f"--normalize {value!r} is not understood; {how}") from None
    elif isinstance(value, Sequence) and len(value) == 2:
        nums = []
        for part in value:
            nums += [float(v) for v in (part if isinstance(part, Sequence) else [part])]
    else:
        raise CnnlensTypeError(f"normalize must be 'dataset', 'pretrained', 'none' or (mean, std); got "
                               f"{value!r}")
    if len(nums) == 2:
        mean, std = (nums[0],) * c, (nums[1],) * c
    elif len(nums) == 2 * c:
        mean, std = tuple(nums[:c]), tuple(nums[c:])
    else:
        raise CnnlensError(f"normalize {value!r} gives {len(nums)} numbers for {c}-channel images; {how}")
    if not all(math.isfinite(v) for v in mean + std) or min(std) <= 0:
        raise CnnlensError(f"normalize {value!r}: means must be finite and stds finite and > 0; {how}")
    return "custom", mean, std


def resolve_normalization(cfg: RunConfig, ds: ImageDataset, net: nn.Module) -> tuple[str, tuple[float, ...],
                                                                                      tuple[float, ...]]:
    """``(label, mean, std)`` for training: ``train.normalize``, or when unset ``pretrained`` for a
    model that downloads pretrained weights (``pretrained=True``) and ``dataset`` otherwise."""
    how = cfg.train.normalize or ("pretrained" if cfg.model.options.get("pretrained") else "dataset")
    return parse_normalize(how, ds, cfg.model.name, net)
