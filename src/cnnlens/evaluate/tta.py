"""Test-time augmentation: average the softmax over augmented views of each image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import check_choice

TTA_MODES = ("none", "flip", "tencrop")


def tta_views(x: torch.Tensor, mode: str | None, crop: float = 0.875) -> list[torch.Tensor]:
    """Views of a batch ``[B,C,H,W]`` (any dtype) at the same size.

    ``flip``: the image and its horizontal mirror. ``tencrop``: the four corner crops and the centre
    crop covering ``crop`` of each side, and their mirrors, each resized back to ``H x W`` (bilinear),
    since the model's input size is fixed.
    """
    mode = mode or "none"
    check_choice("tta", mode, TTA_MODES)
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, torch.flip(x, dims=[3])]
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
    tops = [0, 0, h - ch, h - ch, (h - ch) // 2]
    lefts = [0, w - cw, 0, w - cw, (w - cw) // 2]
    views = []
    xf = x.float()
    for t, l in zip(tops, lefts):
        c = xf[:, :, t:t + ch, l:l + cw]
        c = F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False)
        c = c.round().clamp(0, 255).to(x.dtype) if x.dtype == torch.uint8 else c
        views += [c, torch.flip(c, dims=[3])]
    return views
