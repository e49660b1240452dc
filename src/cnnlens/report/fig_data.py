"""Dataset figures: a grid of sample images, one row per class."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..data.base import ImageDataset
from .figures import save_figure, show_image
from ..errors import CnnlensError


def pick_samples(ds: ImageDataset, per_class: int = 8, split: str | None = None, seed: int = 0
                 ) -> list[tuple[str, list[int]]]:
    """Seeded choice of up to ``per_class`` sample indices per class (and for unlabeled samples).

    Returns ``(row title, indices)`` per row; classes without samples are left out.
    """
    idx = ds.indices(split) if split else torch.arange(len(ds))
    g = torch.Generator().manual_seed(seed)
    rows = []
    labels = ds.labels[idx]
    for k in [*range(ds.num_classes), -1]:
        members = idx[labels == k]
        if len(members) == 0:
            continue
        chosen = members[torch.randperm(len(members), generator=g)[:per_class]].sort().values
        rows.append((ds.classes[k] if k >= 0 else "unlabeled", chosen.tolist()))
    return rows


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
    fig.suptitle(f"{ds.name}: {len(ds):,} images, {ds.channels}x{ds.size[0]}x{ds.size[1]}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
