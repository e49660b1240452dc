"""Localization against ground-truth evidence masks (the ``planted`` dataset).

- Pointing game (Zhang et al. 2016): a hit when the map's maximum lies inside the mask. When
  several pixels share the maximum the score is the fraction of them inside the mask (the expected
  hit of a random tie-break), so a flat map scores the mask's area fraction, not 0 or 1.
- Relevance mass accuracy (Arras et al. 2022, "CLEVR-XAI"): the share of the positive relevance
  that falls inside the mask, ``sum_{mask} max(R, 0) / sum max(R, 0)``; a map with no positive
  relevance scores 0.

A random map scores about the mask's area fraction on both.
"""

from __future__ import annotations

import torch

from .base import Score
from ..errors import CnnlensError


def _check(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if maps.ndim != 3 or masks.shape != maps.shape:
        raise CnnlensError(
            f"maps [N,H,W] and masks must have the same shape; got {tuple(maps.shape)} and "
            f"{tuple(masks.shape)}"
        )
    if (masks.flatten(1).sum(1) == 0).any():
        bad = torch.nonzero(masks.flatten(1).sum(1) == 0).flatten().tolist()
        raise CnnlensError(
            f"masks of images {bad[:10]} are empty; localization needs a non-empty "
            "ground-truth mask per image"
        )


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, method: str = "") -> Score:
    """``[N, H, W]`` maps and bool masks -> hit rate per image (higher is better)."""
    _check(maps, masks)
    n = maps.shape[0]
    f = maps.detach().reshape(n, -1).double().cpu()
    m = masks.reshape(n, -1).bool().cpu()
    top = f == f.amax(1, keepdim=True)
    hits = (top & m).sum(1).double() / top.sum(1).double()
    return Score("pointing_game", hits, True, method)


def relevance_mass(maps: torch.Tensor, masks: torch.Tensor, method: str = "") -> Score:
    """Share of positive relevance inside the mask, per image (higher is better)."""
    _check(maps, masks)
    n = maps.shape[0]
    pos = maps.detach().reshape(n, -1).double().cpu().clamp_min(0)
    m = masks.reshape(n, -1).bool().cpu()
    tot = pos.sum(1)
    inside = (pos * m).sum(1)
    return Score(
        "relevance_mass",
        torch.where(tot > 0, inside / tot.clamp_min(1e-300), torch.zeros_like(tot)),
        True,
        method,
    )
