"""The coalition maths of the perturbation methods, as plain functions of tensors.

Coalition sampling and weighting (LIME, KernelSHAP), the closed-form regressions, the scores of
coalition images (:func:`coalition_scores`, given any scoring callable), RISE's masks and
occlusion's windows, and LIME's top-k masks. Nothing here holds state or touches a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import CnnlensError
from ..registry import check_choice

SAMPLINGS = ("paired", "iid", "sobol")
ONEHOT_LIMIT = 1 << 24  # coalition_scores: largest one-hot superpixel matrix (values) before a gather


def coalition_scores(scorer: Callable[[torch.Tensor, int], torch.Tensor], x: torch.Tensor, base: torch.Tensor,
                     segments: torch.Tensor,
                     z: torch.Tensor, target: int, batch_size: int) -> torch.Tensor:
    """Scores of the images that keep superpixel ``j`` where ``z[s, j]`` and show ``base`` elsewhere.

    A chunk's keep masks are ``Z @ onehot(segments)`` (exact 0/1; a gather of ``Z`` when the one-hot
    matrix would pass 2**24 values) and its images ``torch.lerp(base, x, mask)``, exact copies of
    ``x`` or ``base`` for 0/1 weights (faster on the CPU than a boolean gather and ``torch.where``;
    docs/benchmarks.md).

    Args:
        x, base: ``[C,H,W]`` on the model's device.
        segments: ``int64 [H,W]`` labels ``0..M-1``.
        z: ``bool [N, M]`` coalitions.

    Returns:
        ``float32 [N]``; one chunk of ``batch_size`` images exists at a time.
    """
    c, h, w = x.shape
    m = z.shape[1]
    dt = x.dtype if x.is_floating_point() else torch.float32
    seg = segments.to(x.device).flatten()
    zf = z.to(x.device, dt)
    onehot = None
    if m * h * w <= ONEHOT_LIMIT:
        onehot = torch.zeros(m, h * w, dtype=dt, device=x.device).scatter_(0, seg[None], 1.0)
    xf, bf = x.to(dt).reshape(c, h * w), base.to(dt).reshape(c, h * w)
    out = torch.empty(z.shape[0], dtype=torch.float32, device=x.device)
    for i in range(0, z.shape[0], batch_size):
        zc = zf[i:i + batch_size]
        keep = zc @ onehot if onehot is not None else zc.index_select(1, seg)
        imgs = torch.lerp(bf, xf, keep.unsqueeze(1)).view(-1, c, h, w)
        out[i:i + keep.shape[0]] = scorer(imgs, target)
    return out


def lime_coalitions(n: int, m: int, seed: int, sampling: str = "paired") -> torch.Tensor:
    """``bool [n, m]`` random coalitions; row 0 keeps everything (the original image), as lime does.

    ``"iid"``: each superpixel kept with probability 1/2 (lime). ``"paired"``: the same distribution
    drawn in complementary pairs ``z, 1 - z`` (row 1 is the complement of row 0), which makes the
    regression design balanced. ``"sobol"``: a scrambled Sobol sequence thresholded at 1/2 (every
    superpixel kept in half the samples, pairs of superpixels balanced too).
    """
    check_choice("sampling", sampling, SAMPLINGS)
    if sampling == "sobol":
        z = torch.quasirandom.SobolEngine(m, scramble=True, seed=int(seed)).draw(n) < 0.5
        z[0] = True
        return z
    g = torch.Generator().manual_seed(int(seed))
    if sampling == "iid":
        z = torch.randint(0, 2, (n, m), generator=g, dtype=torch.uint8).bool()
        z[0] = True
        return z
    half = torch.randint(0, 2, ((n + 1) // 2, m), generator=g, dtype=torch.uint8).bool()
    half[0] = True
    return torch.stack([half, ~half], 1).reshape(-1, m)[:n]


def lime_kernel(z: torch.Tensor, kernel_width: float = 0.25) -> torch.Tensor:
    """lime_image's weights: ``sqrt(exp(-d^2 / width^2))`` with ``d`` the cosine distance to all-ones.

    For a binary ``z`` with ``k`` ones out of ``M``: ``d = 1 - sqrt(k / M)`` (``d = 1`` for ``k = 0``,
    as in scikit-learn). Returns ``float64 [N]``.
    """
    k = z.sum(1, dtype=torch.float64)
    d = 1.0 - torch.sqrt(k / z.shape[1])
    return torch.sqrt(torch.exp(-(d * d) / (kernel_width ** 2)))


def weighted_ridge(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form ``argmin_{b,c} sum_i w_i (y_i - c - z_i.b)^2 + alpha |b|^2`` (scikit-learn's Ridge
    with ``fit_intercept=True`` and ``sample_weight``), in float64 on ``z``'s device.

    Args:
        z: ``[N, M]`` design; y: ``[N]`` targets; w: ``[N]`` non-negative sample weights.

    Returns:
        ``(coef [M], intercept [], r2 [])``; ``r2`` is the weighted R^2 of the fit (scikit-learn's
        ``score``: 1 for a perfect fit of constant targets, else 0 when they are constant).
    """
    z = z.double()
    y = y.to(z.device).double()
    w = w.to(z.device).double()
    sw = w.sum()
    zm = (w @ z) / sw
    ym = (w @ y) / sw
    zc = z - zm
    yc = y - ym
    a = zc.T @ (zc * w[:, None])
    a.diagonal().add_(alpha)
    coef = torch.linalg.solve(a, zc.T @ (w * yc))
    intercept = ym - zm @ coef
    resid = y - (z @ coef + intercept)
    ss_res = (w * resid * resid).sum()
    ss_tot = (w * yc * yc).sum()
    if ss_tot > 0:
        r2 = 1.0 - ss_res / ss_tot
    else:
        r2 = torch.where(ss_res > 0, 0.0, 1.0).double()
    return coef, intercept, r2


