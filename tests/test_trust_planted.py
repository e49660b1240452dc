"""The `planted` dataset: the class is decided by the pattern inside the mask, seeded, split."""

from __future__ import annotations

import pytest
import torch

import cnnlens
from cnnlens.data.planted import CLASSES, PATTERN, patterns


def test_planted_pattern_inside_mask_decides_the_class() -> None:
    ds = cnnlens.load_dataset("planted", n=200, seed=3)
    assert ds.images.shape == (200, 1, 48, 48) and ds.images.dtype == torch.uint8
    assert ds.masks is not None and ds.masks.shape == (200, 48, 48) and ds.masks.dtype == torch.bool
    assert ds.classes == CLASSES and ds.num_classes == 4
    pats = patterns()
    for i in range(200):
        m = ds.masks[i]
        assert int(m.sum()) == PATTERN * PATTERN
        ys, xs = torch.nonzero(m, as_tuple=True)
        box = ds.images[i, 0, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.shape == (PATTERN, PATTERN)
        # pattern pixels are bright (>= 170), background ones dim (< 60): the box shows its class
        assert torch.equal(box >= 170, pats[ds.labels[i]])
        # the distractor (a filled bright square) lies outside the mask
        bright_outside = (ds.images[i, 0] >= 170) & ~m
        assert int(bright_outside.sum()) == PATTERN * PATTERN


def test_planted_is_seeded_balanced_and_split() -> None:
    a = cnnlens.load_dataset("planted", n=120, seed=1)
    b = cnnlens.load_dataset("planted", n=120, seed=1)
    c = cnnlens.load_dataset("planted", n=120, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.images, c.images)
    assert torch.bincount(a.labels).tolist() == [30] * 4
    allidx = torch.cat([a.splits[s] for s in ("train", "val", "test")])
    assert sorted(allidx.tolist()) == list(range(120))
    with pytest.raises(ValueError, match="planted"):
        cnnlens.load_dataset("planted:some/path")
