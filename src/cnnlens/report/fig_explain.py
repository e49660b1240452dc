"""Figures of explanations: overlays, signed maps, method grids, per-class grids, confused pairs.

Maps are display-normalized here (:func:`cnnlens.explain.display.normalize_maps`): unsigned maps to
[0, 1] on ``jet`` over the grey image, signed maps to [-1, 1] on a diverging colormap (``bwr``:
red = evidence for the target, blue = against), centered at zero. Every figure is written
atomically to the path the caller gives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ..explain.core import Explanation
from ..explain.display import normalize_maps
from .figures import save_figure, show_image, show_overlay
from ..errors import CnnlensError

CELL = 1.6  # inches per panel


def _check_images(images_uint8: torch.Tensor, n: int | None = None) -> None:
    if (not isinstance(images_uint8, torch.Tensor) or images_uint8.dtype != torch.uint8
            or images_uint8.ndim != 4):
        got = (f"{images_uint8.dtype} {tuple(images_uint8.shape)}" if isinstance(images_uint8, torch.Tensor)
               else type(images_uint8).__name__)
        raise CnnlensError(f"images_uint8 must be uint8 [N,C,H,W] (the dataset's raw pixels); got {got}")
    if n is not None and images_uint8.shape[0] != n:
        raise CnnlensError(f"images_uint8 has {images_uint8.shape[0]} images but the explanations have {n}")


def show_signed(ax: plt.Axes, heat: torch.Tensor, title: str | None = None) -> None:
    """A signed map alone on a diverging colormap centered at 0 (``heat`` in [-1, 1])."""
    ax.imshow(heat.detach().cpu().float().numpy(), cmap="bwr", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _label(exp: Explanation, i: int, classes: Sequence[str] | None) -> str:
    """The explained class of image ``i``, with its probability when the explanation has probs."""
    t = int(exp.targets[i])
    return _with_prob(exp, i, t, classes[t] if classes is not None and t < len(classes) else str(t))


def _with_prob(exp: Explanation, i: int, c: int, name: str) -> str:
    """``name`` of class ``c``, followed by image ``i``'s probability of it when ``exp`` has probs."""
    return name if exp.probs is None else f"{name} ({float(exp.probs[i, c]):.2f})"


def overlay_figure(images_uint8: torch.Tensor, exp: Explanation, path: str | os.PathLike[str],
                   classes: Sequence[str] | None = None, signed_panel: bool = True) -> Path:
    """One column per image: the map over the original (and, for signed maps, the map alone below)."""
    n = exp.maps.shape[0]
    _check_images(images_uint8, n)
    heat = normalize_maps(exp.maps, signed=exp.signed)
    rows = 2 if (exp.signed and signed_panel) else 1
    fig, axes = plt.subplots(rows, n, figsize=(CELL * n, CELL * rows), squeeze=False)
    for i in range(n):
        show_overlay(axes[0, i], images_uint8[i], heat[i], signed=exp.signed,
                     title=f"{exp.method}: {_label(exp, i, classes)}")
        if rows == 2:
            show_signed(axes[1, i], heat[i])
    return save_figure(fig, path)


def explanation_grid(images_uint8: torch.Tensor, explanations: dict[str, Explanation],
                     row_titles: Sequence[str] | None, path: str | os.PathLike[str],
                     classes: Sequence[str] | None = None) -> Path:
    """Rows = images; columns = the original, then one overlay per method (``explanations``' order).

    Args:
        images_uint8: ``uint8 [N, C, H, W]`` originals.
        explanations: ``{method: Explanation}`` over the same ``N`` images.
        row_titles: one label per image (e.g. ``"#12 true: happy"``), or ``None``.
    """
    if not explanations:
        raise CnnlensError("explanations is empty: pass at least one {method: Explanation}")
    n = next(iter(explanations.values())).maps.shape[0]
    _check_images(images_uint8, n)
    if row_titles is not None and len(row_titles) != n:
        raise CnnlensError(f"row_titles must have one entry per image ({n}); got {len(row_titles)}")
    for m, e in explanations.items():
        if e.maps.shape[0] != n:
            raise CnnlensError(f"explanation {m!r} has {e.maps.shape[0]} maps; the others have {n}")
    cols = 1 + len(explanations)
    fig, axes = plt.subplots(n, cols, figsize=(CELL * cols, CELL * n), squeeze=False)
    heats = {m: normalize_maps(e.maps, signed=e.signed) for m, e in explanations.items()}
    for i in range(n):
        show_image(axes[i, 0], images_uint8[i], title=row_titles[i] if row_titles is not None else None)
        for j, (m, e) in enumerate(explanations.items(), start=1):
            title = f"{m}\n{_label(e, i, classes)}" if i == 0 else _label(e, i, classes)
            show_overlay(axes[i, j], images_uint8[i], heats[m][i], signed=e.signed, title=title)
    return save_figure(fig, path)


