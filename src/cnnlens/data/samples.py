"""A seeded choice of sample images per class: what ``RUN/data/samples.json`` records and the
dataset figure shows."""

from __future__ import annotations

import torch

from .base import ImageDataset


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
