"""Dataset figures: a grid of sample images, one row per class."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..data.base import ImageDataset
from ..data.samples import pick_samples
from .figures import finish_figure, show_image
from ..errors import CnnlensError


def sample_grid(ds: ImageDataset, path: str | os.PathLike[str], *, per_class: int = 8, split: str | None = None,
                seed: int = 0) -> Path:
    """Write a PNG grid of original images: one row per class, titled with the class and count."""
    rows = pick_samples(ds, per_class, split, seed)
    if not rows:
        raise CnnlensError(f"dataset {ds.name!r} has no samples to show"
                         + (f" in split {split!r}" if split else ""))
    ncols = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.1 * ncols + 1.4, 1.15 * len(rows)), squeeze=False)
    counts = torch.bincount(ds.labels[ds.labels >= 0], minlength=ds.num_classes).tolist()
    n_unlabeled = int((ds.labels < 0).sum())
    for r, (title, members) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            if c < len(members):
                show_image(ax, ds.images[members[c]])
            else:
                ax.axis("off")
        k = ds.classes.index(title) if title in ds.classes else -1
        n = counts[k] if k >= 0 else n_unlabeled
        axes[r][0].set_ylabel(f"{title}\n({n:,})", rotation=0, ha="right", va="center", fontsize=8)
    return finish_figure(fig, path, f"{ds.name}: {len(ds):,} images, {ds.channels}x{ds.size[0]}x{ds.size[1]}")
