"""Faithfulness: deletion and insertion (RISE, Petsiuk et al. 2018).

Pixels are removed (deletion: replaced by a substrate) or added (insertion: copied onto the
substrate) in decreasing order of attribution, ``steps`` equal steps from 0 to all ``H*W`` pixels;
after step ``k`` exactly ``floor(k * H*W / steps)`` pixels have changed. The curve is the softmax
probability of the target class; its area is the trapezoid rule on ``[0, 1]``:

    AUC = (1/steps) * sum_k (p_k + p_{k+1}) / 2

A faithful map makes the probability fall fast under deletion (low AUC) and rise fast under
insertion (high AUC); ``insertion - deletion`` summarizes both (higher is better).

All (image, step) pairs are evaluated in batches on the model's device, ``chunk_size`` images per
forward pass (32 on the CPU, 512 on an accelerator by default). Ties in the map keep pixel order
(a stable sort), so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..nn import model_device, model_guard
from .base import Score
from ..errors import CnnlensError
from ..fill import SUBSTRATE_ALIASES, Fill, FillSpec, fill_pixels

#: the fills deletion/insertion accept by name (:mod:`cnnlens.fill`; no superpixels here)
SUBSTRATES = tuple(f.value for f in Fill if f is not Fill.SEGMENT_MEAN)


def make_substrate(
    x: torch.Tensor,
    substrate: FillSpec,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    blur_sigma: float | None = None,
) -> torch.Tensor:
    """The image pixels are replaced by (deletion) or start from (insertion), ``[N,C,H,W]``.

    ``substrate``: a :class:`~cnnlens.fill.Fill` name: ``"dataset_mean"`` (0 in cnnlens' normalized
    input space), ``"black"`` (``-mean/std``, needs ``stats=(mean, std)``), ``"image_mean"``,
    ``"blur"`` (:func:`cnnlens.fill.gaussian_blur` of ``blur_sigma`` pixels, default ``max(H,W)/10``);
    a number; or a tensor broadcastable to ``x``. The older ``"mean"`` (= ``dataset_mean``) and
    ``"zeros"`` (= ``black``) are accepted with a note.
    """
    if isinstance(substrate, str) and substrate == Fill.SEGMENT_MEAN:
        raise CnnlensError(f"substrate 'segment_mean' needs superpixels, which deletion/insertion has "
                           f"none of; use one of {', '.join(SUBSTRATES)}")
    return fill_pixels(x, substrate, stats=stats, blur_sigma=blur_sigma, aliases=SUBSTRATE_ALIASES,
                       where="deletion/insertion", arg="substrate", stats_hint="stats=(mean, std)")


def pixel_counts(n_pixels: int, steps: int) -> torch.Tensor:
    """``int64 [steps+1]``: pixels changed after each step, ``floor(k * n_pixels / steps)``."""
    k = torch.arange(steps + 1, dtype=torch.int64)
    return (k * n_pixels) // steps


def _check(x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, steps: int, mode: str) -> None:
    if mode not in ("deletion", "insertion"):
        raise CnnlensError(f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    if x.ndim != 4 or not x.is_floating_point():
        raise CnnlensError(f"x must be normalized float [N,C,H,W]; got {x.dtype} {tuple(x.shape)}")
    if tuple(maps.shape) != (x.shape[0], *x.shape[-2:]):
        raise CnnlensError(
            f"maps must be [N,H,W] = {(x.shape[0], *x.shape[-2:])} to match x; got {tuple(maps.shape)}"
        )
    if targets.shape != (x.shape[0],):
        raise CnnlensError(f"targets must be one class per image [{x.shape[0]}]; got {tuple(targets.shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise CnnlensError(f"steps must be an int >= 1; got {steps!r}")


@torch.no_grad()
def perturbation_curves(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    mode: str = "deletion",
    *,
    steps: int = 50,
    substrate: FillSpec = Fill.DATASET_MEAN,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    blur_sigma: float | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Target-class probability along the deletion or insertion path.

    Args:
        model: classifier returning logits ``[B, K]``; returned untouched.
        x: normalized float ``[N, C, H, W]``.
        maps: attributions ``[N, H, W]``; pixels are taken in decreasing order of value.
        targets: ``int64 [N]`` class whose probability is tracked.
        mode: ``"deletion"`` or ``"insertion"``.
        steps: number of equal steps from no pixel to all pixels.
        chunk_size: perturbed images per forward pass; default 32 on the CPU (larger batches ran
            slower there: cache-bound, see docs/benchmarks.md) and 512 on an accelerator.

    Returns:
        ``float64 [N, steps+1]`` probabilities on the CPU.
    """
    _check(x, maps, targets, steps, mode)
    dev = model_device(model)
    if chunk_size is None:
        chunk_size = 32 if dev.type == "cpu" else 512
    if chunk_size < 1:
        raise CnnlensError(f"chunk_size must be >= 1; got {chunk_size}")
    n, c, h, w = x.shape
    p = h * w
    xd = x.detach().to(dev, torch.float32)
    sub = make_substrate(xd, substrate, stats, blur_sigma)
    start, end = (xd, sub) if mode == "deletion" else (sub, xd)
    order = torch.sort(
        maps.detach().reshape(n, p).to(dev).float(), dim=1, descending=True, stable=True
    ).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(p, device=dev).expand(n, p).contiguous())
    counts = pixel_counts(p, steps).to(dev)
    tg = targets.to(dev).long()
    total = n * (steps + 1)
    out = torch.empty(total, dtype=torch.float32, device=dev)
    with model_guard(model), torch.no_grad():
        for j0 in range(0, total, chunk_size):
            j = torch.arange(j0, min(j0 + chunk_size, total), device=dev)
            i, k = j // (steps + 1), j % (steps + 1)
            changed = (rank[i] < counts[k].unsqueeze(1)).view(-1, 1, h, w)
            imgs = torch.where(changed, end[i], start[i])
            prob = model(imgs).float().softmax(1)
            out[j0 : j0 + len(j)] = prob.gather(1, tg[i].view(-1, 1)).squeeze(1)
    return out.view(n, steps + 1).double().cpu()


