"""LIME / KernelSHAP figures: the top-k superpixels of positive and negative evidence, drawn with the
superpixel boundaries (as lime's ``get_image_and_mask`` + scikit-image's ``mark_boundaries``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..explain.coalitions import top_k_mask
from .figures import finish_figure, plt, to_display
from ..errors import CnnlensError

POSITIVE = (0.1, 0.8, 0.1)
NEGATIVE = (0.9, 0.1, 0.1)
BOUNDARY = (1.0, 1.0, 0.0)


def evidence_image(img: torch.Tensor, segments: torch.Tensor, weights: torch.Tensor, k: int = 5,
                   sign: str = "positive", min_weight: float = 0.0, dim_rest: float = 0.35, upscale: int = 1
                   ) -> np.ndarray:
    """RGB ``[H,W,3]`` in ``[0,1]``: the ``k`` strongest superpixels of one sign at full brightness with a
    tint and yellow boundaries around them, the rest of the image dimmed, all superpixel boundaries faint.

    Args:
        img: ``uint8`` or ``[0,1]`` float ``[C,H,W]`` (the original pixels, not the normalized input).
        segments: ``int [H,W]`` superpixel labels; weights: ``[M]`` (``extras['weights'][i]``).
        sign: ``"positive"`` (evidence for the target) or ``"negative"`` (against it).
        upscale: nearest-neighbour enlargement before drawing, so boundaries stay thin on small images;
            the result is ``[H*upscale, W*upscale, 3]``.
    """
    from skimage.segmentation import mark_boundaries

    if sign not in ("positive", "negative"):
        raise CnnlensError(f"sign must be 'positive' or 'negative'; got {sign!r}")
    arr = to_display(img)
    rgb = np.repeat(arr[..., None], 3, -1) if arr.ndim == 2 else arr
    seg = segments.detach().cpu().long().numpy()
    mask = top_k_mask(segments, weights, k=k, positive_only=sign == "positive",
                      negative_only=sign == "negative", min_weight=min_weight).numpy().astype(bool)
    if upscale > 1:
        rgb, seg, mask = (np.kron(a, np.ones((upscale, upscale) + (1,) * (a.ndim - 2), dtype=a.dtype))
                          for a in (rgb, seg, mask))
    tint = np.array(POSITIVE if sign == "positive" else NEGATIVE)
    out = rgb * dim_rest
    out[mask] = 0.65 * rgb[mask] + 0.35 * tint
    out = mark_boundaries(out, seg, color=(0.55, 0.55, 0.55), mode="inner")
    if mask.any():
        out = mark_boundaries(out, mask.astype(np.int64), color=BOUNDARY, mode="inner")
    return np.clip(out, 0, 1)


def plot_superpixel_evidence(images: torch.Tensor, segments: torch.Tensor | Sequence[torch.Tensor],
                             weights: Sequence[torch.Tensor], path: str | os.PathLike[str], k: int = 5,
                             titles: Sequence[str] | None = None, method: str = "lime") -> Path:
    """One row per image: the image with its superpixels, the top-``k`` positive evidence, the top-``k``
    negative evidence, and every superpixel coloured by its signed weight.

    Args:
        images: ``uint8`` (or ``[0,1]`` float) ``[B,C,H,W]`` originals.
        segments: ``[B,H,W]`` labels (``Explanation.extras['segments']``).
        weights: ``B`` tensors ``[M_i]`` (``Explanation.extras['weights']``).
        path: PNG to write (atomically).
        titles: optional text per row (e.g. ``"true: happy / pred: sad 0.71"``).
    """
    from skimage.segmentation import mark_boundaries

    b = images.shape[0]
    if len(segments) != b or len(weights) != b:
        raise CnnlensError(f"need one segmentation and one weight vector per image ({b}); got "
                         f"{len(segments)} and {len(weights)}")
    if titles is not None and len(titles) != b:
        raise CnnlensError(f"titles must have one entry per image ({b}); got {len(titles)}")
    fig, axes = plt.subplots(b, 4, figsize=(8.4, 2.2 * b + 0.3), squeeze=False)
    for i in range(b):
        seg = segments[i].detach().cpu().long()
        w = weights[i].detach().cpu().float()
        arr = to_display(images[i])
        rgb = np.repeat(arr[..., None], 3, -1) if arr.ndim == 2 else arr
        up = max(1, 192 // max(rgb.shape[:2]))  # thin boundaries on 48x48 images too
        big = np.kron(rgb, np.ones((up, up, 1)))
        panels = [
            (mark_boundaries(big, np.kron(seg.numpy(), np.ones((up, up), dtype=np.int64)), color=BOUNDARY,
                             mode="inner"), titles[i] if titles else f"{int(seg.max()) + 1} superpixels"),
            (evidence_image(images[i], seg, w, k, "positive", upscale=up), f"top {k} for"),
            (evidence_image(images[i], seg, w, k, "negative", upscale=up), f"top {k} against"),
        ]
        for ax, (im, title) in zip(axes[i][:3], panels):
            ax.imshow(im, interpolation="nearest")
            ax.set_title(title, fontsize=8)
        lim = float(w.abs().max()) or 1.0
        ax = axes[i][3]
        ax.imshow(arr if arr.ndim == 2 else arr.mean(-1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        im = ax.imshow(w[seg].numpy(), cmap="bwr", vmin=-lim, vmax=lim, alpha=0.6, interpolation="nearest")
        ax.set_title(f"{method} weights", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        for a in axes[i]:
            a.set_xticks([])
            a.set_yticks([])
    return finish_figure(fig, path)
