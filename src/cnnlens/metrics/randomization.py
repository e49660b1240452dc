"""Randomization sanity checks (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

*Model parameter randomization*: re-initialize the weights of a **deep copy** of the model
(the caller's model is never touched), either cascading from the logits down (the top layer, then
the top two, ... down to all of them) or one layer at a time (independent), and compare the maps
of the randomized model with the original ones. A map that barely changes when the weights that
produced the decision are destroyed cannot be explaining that decision.

*Random logit* (the "data/class" side): the map for the explained class against the map for
another class drawn at random; a class-sensitive method gives different maps.

Similarities (one number per image; lower means more sensitive):
- Spearman rank correlation of the raw maps (``spearman``) and of ``|map|`` (``spearman_abs``),
  average ranks for ties; a constant map has no ranking and counts as correlation 0.
- SSIM (Wang et al. 2004) of the maps min-max normalized to ``[0, 1]`` (a constant map -> zeros),
  computed as scikit-image's default: 7x7 uniform window, sample covariance, ``K1=0.01,
  K2=0.03``, data range 1, averaged over the window positions that fit inside the image.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import model_device, model_guard
from .base import Score
from ..errors import CnnlensError

SIMILARITIES = ("spearman", "spearman_abs", "ssim")


# ---- similarity measures -------------------------------------------------------------------------


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks ``[N, P]`` (0-based), ties get the average of their positions (as scipy)."""
    s = torch.sort(v, dim=1).values.contiguous()
    lo = torch.searchsorted(s, v.contiguous(), right=False)
    hi = torch.searchsorted(s, v.contiguous(), right=True) - 1
    return (lo + hi).double() / 2.0


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation ``[N, P] x [N, P] -> [N]``; 0 where a row is constant."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt()
    num = (a * b).sum(1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps ``[N, H, W]`` -> ``[N]`` (constant map: 0)."""
    n = a.shape[0]
    return pearson(average_ranks(a.reshape(n, -1).double()), average_ranks(b.reshape(n, -1).double()))


def minmax01(m: torch.Tensor) -> torch.Tensor:
    """Each map ``[N, H, W]`` scaled to ``[0, 1]``; a constant map becomes all zeros."""
    n = m.shape[0]
    f = m.reshape(n, -1).double()
    lo, hi = f.amin(1, keepdim=True), f.amax(1, keepdim=True)
    rng = hi - lo
    out = torch.where(rng > 0, (f - lo) / rng.clamp_min(1e-300), torch.zeros_like(f))
    return out.reshape(m.shape)


def ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    win_size: int = 7,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM of each pair of images ``[N, H, W]`` -> ``[N]`` (float64).

    ``SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))`` with
    local means and sample (co)variances over a ``win_size`` square window, ``C1 = (k1 L)^2``,
    ``C2 = (k2 L)^2``; averaged over the valid window positions (scikit-image's default).
    """
    if a.shape != b.shape or a.ndim != 3:
        raise CnnlensError(
            f"ssim needs two [N,H,W] tensors of the same shape; got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if min(a.shape[-2:]) < win_size:
        raise CnnlensError(f"images {tuple(a.shape[-2:])} are smaller than the SSIM window {win_size}")
    x, y = a.double().unsqueeze(1), b.double().unsqueeze(1)

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, win_size, stride=1)

    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1.0)
    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def map_similarity(a: torch.Tensor, b: torch.Tensor, method: str = "") -> dict[str, Score]:
    """Similarities of two sets of maps ``[N, H, W]``: ``spearman``, ``spearman_abs`` and ``ssim``
    (each ``[N]``; lower is better: the method is sensitive to what was changed)."""
    a, b = a.detach().cpu(), b.detach().cpu()
    return {
        "spearman": Score("spearman", spearman(a, b), False, method),
        "spearman_abs": Score("spearman_abs", spearman(a.abs(), b.abs()), False, method),
        "ssim": Score("ssim", ssim(minmax01(a), minmax01(b)), False, method),
    }


# ---- re-initialization ---------------------------------------------------------------------------