def shapley_kernel(m: int, sizes: torch.Tensor) -> torch.Tensor:
    """Shapley kernel ``pi(k) = (M-1) / (C(M,k) k (M-k))`` for coalition sizes ``0 < k < M`` (float64)."""
    k = sizes.double()
    log_binom = math.lgamma(m + 1) - torch.lgamma(k + 1) - torch.lgamma(m - k + 1)
    return (m - 1) / (torch.exp(log_binom) * k * (m - k))


def shapley_sizes_distribution(m: int) -> torch.Tensor:
    """``P(|z| = k)`` for ``k = 1..M-1`` when coalitions are drawn from the Shapley kernel: ``∝ 1/(k(M-k))``."""
    k = torch.arange(1, m, dtype=torch.float64)
    p = 1.0 / (k * (m - k))
    return p / p.sum()


def shap_coalitions(n: int, m: int, seed: int, sampling: str = "paired") -> torch.Tensor:
    """``bool [n', m]``, drawn from the Shapley kernel: size ``k`` with :func:`shapley_sizes_distribution`,
    then ``k`` superpixels uniformly (``"paired"``: with the complement of each draw; Covert & Lee 2021).
    Does not include the empty and the full coalition."""
    check_choice("sampling", sampling, ("paired", "iid"))
    g = torch.Generator().manual_seed(int(seed))
    draws = (n + 1) // 2 if sampling == "paired" else n
    k = torch.multinomial(shapley_sizes_distribution(m), draws, replacement=True, generator=g) + 1
    ranks = torch.rand(draws, m, generator=g, dtype=torch.float64).argsort(1).argsort(1)
    z = ranks < k[:, None]
    if sampling == "paired":
        z = torch.stack([z, ~z], 1).reshape(-1, m)[:n]
    return z


def all_coalitions(m: int) -> torch.Tensor:
    """``bool [2^M - 2, M]``: every coalition but the empty and the full one."""
    if m > 24:
        raise CnnlensError(f"exact enumeration needs 2^M forward passes; M = {m} superpixels is too many "
                         "(use exact=False, or fewer superpixels via n_segments=...)")
    idx = torch.arange(1, 2 ** m - 1, dtype=torch.int64)
    return ((idx[:, None] >> torch.arange(m)) & 1).bool()


def constrained_shapley_fit(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, f0: float, f1: float
                            ) -> torch.Tensor:
    """KernelSHAP regression: ``argmin_phi sum_i w_i (y_i - f0 - z_i.phi)^2`` s.t. ``sum(phi) = f1 - f0``.

    Closed form with a Lagrange multiplier (Covert & Lee 2021): with ``A = Z^T W Z`` and
    ``b = Z^T W (y - f0)``, ``phi = A^+ (b - 1 (1^T A^+ b - (f1 - f0)) / (1^T A^+ 1))``. With every
    coalition and the Shapley kernel as ``w`` this is exactly the Shapley values. Float64, ``[M]``.
    """
    z = z.double()
    y = y.to(z.device).double()
    w = w.to(z.device).double()
    a = z.T @ (z * w[:, None])
    b = z.T @ (w * (y - f0))
    a_inv = torch.linalg.pinv(a, hermitian=True)
    ones = torch.ones(z.shape[1], dtype=torch.float64, device=z.device)
    ainv_b = a_inv @ b
    ainv_1 = a_inv @ ones
    return ainv_b - ainv_1 * ((ones @ ainv_b - (f1 - f0)) / (ones @ ainv_1))


