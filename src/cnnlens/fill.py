"""What hidden pixels become: one vocabulary for every method that replaces pixels.

Integrated Gradients' baseline, the fill of LIME, KernelSHAP, occlusion and RISE, and the substrate
of deletion/insertion all take a :class:`Fill` (or its name), a number (that value everywhere, in
normalized space) or a tensor broadcastable to the images. A name gives the same pixels everywhere
(:func:`fill_pixels`):

==================  ==========================================================================
``dataset_mean``    the dataset's mean colour: 0 in cnnlens' normalized input space
``black``           black pixels: ``-mean / std`` per channel (needs the normalization statistics)
``image_mean``      each image's own mean colour, per channel
``segment_mean``    each superpixel's own mean colour, per channel (needs superpixels: LIME, KernelSHAP)
``blur``            the image blurred by :func:`gaussian_blur` (``sigma`` default ``max(H, W) / 10`` px)
==================  ==========================================================================

Older spellings differed between the places ("zeros" was the dataset mean for IG but black pixels
for deletion/insertion; "mean" the dataset mean for IG but each superpixel's mean for LIME); each
place still accepts its own old spelling, maps it to the name with the same pixels there
(:func:`resolve_fill`) and logs a one-line note.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from .errors import CnnlensError, CnnlensTypeError

log = logging.getLogger(__name__)


class Fill(enum.StrEnum):
    """The names of what hidden pixels become (see the module docstring)."""

    DATASET_MEAN = "dataset_mean"
    BLACK = "black"
    IMAGE_MEAN = "image_mean"
    SEGMENT_MEAN = "segment_mean"
    BLUR = "blur"


FillSpec = Fill | str | float | torch.Tensor

#: old spellings per place, mapped to the name that gives the same pixels there
IG_ALIASES: Mapping[str, Fill] = {"zeros": Fill.DATASET_MEAN, "mean": Fill.DATASET_MEAN}
SUPERPIXEL_ALIASES: Mapping[str, Fill] = {"mean": Fill.SEGMENT_MEAN, "zero": Fill.DATASET_MEAN}
WINDOW_ALIASES: Mapping[str, Fill] = {"mean": Fill.IMAGE_MEAN, "zero": Fill.DATASET_MEAN}
SUBSTRATE_ALIASES: Mapping[str, Fill] = {"mean": Fill.DATASET_MEAN, "zeros": Fill.BLACK}

_noted: set[tuple[str, str]] = set()


def default_blur_sigma(h: int, w: int) -> float:
    """The blur's default width in pixels: ``max(H, W) / 10``."""
    return max(h, w) / 10


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[C,H,W]`` or ``[N,C,H,W]`` (same shape and dtype back).

    Kernel ``exp(-t^2 / (2 sigma^2))`` normalized to sum 1, radius ``ceil(3 sigma)`` clamped to
    ``min(H, W) - 1``, reflect padding (scipy's ``gaussian_filter(mode="mirror", truncate=3)``
    while the radius is not clamped). ``sigma <= 0`` returns a copy.
    """
    if sigma <= 0:
        return x.clone()
    single = x.ndim == 3
    xb = x[None] if single else x
    n, c, h, w = xb.shape
    r = min(max(1, math.ceil(3.0 * sigma)), h - 1, w - 1)
    if r < 1:  # a 1-pixel axis: nothing to blur
        return x.clone()
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    y = xb.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    y = y.reshape(n, c, h, w)
    return y[0] if single else y


def resolve_fill(spec: FillSpec, aliases: Mapping[str, Fill], where: str, arg: str = "baseline"
                 ) -> Fill | float | torch.Tensor:
    """``spec`` as a :class:`Fill`, a float or a tensor. An old spelling in ``aliases`` maps to its
    name with a one-line warning (once per place and spelling); anything else is a CnnlensError
    that lists the names. ``where`` names the place (e.g. ``"lime"``), ``arg`` the argument."""
    if isinstance(spec, torch.Tensor | Fill):
        return spec
    if isinstance(spec, bool) or not isinstance(spec, str | int | float):
        raise CnnlensTypeError(f"{where}: {arg} must be a fill name ({', '.join(Fill)}), a number or a "
                               f"tensor; got {type(spec).__name__} {spec!r}")
    if isinstance(spec, int | float):
        return float(spec)
    if spec in aliases:
        new = aliases[spec]
        if (where, spec) not in _noted:
            _noted.add((where, spec))
            log.warning("%s: %s %r is now spelled %r (the same pixels)", where, arg, spec, new.value)
        return new
    try:
        return Fill(spec)
    except ValueError:
        old = f"; older spellings here: {', '.join(aliases)}" if aliases else ""
        raise CnnlensError(f"{where}: unknown {arg} {spec!r}; use one of {', '.join(Fill)}, a number or a "
                           f"tensor{old}") from None


def fill_pixels(x: torch.Tensor, fill: FillSpec, *, segments: torch.Tensor | None = None,
                stats: tuple[Sequence[float], Sequence[float]] | None = None,
                blur_sigma: float | None = None, aliases: Mapping[str, Fill] | None = None,
                where: str = "fill", arg: str = "baseline", stats_hint: str = "mean= and std="
                ) -> torch.Tensor:
    """The pixels ``fill`` gives for the normalized images ``x`` (``[C,H,W]`` or ``[N,C,H,W]``), a new
    tensor of ``x``'s shape, dtype and device.

    Args:
        fill: a :class:`Fill` or its name (or an old spelling in ``aliases``), a number, or a tensor
            broadcastable to ``x``.
        segments: superpixel labels ``[H,W]`` (``[N,H,W]`` for a batch), for ``segment_mean``.
        stats: ``(mean, std)`` of the input normalization, for ``black``.
        blur_sigma: the blur's sigma in pixels (default :func:`default_blur_sigma`).
        where, arg, stats_hint: for messages: the place, the argument, how to pass ``stats`` there.
    """
    spec = resolve_fill(fill, aliases or {}, where, arg)
    if isinstance(spec, torch.Tensor):
        try:
            return torch.broadcast_to(spec.to(x.device, x.dtype), x.shape).clone()
        except RuntimeError:
            raise CnnlensError(f"{where}: {arg} tensor of shape {tuple(spec.shape)} does not broadcast to "
                               f"the images {tuple(x.shape)}") from None
    if isinstance(spec, float):
        return torch.full_like(x, spec)
    h, w = x.shape[-2:]
    if spec is Fill.DATASET_MEAN:
        return torch.zeros_like(x)
    if spec is Fill.IMAGE_MEAN:
        return x.mean((-2, -1), keepdim=True).expand_as(x).clone()
    if spec is Fill.BLUR:
        return gaussian_blur(x, float(blur_sigma) if blur_sigma is not None else default_blur_sigma(h, w))
    if spec is Fill.BLACK:
        if stats is None:
            raise CnnlensError(f"{where}: {arg} 'black' needs the normalization's mean and std: pass "
                               f"{stats_hint} (e.g. the dataset's), or use 'dataset_mean'")
        c = x.shape[-3]
        m = torch.as_tensor(stats[0], dtype=x.dtype, device=x.device).reshape(-1, 1, 1).expand(c, 1, 1)
        s = torch.as_tensor(stats[1], dtype=x.dtype, device=x.device).reshape(-1, 1, 1).expand(c, 1, 1)
        return (-m / s).expand_as(x).clone()
    # segment_mean
    if segments is None:
        raise CnnlensError(f"{where}: {arg} 'segment_mean' needs superpixels (LIME, KernelSHAP); use "
                           "'image_mean' for each image's mean colour")
    if x.ndim == 4:
        segs = segments.expand(x.shape[0], h, w) if segments.ndim == 2 else segments
        return torch.stack([_segment_mean(xi, si) for xi, si in zip(x, segs)])
    return _segment_mean(x, segments)


def _segment_mean(x: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """``[C,H,W]``: each pixel gets its superpixel's mean colour (labels ``0..M-1``), in float64 sums."""
    c, h, w = x.shape
    seg = segments.to(x.device).flatten()
    m = int(seg.max()) + 1
    sums = torch.zeros(c, m, dtype=torch.float64, device=x.device)
    sums.index_add_(1, seg, x.reshape(c, -1).double())
    counts = torch.bincount(seg, minlength=m).clamp_min(1)
    return (sums / counts).to(x.dtype)[:, seg].reshape(c, h, w)
