"""The LIME evidence figure: the top-k superpixels are the ones highlighted, the file is a real PNG."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch

import cnnlens
from cnnlens.explain.segmentation import grid_segments
from cnnlens.report.fig_lime import evidence_image, plot_superpixel_evidence


def test_evidence_image_highlights_exactly_the_top_k_superpixels():
    seg = grid_segments(16, 16, 16)  # 4 x 4 cells of 4 x 4 pixels
    w = torch.linspace(-1, 1, 16)  # cell 15 strongest positive, cell 0 strongest negative
    img = torch.full((1, 16, 16), 200, dtype=torch.uint8)
    pos = evidence_image(img, seg, w, k=2, sign="positive")
    neg = evidence_image(img, seg, w, k=3, sign="negative")
    assert pos.shape == (16, 16, 3) and 0 <= pos.min() and pos.max() <= 1
    inner = np.zeros((16, 16), bool)
    for r in range(4):
        for c in range(4):
            inner[4 * r + 1:4 * r + 3, 4 * c + 1:4 * c + 3] = True  # away from boundaries
    bright = pos.mean(-1) > 0.5
    expect_pos = np.isin(seg.numpy(), [14, 15])
    assert np.array_equal(bright[inner], expect_pos[inner])
    assert (pos[expect_pos & inner][:, 1] > pos[expect_pos & inner][:, 0]).all()  # green tint
    expect_neg = np.isin(seg.numpy(), [0, 1, 2])
    assert np.array_equal((neg.mean(-1) > 0.5)[inner], expect_neg[inner])
    assert (neg[expect_neg & inner][:, 0] > neg[expect_neg & inner][:, 1]).all()  # red tint
    with pytest.raises(ValueError, match="sign"):
        evidence_image(img, seg, w, sign="both")


def test_plot_superpixel_evidence_writes_a_png(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 24 * 24, 3))
    raw = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    x = (raw.float() / 255 - 0.5) / 0.25
    exp = cnnlens.explain(model, x, "lime", n_samples=64, segmentation="grid", n_segments=16)
    out = plot_superpixel_evidence(raw, exp.extras["segments"], exp.extras["weights"], tmp_path / "lime.png",
                                   k=3, titles=["a", "b"])
    arr = matplotlib.image.imread(out)
    assert out == tmp_path / "lime.png" and arr.ndim == 3 and arr.shape[0] > 100 and arr.shape[1] > 300
    with pytest.raises(ValueError, match="one segmentation"):
        plot_superpixel_evidence(raw, exp.extras["segments"][:1], exp.extras["weights"], tmp_path / "x.png")
