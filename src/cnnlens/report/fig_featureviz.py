"""Figures for feature visualization: filter grids (with dataset examples), feature maps, Deep Dream."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from ..io import write_bytes
from .figures import finish_figure, show_image


def plot_filters(
    path: str | os.PathLike[str],
    images: torch.Tensor,
    channels: Sequence[int] | torch.Tensor,
    activations: torch.Tensor | None = None,
    patches: torch.Tensor | None = None,
    title: str = "",
    cols: int | None = None,
) -> Path:
    """A grid with one cell per filter: the synthetic image, then its dataset-example patches.

    Args:
        images: ``[n, C, H, W]`` in [0,1] (or uint8).
        channels: the filter index of each image (titles).
        activations: optional ``[n]`` activation reached (shown in the title).
        patches: optional ``uint8 [n, k, C, ph, pw]`` top-k real patches shown to the right.
    """
    n = images.shape[0]
    k = 0 if patches is None else patches.shape[1]
    per = 1 + k
    cols = cols or max(1, min(n, 8 if k == 0 else max(1, 12 // per)))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols * per, figsize=(1.25 * cols * per, 1.45 * rows), squeeze=False)
    ch = [int(c) for c in (channels.tolist() if isinstance(channels, torch.Tensor) else channels)]
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, cols)
        t = f"#{ch[i]}" + ("" if activations is None else f" {float(activations[i]):.2g}")
        ax = axes[r, c * per]
        ax.axis("on")
        show_image(ax, images[i], t)
        for j in range(k):
            ax = axes[r, c * per + 1 + j]
            ax.axis("on")
            show_image(ax, patches[i, j], "data" if j == 0 else None)  # type: ignore[index]
    return finish_figure(fig, path, title)


def plot_feature_maps(
    path: str | os.PathLike[str],
    maps: torch.Tensor,
    image: torch.Tensor | None = None,
    title: str = "",
    max_maps: int = 64,
    cols: int = 8,
) -> Path:
    """Every filter's output for one image: ``maps [K, h, w]`` (raw values, each map on its own
    colour scale, ``viridis``), with the input image first when given."""
    k = min(maps.shape[0], max_maps)
    cells = k + (image is not None)
    cols = min(cols, cells)
    rows = math.ceil(cells / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.35 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    off = 0
    if image is not None:
        axes[0, 0].axis("on")
        show_image(axes[0, 0], image, "input")
        off = 1
    m = maps.detach().float().cpu()
    for i in range(k):
        ax = axes.flat[off + i]
        ax.axis("on")
        ax.imshow(m[i].numpy(), cmap="viridis", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{i}", fontsize=7)
    return finish_figure(fig, path, title)


def plot_dream_strip(
    path: str | os.PathLike[str],
    snapshots: torch.Tensor,
    steps: Sequence[int],
    title: str = "",
    max_cols: int = 10,
) -> Path:
    """Deep Dream snapshots side by side, titled with their step (step 0 = the original)."""
    s = snapshots.shape[0]
    cols = min(s, max_cols)
    rows = math.ceil(s / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(s):
        ax = axes.flat[i]
        ax.axis("on")
        show_image(ax, snapshots[i], "original" if steps[i] == 0 else f"step {steps[i]}")
    return finish_figure(fig, path, title)


def save_gif(
    path: str | os.PathLike[str], frames: torch.Tensor, duration_ms: int = 250, min_side: int = 192
) -> Path:
    """Animated GIF of ``frames [S, C, H, W]`` (in [0,1] or uint8), looping; small images are
    enlarged (nearest neighbour) to at least ``min_side`` pixels."""
    f = frames.detach().cpu()
    u8 = f if f.dtype == torch.uint8 else (f.float().clamp(0, 1) * 255).round().to(torch.uint8)
    h, w = u8.shape[-2:]
    scale = max(1, math.ceil(min_side / min(h, w)))
    imgs = []
    for fr in u8:
        a = fr[0].numpy() if fr.shape[0] == 1 else fr.permute(1, 2, 0).numpy()
        im = Image.fromarray(np.ascontiguousarray(a))
        imgs.append(im.resize((w * scale, h * scale), Image.NEAREST))
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0)
    return write_bytes(path, buf.getvalue())


def save_png(path: str | os.PathLike[str], image: torch.Tensor) -> Path:
    """One image ``[C, H, W]`` (in [0,1] or uint8) as an 8-bit PNG (grey stays 1-channel)."""
    f = image.detach().cpu()
    u8 = f if f.dtype == torch.uint8 else (f.float().clamp(0, 1) * 255).round().to(torch.uint8)
    a = u8[0].numpy() if u8.shape[0] == 1 else u8.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return write_bytes(path, buf.getvalue())
