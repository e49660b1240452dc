"""Superpixels for the perturbation methods (LIME, KernelSHAP): scikit-image or a regular grid.

Segmentation runs on the image in ``[0, 1]`` (what scikit-image's defaults are tuned for), never on the
normalized tensor. :func:`to_unit_range` gets there in one of two ways, chosen by the caller:

* with the dataset's ``mean``/``std`` (``[0,1]`` units, as ``ImageDataset.mean/std``): the exact
  de-normalization ``x * std + mean``, clipped to ``[0, 1]``;
* without them: a per-image, per-channel min-max rescale. Any per-channel affine normalization
  ``(x - m) / s`` gives the same result, so the superpixels do not depend on the statistics used; the
  price is a contrast stretch relative to the original pixels (harmless for superpixels).

Defaults depend on the image size, so a 48x48 grey face and a 128x128 RGB photo both get roughly
30-60 superpixels (scikit-image's and lime's defaults give 2-3 on a 48x48 face). Every choice can be
overridden with keyword arguments passed through to scikit-image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..registry import Registry
from ..errors import CnnlensError, CnnlensTypeError

SEGMENTERS: Registry = Registry("segmentation")

DEFAULT_SEGMENTS = 50


def to_unit_range(x: torch.Tensor, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> torch.Tensor:
    """Normalized ``[C,H,W]`` (or ``[B,C,H,W]``) -> float32 in ``[0, 1]`` (see the module docstring)."""
    x = x.detach().float()
    if (mean is None) != (std is None):
        raise CnnlensError("pass both mean= and std= (the dataset's normalization statistics in [0,1] "
                         "units), or neither")
    c = x.shape[-3]
    if mean is not None and std is not None:
        m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).flatten()
        s = torch.as_tensor(std, dtype=torch.float32, device=x.device).flatten()
        if m.numel() not in (1, c) or s.numel() not in (1, c):
            raise CnnlensError(f"mean/std must have 1 or {c} entries (one per channel); got "
                             f"{m.numel()} and {s.numel()}")
        shape = (c, 1, 1)
        return (x * s.expand(c).reshape(shape) + m.expand(c).reshape(shape)).clamp(0, 1)
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return (x - lo) / span


def default_segments(h: int, w: int) -> int:
    """Target number of superpixels for an ``h x w`` image: 50, fewer for tiny images (>= 4 px each)."""
    return int(max(4, min(DEFAULT_SEGMENTS, (h * w) // 16)))


def segment(img: torch.Tensor | np.ndarray, method: str = "slic", n_segments: int | None = None,
            seed: int = 0, **options: Any) -> torch.Tensor:
    """Superpixels of one image.

    Args:
        img: ``[C,H,W]`` tensor or ``[H,W]`` / ``[H,W,C]`` array in ``[0, 1]`` (C = 1 or 3).
        method: ``slic`` (default), ``quickshift``, ``felzenszwalb`` or ``grid``.
        n_segments: target count (``slic`` and ``grid``); default :func:`default_segments`.
        seed: random seed (``quickshift`` only; the others are deterministic).
        options: passed to the scikit-image function, overriding the size-dependent defaults.

    Returns:
        ``int64 [H, W]`` labels ``0..M-1`` (contiguous, each used).
    """
    if isinstance(img, torch.Tensor):
        arr = img.detach().cpu().float().numpy()
        if arr.ndim != 3:
            raise CnnlensError(f"img must be [C,H,W]; got {tuple(arr.shape)}")
        arr = arr.transpose(1, 2, 0)
    else:
        arr = np.asarray(img, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise CnnlensError(f"img must have 1 or 3 channels; got shape {tuple(arr.shape)}")
    if n_segments is not None and n_segments < 1:
        raise CnnlensError(f"n_segments must be >= 1; got {n_segments}")
    fn = SEGMENTERS.get(method)
    labels = np.asarray(fn(arr.astype(np.float64), n_segments=n_segments, seed=seed, **options))
    if labels.shape != arr.shape[:2]:
        raise RuntimeError(f"segmentation {method!r} returned {labels.shape}, expected {arr.shape[:2]}")
    _, inv = np.unique(labels, return_inverse=True)  # contiguous 0..M-1
    return torch.from_numpy(inv.reshape(labels.shape).astype(np.int64))


def _register(name: str, description: str) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    return SEGMENTERS.register(name, description=description)


@_register("slic", "SLIC k-means superpixels (Achanta et al. 2012), n_segments=50, compactness 10 (Lab) / 0.1 (grey)")
def _slic(arr: np.ndarray, n_segments: int | None = None, seed: int = 0, **options: Any) -> np.ndarray:
    from skimage.segmentation import slic

    h, w = arr.shape[:2]
    kw: dict[str, Any] = {"n_segments": n_segments or default_segments(h, w), "sigma": 0.0, "start_label": 0}
    if arr.shape[-1] == 3:
        kw.update(channel_axis=-1, compactness=10.0)  # converted to Lab (0..100) by skimage
        img = arr
    else:
        # grey in [0, 1]: the same colour/space trade-off as 10 on Lab's 0..100 range
        kw.update(channel_axis=None, compactness=0.1)
        img = arr[..., 0]
    kw.update(options)
    return slic(img, **kw)


@_register("quickshift", "quickshift mode seeking (Vedaldi & Soatto 2008), kernel and distance scaled with size")
def _quickshift(arr: np.ndarray, n_segments: int | None = None, seed: int = 0, **options: Any
                ) -> np.ndarray:
    from skimage.segmentation import quickshift

    h, w = arr.shape[:2]
    ks = max(1, round(min(h, w) / 45))
    kw: dict[str, Any] = {"kernel_size": ks, "max_dist": 2 * ks + 4, "ratio": 0.5, "rng": seed}
    kw.update(options)
    img = arr if arr.shape[-1] == 3 else np.repeat(arr, 3, axis=-1)
    return quickshift(img, **kw)


@_register("felzenszwalb", "Felzenszwalb-Huttenlocher graph segmentation, scale and min_size scaled with size")
def _felzenszwalb(arr: np.ndarray, n_segments: int | None = None, seed: int = 0, **options: Any
                  ) -> np.ndarray:
    from skimage.segmentation import felzenszwalb

    h, w = arr.shape[:2]
    kw: dict[str, Any] = {"scale": 0.5 * math.sqrt(h * w), "sigma": 0.5, "min_size": max(1, (h * w) // 150)}
    kw.update(options)
    if arr.shape[-1] == 3:
        return felzenszwalb(arr, channel_axis=-1, **kw)
    return felzenszwalb(arr[..., 0], channel_axis=None, **kw)


@_register("grid", "a regular grid of about n_segments rectangular cells")
def _grid(arr: np.ndarray, n_segments: int | None = None, seed: int = 0, **options: Any) -> np.ndarray:
    if options:
        raise CnnlensTypeError(f"grid segmentation takes only n_segments; got {sorted(options)}")
    h, w = arr.shape[:2]
    return grid_segments(h, w, n_segments or default_segments(h, w)).numpy()


def grid_segments(h: int, w: int, n_segments: int) -> torch.Tensor:
    """``int64 [h, w]``: about ``n_segments`` cells, as square as the aspect ratio allows."""
    rows = max(1, min(h, round(math.sqrt(n_segments * h / w))))
    cols = max(1, min(w, round(n_segments / rows)))
    r = torch.arange(h) * rows // h
    c = torch.arange(w) * cols // w
    return r[:, None] * cols + c[None, :]
