"""Trust figures: the cascading-randomization curve per layer, one line per method."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .figures import plt, save_figure
from ..errors import CnnlensError

Curve = Sequence[tuple[str, Mapping[str, float]]]


def plot_randomization(
    curves: Mapping[str, Curve],
    path: str | os.PathLike[str],
    metric: str = "spearman_abs",
    title: str = "cascading randomization",
) -> Path:
    """Similarity to the original maps (y) as layers are randomized from the logits down (x).

    ``curves``: method -> ``[(layer, {metric: value})]`` from the top layer down (as
    :func:`cnnlens.metrics.randomization.randomization_curve` returns, averaged). Controls are dashed.
    """
    if not curves:
        raise CnnlensError("no randomization curves to draw")
    first = next(iter(curves.values()))
    layers = [ly for ly, _ in first]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(layers) + 3), 4.2))
    xs = list(range(len(layers) + 1))
    colors = plt.get_cmap("tab20").colors
    for i, (m, c) in enumerate(curves.items()):
        if [ly for ly, _ in c] != layers:
            raise CnnlensError(f"method {m!r} was randomized over different layers than {next(iter(curves))!r}")
        ys = [1.0] + [d[metric] for _, d in c]
        style = "--" if m.startswith("control_") else "-"
        color = "black" if m == "control_edge" else "grey" if m == "control_random" else colors[i % 20]
        ax.plot(xs, ys, style, marker="o", ms=3, label=m, color=color)
    ax.set_xticks(xs)
    ax.set_xticklabels(["original"] + layers, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("randomized down to layer (cascading from the logits)")
    ax.set_ylabel(
        {"spearman_abs": "rank correlation of |map|", "spearman": "rank correlation", "ssim": "SSIM"}.get(
            metric, metric
        )
        + " with the original"
    )
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylim(-0.25, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def plot_trust(report: Any, out_dir: str | os.PathLike[str]) -> Path | None:
    """``out_dir/randomization.png`` from a :class:`~cnnlens.metrics.TrustReport` with a cascading
    curve (``None``, nothing drawn, without one). ``cnnlens trust`` and ``cnnlens run`` call it
    after :func:`~cnnlens.metrics.run_trust` has written ``scores.json``."""
    if not report.cascading:
        return None
    return plot_randomization(
        report.cascading,
        Path(out_dir) / "randomization.png",
        metric="spearman_abs",
        title=f"cascading randomization ({report.n_images} images)",
    )