def auc(curves: torch.Tensor) -> torch.Tensor:
    """Trapezoid area of ``[N, S+1]`` curves on ``[0, 1]`` -> ``float64 [N]``."""
    c = curves.double()
    s = c.shape[1] - 1
    if s < 1:
        raise CnnlensError("a curve needs at least 2 points")
    return (c[:, 1:] + c[:, :-1]).sum(1) / (2.0 * s)


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    *,
    method: str = "",
    steps: int = 50,
    substrate: FillSpec = Fill.DATASET_MEAN,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    blur_sigma: float | None = None,
    chunk_size: int | None = None,
) -> tuple[dict[str, Score], dict[str, torch.Tensor]]:
    """Deletion AUC (lower is better), insertion AUC (higher is better) and their difference.

    Returns ``(scores, curves)``: scores ``deletion_auc``, ``insertion_auc``,
    ``insertion_minus_deletion`` (each ``[N]``), and the curves ``[N, steps+1]`` by mode.
    """
    kw = dict(steps=steps, substrate=substrate, stats=stats, blur_sigma=blur_sigma, chunk_size=chunk_size)
    dc = perturbation_curves(model, x, maps, targets, "deletion", **kw)
    ic = perturbation_curves(model, x, maps, targets, "insertion", **kw)
    d, i = auc(dc), auc(ic)
    scores = {
        "deletion_auc": Score("deletion_auc", d, False, method),
        "insertion_auc": Score("insertion_auc", i, True, method),
        "insertion_minus_deletion": Score("insertion_minus_deletion", i - d, True, method),
    }
    return scores, {"deletion": dc, "insertion": ic}
