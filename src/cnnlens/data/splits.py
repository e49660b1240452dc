"""Which split a stage that needs labels works on, and which split an image belongs to.

Evaluation, the per-class explanations, the trust protocol and the report's findings need true
labels. The course hands out FER2013 as ``train.csv`` plus an *unlabeled* ``test.csv`` (and Food-11
with an unlabeled ``testing/``), and some users have ``train.csv`` alone: there the labeled hold-out
is the validation split cut from the training data. :func:`label_split` makes that choice in one
place, and says why, so every stage names the split it used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from ..errors import CnnlensError
from .base import ImageDataset

log = logging.getLogger(__name__)


def is_labeled(ds: ImageDataset, split: str) -> bool:
    """True when ``split`` exists, is not empty and every one of its images has a label."""
    idx = ds.splits.get(split)
    return idx is not None and len(idx) > 0 and bool((ds.labels[idx] >= 0).all())


def unlabeled_note(ds: ImageDataset, split: str = "test") -> str | None:
    """Why ``split`` cannot be judged against labels (``"the test split is unlabeled (16 images)"``,
    ``"the dataset has no test split"``), or ``None`` when it can."""
    idx = ds.splits.get(split)
    if idx is None:
        return f"the dataset has no {split} split"
    if len(idx) == 0:
        return f"the {split} split is empty"
    n = int((ds.labels[idx] < 0).sum())
    if n == len(idx):
        return f"the {split} split is unlabeled ({len(idx):,} images)"
    if n:
        return f"{n:,} of the {len(idx):,} {split} images are unlabeled"
    return None


def label_split(ds: ImageDataset, split: str | None = None) -> str:
    """The split a stage that needs labels uses.

    ``split`` given: it must exist and be fully labeled (else a :class:`CnnlensError` naming the fix).
    ``None``: ``test`` when it is labeled, else the labeled hold-out ``val`` (logged, with the
    reason), else an error saying how to get a labeled hold-out.
    """
    if split is not None:
        if not isinstance(split, str) or not split:
            raise CnnlensError(f"split must be a split name such as 'test' or 'val'; got {split!r}")
        ds.indices(split)  # an absent split fails here, listing the splits there are
        why = unlabeled_note(ds, split)
        if why is not None:
            alt = [s for s in ds.splits if s != split and is_labeled(ds, s)]
            hint = f"choose a labeled split ({', '.join(alt)})" if alt else "no split of this dataset is labeled"
            raise CnnlensError(f"--split {split}: {why}, and this stage compares predictions with the true "
                               f"labels; {hint}. Predictions for unlabeled images: `cnnlens predict`")
        return split
    if is_labeled(ds, "test"):
        return "test"
    why = unlabeled_note(ds, "test")
    if is_labeled(ds, "val"):
        log.info("%s: using the labeled hold-out split 'val' instead (it also chose the saved epoch, so its "
                 "accuracy is optimistic)", why)
        return "val"
    raise CnnlensError(f"{ds.name} ({ds.source}): {why} and there is no labeled 'val' split to use instead; "
                       "cut one from the training data with --val-fraction (e.g. 0.1), or give labeled test data")


def split_of(ds: ImageDataset, indices: Sequence[int] | torch.Tensor) -> list[str]:
    """The split each dataset index belongs to (``"?"`` for an index in none of them)."""
    where: dict[int, str] = {}
    for name, idx in ds.splits.items():
        for i in idx.tolist():
            where.setdefault(int(i), name)
    return [where.get(int(i), "?") for i in torch.as_tensor(indices).view(-1).tolist()]


def describe_splits(names: Sequence[str]) -> str:
    """``["val", "val", "train"]`` -> ``"val and train"`` (in first-seen order); one name alone as is."""
    seen = list(dict.fromkeys(names))
    return seen[0] if len(seen) == 1 else ", ".join(seen[:-1]) + " and " + seen[-1]
