"""Figures of the core pipeline: training curves and the confusion matrix."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from .figures import plt, save_figure


def training_curves(history: list[dict[str, float]], path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch, train vs val, with the best validation epoch marked."""
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, key, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "acc", "accuracy")):
        ax.plot(ep, [r[f"train_{key}"] for r in history], "o-", ms=3, label="train")
        ax.plot(ep, [r[f"val_{key}"] for r in history], "o-", ms=3, label="val")
        ax.set_xlabel("epoch")
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


def confusion_matrix(confusion: torch.Tensor | list[list[int]], classes: list[str], path: str | os.PathLike[str],
                     normalized: bool = False) -> Path:
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
            ax.text(j, i, txt, ha="center", va="center", fontsize=7 if k > 8 else 8,
                    color="white" if v > thresh else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title("confusion matrix" + (" (row-normalized)" if normalized else " (counts)"), fontsize=10)
    return save_figure(fig, path)
