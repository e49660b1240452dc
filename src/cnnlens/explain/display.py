"""Display normalization of attribution maps (separate from the raw maps)."""

from __future__ import annotations

import torch


def normalize_maps(maps: torch.Tensor, signed: bool = False, percentile: float = 99.5) -> torch.Tensor:
    """Scale each map for display: ``[0,1]`` for unsigned maps, ``[-1,1]`` for signed ones.

    Values are divided by the per-map ``percentile`` of ``|map|`` and clipped; an all-zero map stays zero.
    """
    b = maps.shape[0]
    flat = maps.detach().float().reshape(b, -1)
    mag = flat.abs()
    q = torch.quantile(mag, percentile / 100.0, dim=1, keepdim=True) if flat.shape[1] > 1 else mag
    q = torch.where(q > 0, q, mag.amax(1, keepdim=True))
    scale = torch.where(q > 0, q, torch.ones_like(q))
    out = flat / scale
    out = out.clamp(-1, 1) if signed else out.clamp(0, 1) if (flat >= 0).all() else out.abs().clamp(0, 1)
    return out.reshape(maps.shape)
