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
import torch.nn.functional as F
from torch import nn

from ..explain.core import model_device, model_guard
from .base import Score
from ..errors import CnnlensError

SUBSTRATES = ("mean", "blur", "zeros")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N,C,H,W]``, kernel radius ``ceil(3 sigma)``, reflect padding
    (clamped to the image size)."""
    if sigma <= 0:
        return x.clone()
    r = max(1, int(torch.tensor(3.0 * sigma).ceil()))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def make_substrate(
    x: torch.Tensor,
    substrate: str | torch.Tensor,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    blur_sigma: float = 5.0,
) -> torch.Tensor:
    """The image pixels are replaced by (deletion) or start from (insertion), ``[N,C,H,W]``.

    ``"mean"``: the training mean, which is 0 in cnnlens' normalized input space;
    ``"zeros"``: black pixels, ``-mean/std`` in normalized space (needs ``stats=(mean, std)``);
    ``"blur"``: the image blurred with a Gaussian of ``blur_sigma`` pixels;
    a tensor broadcastable to ``x``: used as is.
    """
    if isinstance(substrate, torch.Tensor):
        try:
            return substrate.to(x.device, x.dtype).expand_as(x)
        except RuntimeError:
            raise CnnlensError(
                f"substrate tensor {tuple(substrate.shape)} does not broadcast to the images {tuple(x.shape)}"
            ) from None
    if substrate == "mean":
        return torch.zeros_like(x)
    if substrate == "blur":
        return gaussian_blur(x, blur_sigma)
    if substrate == "zeros":
        if stats is None:
            raise CnnlensError(
                "substrate='zeros' (black pixels) needs stats=(mean, std) of the input "
                "normalization, e.g. stats=(dataset.mean, dataset.std); or use 'mean'"
            )
        m = torch.tensor(stats[0], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(stats[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (-m / s).expand_as(x).clone()
    raise CnnlensError(f"substrate must be one of {', '.join(SUBSTRATES)} or a tensor; got {substrate!r}")


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
    substrate: str | torch.Tensor = "mean",
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    blur_sigma: float = 5.0,
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
    substrate: str | torch.Tensor = "mean",
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
    blur_sigma: float = 5.0,
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