def per_class_grid(images_uint8: torch.Tensor, labels: torch.Tensor, exp: Explanation,
                   classes: Sequence[str], path: str | os.PathLike[str], per_class: int = 4) -> Path:
    """Rows = classes; up to ``per_class`` images of each class (by ``labels``), map over image.

    A class with fewer images leaves its remaining cells empty; one with none says so.
    """
    n = exp.maps.shape[0]
    _check_images(images_uint8, n)
    labels = torch.as_tensor(labels).view(-1).cpu()
    if labels.numel() != n:
        raise CnnlensError(f"labels must have one entry per image ({n}); got {labels.numel()}")
    if per_class < 1:
        raise CnnlensError(f"per_class must be >= 1; got {per_class}")
    heat = normalize_maps(exp.maps, signed=exp.signed)
    k = len(classes)
    fig, axes = plt.subplots(k, per_class, figsize=(CELL * per_class, CELL * k), squeeze=False)
    for c in range(k):
        idx = (labels == c).nonzero().view(-1)[:per_class].tolist()
        for j in range(per_class):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j < len(idx):
                i = idx[j]
                show_overlay(ax, images_uint8[i], heat[i], signed=exp.signed,
                             title=f"→ {_label(exp, i, classes)}")
            elif j == 0:
                ax.text(0.5, 0.5, "no images", ha="center", va="center", fontsize=8)
            else:
                ax.axis("off")
        axes[c, 0].set_ylabel(classes[c], fontsize=9)
    fig.suptitle(f"{exp.method} per class (rows: true class; titles: explained class, probability)",
                 fontsize=9)
    return save_figure(fig, path)


def confused_pairs_figure(images_uint8: torch.Tensor, exp_true: Explanation, exp_pred: Explanation,
                          classes: Sequence[str], path: str | os.PathLike[str],
                          row_titles: Sequence[str] | None = None) -> Path:
    """Images of class A predicted as B: the original, the map for A, the map for B.

    Args:
        images_uint8: ``uint8 [N, C, H, W]`` misclassified images (any mix of pairs).
        exp_true: explanation with ``targets`` = each image's true class A.
        exp_pred: explanation (same method) with ``targets`` = each image's predicted class B.
    """
    n = exp_true.maps.shape[0]
    _check_images(images_uint8, n)
    if exp_pred.maps.shape[0] != n:
        raise CnnlensError(f"exp_true has {n} maps and exp_pred {exp_pred.maps.shape[0]}; they must explain "
                         "the same images")
    if n == 0:
        raise CnnlensError("no misclassified images to show")
    # one scale per image for both maps, so A and B are comparable
    both = torch.stack([exp_true.maps, exp_pred.maps], 1)  # [N, 2, H, W]
    heat = normalize_maps(both.flatten(1).view(n, 1, -1), signed=exp_true.signed).view_as(both)
    fig, axes = plt.subplots(n, 3, figsize=(CELL * 3, CELL * n), squeeze=False)
    for i in range(n):
        a, b = int(exp_true.targets[i]), int(exp_pred.targets[i])
        title = row_titles[i] if row_titles is not None else f"{classes[a]} → {classes[b]}"
        show_image(axes[i, 0], images_uint8[i], title=title)
        show_overlay(axes[i, 1], images_uint8[i], heat[i, 0], signed=exp_true.signed,
                     title=f"for {_with_prob(exp_true, i, a, classes[a])}")
        show_overlay(axes[i, 2], images_uint8[i], heat[i, 1], signed=exp_pred.signed,
                     title=f"for {_with_prob(exp_pred, i, b, classes[b])}")
    fig.suptitle(f"{exp_true.method}: why A was taken for B", fontsize=9)
    return save_figure(fig, path)
