"""Figures of the core pipeline: training curves and the confusion matrix."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from matplotlib.ticker import MaxNLocator

from .figures import plt, save_figure
from ..errors import CnnlensError


def training_curves(history: list[dict[str, float]], path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch, train vs val, with the best validation epoch marked."""
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "acc", "accuracy")):
        ax.plot(ep, [r[f"train_{key}"] for r in history], "o-", ms=3, label="train")
        ax.plot(ep, [r[f"val_{key}"] for r in history], "o-", ms=3, label="val")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    vals = [r["val_acc"] for r in history]
    if vals and not all(math.isnan(v) for v in vals):
        best = int(np.nanargmax(vals))
        for ax in axes:
            ax.axvline(ep[best], color="grey", ls="--", lw=1, label=f"best val acc (epoch {ep[best]})")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("training history", fontsize=10)
    return save_figure(fig, path)


def confusion_matrix(
    confusion: torch.Tensor | list[list[int]],
    classes: list[str],
    path: str | os.PathLike[str],
    normalized: bool = False,
) -> Path:
    """Confusion matrix heatmap (rows: true class, columns: predicted), counts or row-normalized."""
    c = torch.as_tensor(confusion, dtype=torch.float64)
    m = c / c.sum(1, keepdim=True).clamp_min(1) if normalized else c
    k = len(classes)
    size = max(3.5, 0.5 * k + 1.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=1 if normalized else None)
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    thresh = float(m.max()) / 2 if m.numel() else 0
    for i in range(k):
        for j in range(k):
            v = float(m[i, j])
            txt = f"{v:.2f}" if normalized else f"{int(v)}"
            ax.text(
                j,
                i,
                txt,
                ha="center",
                va="center",
                fontsize=7 if k > 8 else 8,
                color="white" if v > thresh else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("confusion matrix" + (" (row-normalized)" if normalized else " (counts)"), fontsize=10)
    return save_figure(fig, path)


def class_counts(counts: dict[str, list[int]], classes: list[str], path: str | os.PathLike[str]) -> Path:
    """Grouped bars: images per class (x) for each split (one colour per split)."""
    splits = list(counts)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * k + 2), 3.2))
    width = 0.8 / max(len(splits), 1)
    x = np.arange(k)
    for j, s in enumerate(splits):
        ax.bar(x + (j - (len(splits) - 1) / 2) * width, counts[s], width, label=f"{s} ({sum(counts[s]):,})")
    ax.set_xticks(x, classes, rotation=45 if k > 8 else 0, ha="right" if k > 8 else "center", fontsize=8)
    ax.set_ylabel("images")
    ax.set_xlabel("class")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, title="split (images)", title_fontsize=8)
    ax.set_title("images per class and split", fontsize=10)
    return save_figure(fig, path)


def image_row_grid(
    images_uint8: torch.Tensor,
    titles: list[str],
    path: str | os.PathLike[str],
    ncols: int = 5,
    title: str | None = None,
) -> Path:
    """Images in a grid with one title each (e.g. the top losses with true/predicted/probability)."""
    from .figures import show_image

    n = images_uint8.shape[0]
    if n == 0:
        raise CnnlensError("no images to draw")
    if len(titles) != n:
        raise CnnlensError(f"titles must have one entry per image ({n}); got {len(titles)}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    lines = max(t.count("\n") + 1 for t in titles)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.9 * ncols, (1.8 + 0.17 * lines) * nrows), squeeze=False, layout="constrained"
    )
    for i in range(nrows * ncols):
        ax = axes[i // ncols, i % ncols]
        if i < n:
            show_image(ax, images_uint8[i], title=titles[i])
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def reliability_diagram(bins: list[dict[str, float]], ece: float, path: str | os.PathLike[str]) -> Path:
    """Accuracy vs mean confidence per confidence bin (bars, with the diagonal of perfect calibration),
    and the number of images per bin below. ``bins``: ``[{lo, hi, count, accuracy, confidence}]``."""
    lo = np.array([b["lo"] for b in bins])
    hi = np.array([b["hi"] for b in bins])
    cnt = np.array([b["count"] for b in bins])
    acc = np.array([b["accuracy"] for b in bins])
    conf = np.array([b["confidence"] for b in bins])
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(4.6, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    used = cnt > 0
    ax.bar(
        lo[used],
        acc[used],
        hi[used] - lo[used],
        align="edge",
        edgecolor="k",
        lw=0.5,
        alpha=0.8,
        label="accuracy in bin",
    )
    ax.plot(conf[used], acc[used], "o", ms=3, color="C3", label="(mean confidence, accuracy)")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    ax.set_title(f"reliability diagram (ECE {100 * ece:.2f}%)", fontsize=10)
    ax2.bar(lo, cnt, hi - lo, align="edge", edgecolor="k", lw=0.5, color="grey")
    ax2.set_xlabel("confidence (max softmax probability)")
    ax2.set_ylabel("images")
    ax2.set_xlim(0, 1)
    return save_figure(fig, path)


def region_mass_figure(
    rows: list[dict[str, float]], classes: list[str], path: str | os.PathLike[str], method: str
) -> Path:
    """Heatmap of the share of attribution mass per class (rows) and image region (columns)."""
    cols = ["top", "middle", "bottom", "left", "centre_col", "right", "centre_box"]
    labels = [
        "top third",
        "middle third",
        "bottom third",
        "left third",
        "centre third",
        "right third",
        "central box",
    ]
    m = np.array([[r[c] for c in cols] for r in rows])
    fig, ax = plt.subplots(figsize=(6.2, 0.32 * len(rows) + 1.6))
    ax.imshow(m, cmap="Oranges", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), classes, fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(
                j,
                i,
                "—" if np.isnan(m[i, j]) else f"{100 * m[i, j]:.0f}%",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if m[i, j] > 0.6 else "black",
            )
    ax.set_title(f"{method}: share of |attribution| per region", fontsize=9)
    return save_figure(fig, path)
