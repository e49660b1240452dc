"""The input normalization pretrained weights expect, read from the model's own records.

timm: the model's ``pretrained_cfg`` (``mean``, ``std``); torchvision: the default weights'
``transforms()``. Only metadata is read: nothing is downloaded.
"""

from __future__ import annotations

from torch import nn

from ..errors import CnnlensError


def expected_normalization(name: str, net: nn.Module, channels: int) -> tuple[tuple[float, ...],
                                                                             tuple[float, ...]]:
    """``(mean, std)`` per channel (``[0, 1]`` pixel units) for model ``name`` built as ``net``.

    For 1 channel (or any count but 3) the RGB means and stds are averaged and repeated: the stem
    adaptation sums (or repeats) the RGB kernels, so a gray image stands for (x, x, x)."""
    prefix, _, arch = name.partition(":")
    if prefix == "timm" or getattr(net, "pretrained_cfg", None):
        from .timm_models import pretrained_normalization

        return pretrained_normalization(net, channels)
    if prefix == "torchvision":
        from .torchvision_models import pretrained_normalization as tv_normalization

        return tv_normalization(arch, channels)
    raise CnnlensError("normalize 'pretrained' needs a timm: or torchvision: model, whose pretrained "
                       f"weights record their normalization; {name!r} records none. "
                       "Use dataset, none or MEAN,STD")
