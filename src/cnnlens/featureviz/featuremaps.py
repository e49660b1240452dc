"""Feature maps: what every filter of a layer outputs for given images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..nn import check_input, model_device, model_guard
from .render import capture, filter_layer
from ..errors import CnnlensError


@dataclass(frozen=True)
class FeatureMaps:
    """Outputs of every filter of one layer.

    Attributes:
        layer: dotted name of the module read.
        maps: ``float [B, K, h, w]`` the layer's output (pre-ReLU, after BatchNorm when one follows
            the conv; see :func:`cnnlens.featureviz.render.filter_layer`), on the CPU.
    """

    layer: str
    maps: torch.Tensor

    def ranked(self, i: int = 0) -> torch.Tensor:
        """Channel indices of image ``i`` sorted by mean activation, strongest first (``int64 [K]``)."""
        return self.maps[i].mean((1, 2)).argsort(descending=True)


@torch.no_grad()
def feature_maps(
    model: nn.Module, x: torch.Tensor, layer: str | int | nn.Module, bn: bool = True
) -> FeatureMaps:
    """Run ``x`` (normalized, ``[B, C, H, W]`` or one image ``[C, H, W]``) and return ``layer``'s
    output ``[B, K, h, w]``. The forward pass stops at the layer; the model comes back untouched."""
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        x = x[None]
    check_input(x)
    name, _ = filter_layer(model, layer, bn)
    with model_guard(model) as handles, capture(model, [name], handles) as run:
        a = run(x.to(model_device(model), torch.float32))[name]
    if a.ndim != 4:
        raise CnnlensError(
            f"layer {name!r} outputs shape {tuple(a.shape)}, not feature maps [B, K, h, w]; "
            "choose a convolutional layer"
        )
    return FeatureMaps(layer=name, maps=a.detach().float().cpu())