def parameter_layers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order the forward pass calls them
    (bottom to top); modules never called on ``x`` come last, in registration order."""
    own = [(n, m) for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))]
    seen: list[str] = []
    with model_guard(model) as handles, torch.no_grad():
        for n, m in own:
            handles.append(
                m.register_forward_hook(lambda _m, _i, _o, n=n: seen.append(n) if n not in seen else None)
            )
        model(x[:1].to(model_device(model)))
    return seen + [n for n, _ in own if n not in seen]


NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def layer_groups(model: nn.Module, layers: Sequence[str]) -> list[str]:
    """Join each normalization layer to the layer before it: ``["cnn.0", "cnn.1", "fc.1"]`` ->
    ``["cnn.0+cnn.1", "fc.1"]`` when ``cnn.1`` is a BatchNorm. A group is randomized as one step
    (a BatchNorm reset alone is the identity: a curve point that says nothing)."""
    named = dict(model.named_modules())
    out: list[str] = []
    for n in layers:
        if out and isinstance(named.get(n), NORM_LAYERS):
            out[-1] += "+" + n
        else:
            out.append(n)
    return out


def reinitialize(module: nn.Module, seed: int) -> None:
    """Re-initialize one module's own parameters (and buffers) in place with its default init
    (``reset_parameters``), seeded; without one, each parameter is redrawn from a normal with the
    parameter's current standard deviation."""
    dev = next(module.parameters(recurse=False)).device
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            with torch.no_grad():
                for p in module.parameters(recurse=False):
                    std = float(p.std()) if p.numel() > 1 else 1.0
                    p.normal_(0.0, std if std > 0 else 1.0)


MapFn = Callable[[nn.Module], torch.Tensor]  # model -> maps [N,H,W] on fixed images and targets


def randomization_curve(
    model: nn.Module,
    maps_fn: MapFn,
    original: torch.Tensor,
    layers: Sequence[str],
    *,
    order: str = "cascading",
    seed: int = 0,
    method: str = "",
) -> list[tuple[str, dict[str, Score]]]:
    """Similarity between original maps and maps of a randomized copy, one entry per layer.

    Args:
        model: the trained model; only deep copies are randomized.
        maps_fn: ``model -> maps [N, H, W]`` (fixed images and targets).
        original: the maps of the unmodified model ``[N, H, W]``.
        layers: parameter layers bottom to top (:func:`parameter_layers`), or groups of them
            joined by ``+`` (:func:`layer_groups`), each randomized as one step.
        order: ``"cascading"``: layer ``i`` of the result has every layer from the top down to
            ``i`` randomized (the last entry is the fully randomized model); ``"independent"``:
            only that layer is randomized.
        seed: layer ``j`` (index in ``layers``) is always re-initialized with seed ``seed + j``,
            so every method sees the same random weights.

    Returns:
        ``[(layer name, {similarity: Score})]`` from the top layer down.
    """
    if order not in ("cascading", "independent"):
        raise CnnlensError(f"order must be 'cascading' or 'independent'; got {order!r}")
    named = dict(model.named_modules())
    missing = [n for g in layers for n in g.split("+") if n not in named]
    if missing:
        raise CnnlensError(f"layers {missing} are not in the model; valid: {', '.join(n for n in named if n)}")
    out: list[tuple[str, dict[str, Score]]] = []
    work = copy.deepcopy(model) if order == "cascading" else None
    for j in reversed(range(len(layers))):
        if order == "independent":
            work = copy.deepcopy(model)
        _randomize_group(work, layers[j], seed + j)  # type: ignore[arg-type]
        out.append((layers[j], map_similarity(original, maps_fn(work), method)))  # type: ignore[arg-type]
    return out


def fully_randomized(model: nn.Module, layers: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with every layer of ``layers`` re-initialized (layer ``j`` with seed
    ``seed + j``, the same weights the cascade ends with)."""
    work = copy.deepcopy(model)
    for j in reversed(range(len(layers))):
        _randomize_group(work, layers[j], seed + j)
    return work


def _randomize_group(model: nn.Module, group: str, seed: int) -> None:
    mods = dict(model.named_modules())
    for i, n in enumerate(group.split("+")):
        reinitialize(mods[n], seed * 1000 + i)


def other_classes(targets: torch.Tensor, num_classes: int, seed: int = 0) -> torch.Tensor:
    """For each target a different class drawn uniformly among the others (seeded)."""
    if num_classes < 2:
        raise CnnlensError("the random-logit test needs at least 2 classes")
    g = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, num_classes, targets.shape, generator=g)
    return (targets.cpu() + shift) % num_classes