def top_k_mask(segments: torch.Tensor, weights: torch.Tensor, k: int = 5, positive_only: bool = True,
               negative_only: bool = False, min_weight: float = 0.0) -> torch.Tensor:
    """lime's ``get_image_and_mask`` mask: ``int64 [H,W]`` over superpixels ranked by ``|weight|``.

    ``positive_only``: the ``k`` strongest superpixels with weight ``> max(0, min_weight)`` marked 1;
    ``negative_only``: the ``k`` strongest with weight ``< 0`` and ``|weight| > min_weight`` marked 1;
    neither: the ``k`` strongest with ``|weight| >= min_weight`` marked ``+1`` / ``-1`` by sign.
    Ties in ``|weight|`` keep superpixel order (stable sort).
    """
    if positive_only and negative_only:
        raise CnnlensError("positive_only and negative_only cannot both be True; pick one (or neither for both "
                         "signs)")
    if k < 0:
        raise CnnlensError(f"k must be >= 0; got {k}")
    w = weights.detach().cpu().double()
    seg = segments.detach().cpu().long()
    order = torch.argsort(-w.abs(), stable=True)
    sign = torch.zeros(w.numel(), dtype=torch.int64)
    if positive_only or negative_only:
        wo = w[order]
        ok = (wo > 0) & (wo > min_weight) if positive_only else (wo < 0) & (wo.abs() > min_weight)
        sign[order[ok][:k]] = 1
    else:
        top = order[:k]
        top = top[w[top].abs() >= min_weight]
        sign[top] = torch.where(w[top] < 0, -1, 1)
    return sign[seg]


def top_superpixels(weights: torch.Tensor, k: int = 5) -> list[int]:
    """Indices of the ``k`` largest weights (strongest positive evidence), largest first."""
    return torch.argsort(-weights.detach().cpu().double(), stable=True)[:k].tolist()


def window_masks(n: int, k: int, s: int, device: torch.device) -> torch.Tensor:
    """``float32 [positions, n]``: 1 where each window covers; positions at ``0, s, 2s, ...`` as Captum."""
    positions = math.ceil((n - k) / s) + 1
    start = torch.arange(positions, device=device)[:, None] * s
    t = torch.arange(n, device=device)[None, :]
    return ((t >= start) & (t < start + k)).float()


def rise_grids(n: int, s: int, p: float, h: int, w: int, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, int]]:
    """RISE's random draws, on the CPU: ``(grids float32 [n,s,s], dy [n], dx [n], (cell_h, cell_w))``."""
    g = torch.Generator().manual_seed(int(seed))
    ch, cw = math.ceil(h / s), math.ceil(w / s)
    grids = (torch.rand(n, s, s, generator=g) < p).float()
    dy = torch.randint(0, ch, (n,), generator=g)
    dx = torch.randint(0, cw, (n,), generator=g)
    return grids, dy, dx, (ch, cw)


def rise_masks(grids: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, cell: tuple[int, int],
               size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """``[b,s,s]`` grids -> ``float32 [b,H,W]`` smooth masks, as the paper's code does it.

    Bilinear resize of the ``s x s`` grid to ``(s+1)*cell`` (pixel centres aligned, mirror-reflected
    borders: scikit-image's ``resize(order=1, mode="reflect")``), cropped at ``(dy, dx)``. The resize
    is separable, so each mask is ``R_b @ grid_b @ C_b^T`` with the rows of the interpolation
    matrices that the crop keeps: nothing larger than the chunk of masks is built.
    """
    h, w = size
    s = grids.shape[-1]
    rows = _interp_matrix(s, (s + 1) * cell[0], device)[dy.to(device)[:, None] + torch.arange(h, device=device)]
    cols = _interp_matrix(s, (s + 1) * cell[1], device)[dx.to(device)[:, None] + torch.arange(w, device=device)]
    return rows @ grids.to(device) @ cols.transpose(1, 2)


def _interp_matrix(n: int, out: int, device: torch.device) -> torch.Tensor:
    """``float32 [out, n]``: linear interpolation from ``n`` to ``out`` samples, pixel centres aligned,
    mirror-reflected at the borders (``-1 -> 1``, ``n -> n - 2``)."""
    src = (torch.arange(out, dtype=torch.float64) + 0.5) * n / out - 0.5
    i0 = torch.floor(src).long()
    frac = src - i0
    m = torch.zeros(out, n, dtype=torch.float64)

    def reflect(i: torch.Tensor) -> torch.Tensor:
        if n == 1:
            return torch.zeros_like(i)
        i = torch.where(i < 0, -i, i)
        return torch.where(i > n - 1, 2 * (n - 1) - i, i)

    r = torch.arange(out)
    m.index_put_((r, reflect(i0)), 1.0 - frac, accumulate=True)
    m.index_put_((r, reflect(i0 + 1)), frac, accumulate=True)
    return m.float().to(device)
