"""Shared drawing helpers. Every figure is written atomically to a path the caller gives."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..io import write_bytes  # noqa: E402


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Save ``fig`` as PNG (atomically) and close it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return write_bytes(path, buf.getvalue())


def finish_figure(fig: plt.Figure, path: str | os.PathLike[str], title: str = "") -> Path:
    """Title (when given), tight layout, then :func:`save_figure`: how every figure ends."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def to_display(img: torch.Tensor) -> np.ndarray:
    """uint8 ``[C,H,W]`` (C = 1 or 3) -> array for ``imshow`` (``[H,W]`` grey or ``[H,W,3]``) in [0,1]."""
    a = img.detach().cpu()
    a = a.float() / 255.0 if a.dtype == torch.uint8 else a.float().clamp(0, 1)
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()


def show_image(ax: plt.Axes, img: torch.Tensor, title: str | None = None) -> None:
    arr = to_display(img)
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def show_overlay(ax: plt.Axes, img: torch.Tensor, heat: torch.Tensor, signed: bool = False,
                 alpha: float = 0.5, title: str | None = None) -> None:
    """Image in grey with a display-normalized map on top (``jet`` in [0,1], ``bwr`` in [-1,1])."""
    arr = to_display(img)
    grey = arr if arr.ndim == 2 else arr.mean(-1)
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = heat.detach().cpu().float().numpy()
    if signed:
        ax.imshow(h, cmap="bwr", vmin=-1, vmax=1, alpha=alpha, interpolation="bilinear")
    else:
        ax.imshow(h, cmap="jet", vmin=0, vmax=1, alpha=alpha, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
