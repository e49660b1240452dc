"""Random, differentiable, batched image transforms for transformation robustness.

Optimizing an image that must keep activating a unit after random small shifts, scalings and
rotations rules out the fragile high-frequency patterns plain gradient ascent finds (Olah et al.,
"Feature Visualization", Distill 2017; Lucent's ``transform.py``). Every transform draws its own
parameters *per image* from a seeded :class:`torch.Generator`, and works on ``[B, C, H, W]``.

A transform is a callable ``(x, generator) -> x``; :func:`compose` chains them, and
:func:`standard` gives the default chain scaled to the image size (pad, jitter, scale 0.9-1.1,
rotation +-10 deg, jitter, crop back).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(g: torch.Generator, n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=g) * (hi - lo) + lo).to(device)


def _affine(x: torch.Tensor, theta: torch.Tensor, padding_mode: str = "reflection") -> torch.Tensor:
    """Resample ``x`` with per-image affine maps ``theta [B, 2, 3]`` (output -> input, normalized coords)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def pad(n: int, value: float | None = 0.5) -> Transform:
    """Pad ``n`` pixels on every side: a constant ``value`` (mid-grey), or reflection if ``None``."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if n <= 0:
            return x
        if value is None:
            return F.pad(x, (n, n, n, n), mode="reflect")
        return F.pad(x, (n, n, n, n), mode="constant", value=value)

    return t


def jitter(d: int) -> Transform:
    """Shift each image by its own random integer offset in ``[-d, d]`` pixels (reflecting at edges)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if d <= 0:
            return x
        b, _, h, w = x.shape
        s = torch.randint(-d, d + 1, (b, 2), generator=g).to(x.device, x.dtype)
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = 1
        theta[:, 1, 1] = 1
        theta[:, 0, 2] = -2 * s[:, 0] / w  # exact integer shifts: samples land on pixel centres
        theta[:, 1, 2] = -2 * s[:, 1] / h
        return _affine(x, theta)

    return t


def random_affine(scale: tuple[float, float] = (0.9, 1.1), degrees: float = 10.0) -> Transform:
    """Random zoom and rotation about the centre in one resampling (fewer blurs than two)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        s = _uniform(g, b, scale[0], scale[1], x.device)
        a = _uniform(g, b, -degrees, degrees, x.device) * (math.pi / 180)
        if degrees == 0 and scale[0] == scale[1] == 1.0:
            return x
        cos, sin = torch.cos(a) / s, torch.sin(a) / s
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        # rotation in pixel units, expressed in normalized coordinates (keeps non-square images right)
        theta[:, 0, 0] = cos
        theta[:, 0, 1] = -sin * h / w
        theta[:, 1, 0] = sin * w / h
        theta[:, 1, 1] = cos
        return _affine(x, theta)

    return t


def center_crop(h: int, w: int) -> Transform:
    """Crop the centre ``h x w`` (undoes :func:`pad`)."""

    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        hh, ww = x.shape[-2:]
        if (hh, ww) == (h, w):
            return x
        top, left = (hh - h) // 2, (ww - w) // 2
        return x[..., top : top + h, left : left + w]

    return t


def compose(transforms: Sequence[Transform]) -> Transform:
    def t(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for f in transforms:
            x = f(x, g)
        return x

    return t


def standard(
    size: tuple[int, int],
    *,
    shift: float = 0.0625,
    scale: tuple[float, float] = (0.9, 1.1),
    degrees: float = 10.0,
) -> list[Transform]:
    """The default chain, scaled to an ``H x W`` image: pad and jitter by ``shift * max(H, W)``
    pixels (3 px at 48, 14 at 224), random zoom 0.9-1.1 and rotation +-10 deg, a small final jitter,
    and a crop back to ``H x W``."""
    h, w = size
    d = max(1, round(shift * max(h, w)))
    return [pad(d), jitter(d), random_affine(scale, degrees), jitter(max(1, d // 3)), center_crop(h, w)]
