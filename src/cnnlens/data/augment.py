"""Batch augmentation on the training device: one affine warp per batch, no per-sample Python.

The course reports augmented with Keras' ``ImageDataGenerator`` (rotation, shifts, horizontal flip,
zoom). Here the whole batch is warped at once: each sample's flip, random resized crop, rotation
and shift are composed into one 2x3 affine matrix, and a single ``affine_grid`` + ``grid_sample``
call resamples the batch (bilinear). Randomness comes from a ``torch.Generator``, so a seed gives
the same batch. The lead's training step does::

    x = images_uint8.float() / 255          # [B, C, H, W] in [0, 1]
    x = augment_batch(x, cfg, generator)    # same shape, same device
    x = normalize_batch(x, mean, std)       # the dataset's train statistics
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from ..errors import CnnlensError, CnnlensTypeError

FILLS = ("zeros", "border", "reflection")


@dataclass(frozen=True)
class AugmentConfig:
    """What to randomize per sample (all uniform draws).

    Attributes:
        rotation: maximum rotation in degrees, drawn from ``[-rotation, rotation]``
            (positive = counter-clockwise, as in ``torchvision.transforms.functional.rotate``).
        shift: maximum shift as a fraction of width/height, each drawn from ``[-shift, shift]``.
        hflip: flip horizontally with probability 1/2.
        resized_crop: ``(min, max)`` fraction of the image area kept by a random crop that is
            resized back to full size (zoom in), or ``None`` for no crop. A crop whose drawn
            aspect ratio would not fit keeps its area and spans the full width (or height).
        crop_ratio: ``(min, max)`` aspect ratio (w/h) of that crop, drawn log-uniformly.
        fill: what is seen outside the image: ``"zeros"``, ``"border"`` (nearest edge pixel, like
            Keras' default ``fill_mode="nearest"``) or ``"reflection"``.
    """

    rotation: float = 10.0
    shift: float = 0.1
    hflip: bool = True
    resized_crop: tuple[float, float] | None = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    fill: str = "border"

    def __post_init__(self) -> None:
        if not (isinstance(self.rotation, (int, float)) and 0 <= self.rotation <= 180):
            raise CnnlensError(f"rotation must be degrees in [0, 180]; got {self.rotation!r}")
        if not (isinstance(self.shift, (int, float)) and 0 <= self.shift < 1):
            raise CnnlensError(f"shift must be a fraction in [0, 1); got {self.shift!r}")
        if self.resized_crop is not None:
            lo, hi = self.resized_crop
            if not 0 < lo <= hi <= 1:
                raise CnnlensError(f"resized_crop must be (min, max) area fractions with 0 < min <= max <= 1, "
                                 f"or None; got {self.resized_crop!r}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise CnnlensError(f"crop_ratio must be (min, max) with 0 < min <= max; got {self.crop_ratio!r}")
        if self.fill not in FILLS:
            raise CnnlensError(f"fill must be one of {', '.join(FILLS)}; got {self.fill!r}")

    @property
    def is_identity(self) -> bool:
        return self.rotation == 0 and self.shift == 0 and not self.hflip and self.resized_crop is None

    @property
    def is_flip_only(self) -> bool:
        return self.rotation == 0 and self.shift == 0 and self.resized_crop is None and self.hflip


NO_AUGMENT = AugmentConfig(rotation=0.0, shift=0.0, hflip=False, resized_crop=None)


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample draws for a batch of ``B``.

    Attributes:
        angle: ``[B]`` degrees, counter-clockwise.
        shift: ``[B, 2]`` (x, y) shift as fractions of width and height (positive: right, down).
        flip: ``bool [B]`` horizontal flip.
        scale: ``[B, 2]`` crop width and height as fractions of the image's.
        center: ``[B, 2]`` crop center in normalized coordinates ``[-1, 1]``.
    """

    angle: torch.Tensor
    shift: torch.Tensor
    flip: torch.Tensor
    scale: torch.Tensor
    center: torch.Tensor

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams(*(t.to(device) for t in (self.angle, self.shift, self.flip, self.scale, self.center)))


def sample_params(batch: int, cfg: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw one batch's parameters from ``generator`` (on the generator's device)."""
    dev = generator.device

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=dev)

    angle = (u(batch) * 2 - 1) * cfg.rotation if cfg.rotation else torch.zeros(batch, device=dev)
    shift = (u(batch, 2) * 2 - 1) * cfg.shift if cfg.shift else torch.zeros(batch, 2, device=dev)
    flip = u(batch) < 0.5 if cfg.hflip else torch.zeros(batch, dtype=torch.bool, device=dev)
    if cfg.resized_crop is not None:
        lo, hi = cfg.resized_crop
        area = lo + (hi - lo) * u(batch)
        rlo, rhi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
        ratio = torch.exp(rlo + (rhi - rlo) * u(batch))
        sw, sh = (area * ratio).sqrt(), (area / ratio).sqrt()
        # a side longer than the image: keep the area, make that side the full image side
        sw, sh = torch.where(sw > 1, torch.ones_like(sw), sw), torch.where(sw > 1, area, sh)
        sw, sh = torch.where(sh > 1, area, sw), torch.where(sh > 1, torch.ones_like(sh), sh)
        scale = torch.stack([sw, sh], 1)
        center = (u(batch, 2) * 2 - 1) * (1 - scale)
    else:
        scale = torch.ones(batch, 2, device=dev)
        center = torch.zeros(batch, 2, device=dev)
    return AugmentParams(angle=angle, shift=shift, flip=flip, scale=scale, center=center)


def affine_matrices(params: AugmentParams, height: int, width: int) -> torch.Tensor:
    """``theta [B, 2, 3]`` for ``F.affine_grid`` (output -> input, normalized, align_corners=False).

    In pixel units about the image center (``S = diag(W/2, H/2)``), an output point ``q`` reads
    the input at ``c + D Fl R(-a) (q - t)``: undo the shift ``t``, undo the rotation by ``a``,
    mirror (``Fl``), then map into the crop of size ``D = diag(sw, sh)`` centered at ``c``.
    """
    a = torch.deg2rad(params.angle.float())
    cos, sin = torch.cos(a), torch.sin(a)
    fl = 1.0 - 2.0 * params.flip.float()  # -1 where flipped
    sw, sh = params.scale[:, 0].float(), params.scale[:, 1].float()
    # M = D Fl R(-a) with R(-a) = [[cos, -sin], [sin, cos]] in y-down pixel coordinates
    m00, m01 = sw * fl * cos, -sw * fl * sin
    m10, m11 = sh * sin, sh * cos
    hw, hh = width / 2.0, height / 2.0
    # A = S^-1 M S
    a00, a01 = m00, m01 * hh / hw
    a10, a11 = m10 * hw / hh, m11
    # b = c - S^-1 M t_pix, t_pix = (tx W, ty H)
    tx, ty = params.shift[:, 0].float() * width, params.shift[:, 1].float() * height
    b0 = params.center[:, 0].float() - (m00 * tx + m01 * ty) / hw
    b1 = params.center[:, 1].float() - (m10 * tx + m11 * ty) / hh
    return torch.stack([torch.stack([a00, a01, b0], 1), torch.stack([a10, a11, b1], 1)], 1)


def apply_params(x: torch.Tensor, params: AugmentParams, cfg: AugmentConfig) -> torch.Tensor:
    """Warp ``x`` (float ``[B, C, H, W]``) with given per-sample parameters (one grid_sample)."""
    if cfg.is_identity:
        return x
    p = params.to(x.device)
    if cfg.is_flip_only:
        return torch.where(p.flip.view(-1, 1, 1, 1), x.flip(-1), x)
    b, c, h, w = x.shape
    theta = affine_matrices(p, h, w).to(x.dtype)
    grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=cfg.fill, align_corners=False)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Randomly rotate, shift, flip and crop-resize a whole batch at once.

    Args:
        x: float ``[B, C, H, W]`` in ``[0, 1]``, on any device.
        cfg: what to randomize.
        generator: the source of randomness (its device is where the draws are made).

    Returns:
        float ``[B, C, H, W]`` on ``x``'s device; ``x`` itself when ``cfg`` changes nothing.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise CnnlensTypeError(f"augment_batch takes float [B,C,H,W] in [0,1]; got {x.dtype} {tuple(x.shape)} "
                        "(convert uint8 with x.float() / 255)")
    if cfg.is_identity:
        return x
    return apply_params(x, sample_params(x.shape[0], cfg, generator), cfg)


def normalize_batch(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``(x - mean) / std`` per channel for float ``[B, C, H, W]`` in ``[0, 1]``."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def prepare_batch(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                  cfg: AugmentConfig | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> float/255 -> (augment if ``cfg``) -> normalized float32."""
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    if cfg is not None and not cfg.is_identity:
        if generator is None:
            raise CnnlensError("prepare_batch with an augmentation config needs a torch.Generator")
        x = augment_batch(x, cfg, generator)
    return normalize_batch(x, mean, std)
