"""Perturbation methods: LIME, KernelSHAP, occlusion and RISE, batched on the model's device.

They share one machinery: a binary matrix says which parts of the image are kept in each perturbed
sample (superpixels for LIME/KernelSHAP, a window for occlusion, a smooth random mask for RISE); the
perturbed images of one chunk are built at once as ``base + mask * (x - base)`` (for superpixels,
``mask = Z @ onehot(segments)``, applied with ``torch.lerp`` so kept pixels are bit-exact copies of
``x``), scored in batched forward passes without gradients (:class:`.scoring.Scorer`), and reduced
with a few small matrix operations (:mod:`.coalitions`). This module holds the methods and their
options (frozen dataclasses); the engine and the maths live in those two modules.

Common options:
    n_samples: number of perturbed images (LIME, KernelSHAP, RISE).
    seed: every random draw comes from ``torch.Generator().manual_seed(seed)`` on the CPU, so the
        same seed gives the same samples on every device; on the CPU the same map, bit for bit.
        Each image of a batch is seeded alike: its result does not depend on its batch position.
    batch_size: perturbed images per forward pass; ``None`` picks :func:`.scoring.auto_batch_size`.
    precision: ``"float32"`` or ``"bfloat16"`` (forward passes on a BN-folded, channels-last copy of the
        model, in bf16 with float32 ``Linear`` layers; the regression stays in float64).
    output: ``"prob"`` (softmax probability of the target, what ``lime`` explains) or ``"logit"``.
    baseline: what hidden pixels become, a :class:`cnnlens.fill.Fill` name (``segment_mean``,
        ``image_mean``, ``dataset_mean``, ``black`` with ``mean``/``std``, ``blur`` with
        ``blur_sigma``), a number or a tensor.

Memory: besides the per-sample coalition matrix (samples x superpixels), nothing grows with
samples x pixels beyond one chunk of ``batch_size`` images.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import CnnlensError
from ..fill import SUPERPIXEL_ALIASES, WINDOW_ALIASES, Fill, FillSpec, fill_pixels, gaussian_blur
from ..registry import check_choice
from .coalitions import (SAMPLINGS, all_coalitions, coalition_scores, constrained_shapley_fit,
                         lime_coalitions, lime_kernel, rise_grids, rise_masks, shap_coalitions,
                         shapley_kernel, shapley_sizes_distribution, top_k_mask, top_superpixels,
                         weighted_ridge, window_masks)
from .core import Context, Explainer, register_method
from .scoring import OUTPUTS, PRECISIONS, Scorer, auto_batch_size, fold_batchnorm
from .segmentation import segment, to_unit_range

log = logging.getLogger(__name__)

MIN_SEGMENTS = 4  # fewer superpixels than this from scikit-image -> a regular grid (logged)

__all__ = [  # the engine and the maths, re-exported for older imports from this module
    "OUTPUTS", "PRECISIONS", "SAMPLINGS", "KernelShap", "Lime", "LimeOptions", "Occlusion",
    "OcclusionOptions", "Rise", "RiseOptions", "Scorer", "ShapOptions", "SuperpixelOptions", "all_coalitions",
    "auto_batch_size", "coalition_scores", "constrained_shapley_fit", "fold_batchnorm", "gaussian_blur",
    "lime_coalitions", "lime_kernel", "make_baseline", "rise_grids", "rise_masks", "shap_coalitions",
    "shapley_kernel", "shapley_sizes_distribution", "top_k_mask", "top_superpixels", "weighted_ridge",
]


# ---- options -------------------------------------------------------------------------------------

def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise CnnlensError(f"{name} must be an integer >= {lo}; got {value!r}")
    return value


def _stats(mean: Sequence[float] | None, std: Sequence[float] | None
           ) -> tuple[Sequence[float], Sequence[float]] | None:
    return None if mean is None or std is None else (mean, std)


@dataclass(frozen=True)
class ScoringOptions:
    """Options every perturbation method takes: how the perturbed images are scored and filled."""

    batch_size: int | None = None
    precision: str = "float32"
    output: str = "prob"
    baseline: FillSpec = Fill.DATASET_MEAN
    blur_sigma: float | None = None
    mean: Sequence[float] | None = None  # the normalization, for baseline="black" (and segmentation)
    std: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None:
            _check_int("batch_size", self.batch_size, 1)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("output", self.output, OUTPUTS)

    def batch(self, x: torch.Tensor) -> int:
        """Perturbed images per forward pass for the images ``x`` ``[B,C,H,W]``."""
        return self.batch_size if self.batch_size is not None else auto_batch_size(x.shape[1:], x.device)

    def scorer(self, ctx: Context) -> Scorer:
        return Scorer(ctx.model, self.precision, self.output)

    def fill(self, x: torch.Tensor, where: str, aliases: Mapping[str, Fill],
             segments: torch.Tensor | None = None) -> torch.Tensor:
        """The baseline's pixels for one image ``x`` ``[C,H,W]``."""
        return fill_pixels(x, self.baseline, segments=segments, stats=_stats(self.mean, self.std),
                           blur_sigma=self.blur_sigma, aliases=aliases, where=where)


@dataclass(frozen=True)
class SuperpixelOptions(ScoringOptions):
    """LIME's and KernelSHAP's options (see :class:`Lime`)."""

    n_samples: int = 1000
    seed: int = 0
    segmentation: str = "slic"
    n_segments: int | None = None
    segment_options: dict[str, Any] | None = None
    segments: torch.Tensor | None = None
    baseline: FillSpec = Fill.SEGMENT_MEAN
    sampling: str = "paired"

    def __post_init__(self) -> None:
        _check_int("n_samples", self.n_samples, 2)
        _check_int("seed", self.seed, 0)
        super().__post_init__()
        check_choice("sampling", self.sampling, SAMPLINGS)


@dataclass(frozen=True)
class LimeOptions(SuperpixelOptions):
    kernel_width: float = 0.25
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not self.kernel_width > 0:
            raise CnnlensError(f"kernel_width must be > 0; got {self.kernel_width}")
        if not self.alpha >= 0:
            raise CnnlensError(f"alpha must be >= 0; got {self.alpha}")
        super().__post_init__()


@dataclass(frozen=True)
class ShapOptions(SuperpixelOptions):
    exact: bool | None = None


@dataclass(frozen=True)
class OcclusionOptions(ScoringOptions):
    window: int | tuple[int, int] | None = None
    stride: int | tuple[int, int] | None = None


@dataclass(frozen=True)
class RiseOptions(ScoringOptions):
    n_samples: int = 2000
    seed: int = 0
    grid: int = 8
    p: float = 0.5

    def __post_init__(self) -> None:
        _check_int("n_samples", self.n_samples, 1)
        _check_int("grid", self.grid, 1)
        _check_int("seed", self.seed, 0)
        if not 0 < self.p <= 1:
            raise CnnlensError(f"p (probability of keeping a grid cell) must be in (0, 1]; got {self.p}")
        super().__post_init__()


def make_baseline(x: torch.Tensor, spec: FillSpec, segments: torch.Tensor | None = None,
                  blur_sigma: float | None = None) -> torch.Tensor:
    """What hidden pixels become for one image ``x`` ``[C,H,W]`` (normalized space), as LIME and
    KernelSHAP fill them: :func:`cnnlens.fill.fill_pixels` with their older spellings (``"mean"``:
    ``segment_mean``, the image's mean colour without ``segments``; ``"zero"``: ``dataset_mean``)."""
    if segments is None and isinstance(spec, str) and spec in ("mean", Fill.SEGMENT_MEAN):
        spec = Fill.IMAGE_MEAN
    return fill_pixels(x, spec, segments=segments, blur_sigma=blur_sigma, aliases=SUPERPIXEL_ALIASES,
                       where="perturbation")


# ---- the methods ---------------------------------------------------------------------------------

class _Perturbation(Explainer):
    """The perturbation family: options are the keyword-only parameters of ``attribute``."""

    def accepted_options(self) -> tuple[str, ...]:
        params = inspect.signature(self.attribute).parameters.values()
        return tuple(p.name for p in params if p.kind == p.KEYWORD_ONLY)


class _SuperpixelMethod(_Perturbation):
    """Shared by LIME and KernelSHAP: segmentation, baseline, coalition scoring, pixel maps."""

    signed = True
    cost = 1000

    def _segments(self, ctx: Context, o: SuperpixelOptions) -> list[torch.Tensor]:
        b, _, h, w = ctx.x.shape
        if o.segments is not None:
            seg = torch.as_tensor(o.segments).long()
            if tuple(seg.shape) == (h, w):
                seg = seg.expand(b, h, w)
            if tuple(seg.shape) != (b, h, w):
                raise CnnlensError(f"segments must be [H,W] or [B,H,W] = {(b, h, w)}; got {tuple(seg.shape)}")
            out = []
            for s in seg:
                _, inv = torch.unique(s, return_inverse=True)  # labels 0..M-1, each used
                out.append(inv.reshape(h, w).cpu())
            return out
        unit = to_unit_range(ctx.x, o.mean, o.std)
        out = []
        for i, u in enumerate(unit):
            seg = segment(u, o.segmentation, n_segments=o.n_segments, seed=o.seed,
                          **(o.segment_options or {}))
            m = int(seg.max()) + 1
            if m < MIN_SEGMENTS <= h * w // 4:
                # e.g. SLIC on noise merges everything into one region: an explanation over 1-3 parts
                # says nothing, so fall back to a grid and say so
                log.warning("%s: %s segmentation of image %d gave %d superpixel(s); using a regular grid "
                            "instead (pass segmentation='grid' or other segment_options to choose)",
                            self.name, o.segmentation, i, m)
                seg = segment(u, "grid", n_segments=o.n_segments)
                self._fallbacks.append(i)
            out.append(seg)
        return out

    def _run(self, ctx: Context, o: SuperpixelOptions) -> tuple[torch.Tensor, dict[str, Any]]:
        bs = o.batch(ctx.x)
        scorer = o.scorer(ctx)
        self._fallbacks: list[int] = []
        segs = self._segments(ctx, o)
        targets = ctx.targets
        maps, per_image = [], []
        for i, seg in enumerate(segs):
            x = ctx.x[i]
            base = o.fill(x, self.name, SUPERPIXEL_ALIASES, seg)
            weights, extra = self.fit(scorer, x, base, seg, int(targets[i]), bs, o)
            maps.append(weights.float().to(x.device)[seg.to(x.device)])
            per_image.append((weights.float().cpu(), extra))
            log.debug("%s: image %d, %d superpixels, %d forward passes", self.name, i,
                      weights.numel(), scorer.calls)
        extras: dict[str, Any] = {
            "weights": [p[0] for p in per_image],
            "segments": torch.stack(segs),
            "n_segments": [p[0].numel() for p in per_image],
            "target": targets.detach().cpu(),
            "output": scorer.output,
            "precision": scorer.precision,
            "grid_fallback": torch.tensor([i in self._fallbacks for i in range(len(segs))]),
        }
        for key in per_image[0][1]:
            extras[key] = torch.stack([torch.as_tensor(p[1][key]) for p in per_image])
        return torch.stack(maps), extras

    def fit(self, scorer: Scorer, x: torch.Tensor, base: torch.Tensor, seg: torch.Tensor, target: int,
            batch_size: int, o: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError


@register_method
class Lime(_SuperpixelMethod):
    """LIME on superpixels (Ribeiro et al. 2016), as ``lime_image.LimeImageExplainer`` with Ridge.

    For coalitions ``z in {0,1}^M`` (row 0 all ones), ``y(z)`` = target score of the image whose
    superpixels with ``z_j = 0`` are replaced by the baseline; weights
    ``pi(z) = sqrt(exp(-d(z)^2 / w^2))``, ``d`` = cosine distance to all-ones, ``w = 0.25``; then
    ``(b, c) = argmin sum_z pi(z) (y(z) - c - z.b)^2 + alpha |b|^2`` (``alpha = 1``), in closed form.
    Pixel maps give each pixel its superpixel's ``b_j``.

    Extras: ``weights`` (list of ``[M_i]``), ``segments`` ``int64 [B,H,W]``, ``n_segments``,
    ``intercept`` ``[B]``, ``score`` (weighted R^2) ``[B]``, ``local_pred`` ``[B]``, ``target``.
    Options beyond the common ones (:class:`LimeOptions`): ``segmentation``
    (``slic``/``quickshift``/``felzenszwalb``/``grid``), ``n_segments``, ``segment_options`` (dict for
    scikit-image), ``segments`` (your own ``[H,W]`` or ``[B,H,W]`` labels), ``mean``/``std`` (dataset
    statistics, to segment the de-normalized image), ``baseline`` (default ``"segment_mean"``, lime's
    ``hide_color=None``), ``blur_sigma``, ``kernel_width``, ``alpha``, ``sampling``.
    """

    name = "lime"
    description = "LIME: weighted ridge on random superpixel coalitions (Ribeiro et al. 2016)"

    def attribute(self, ctx: Context, *, n_samples: int = 1000, seed: int = 0, batch_size: int | None = None,
                  precision: str = "float32", output: str = "prob", segmentation: str = "slic",
                  n_segments: int | None = None, segment_options: dict[str, Any] | None = None,
                  segments: torch.Tensor | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, baseline: FillSpec = Fill.SEGMENT_MEAN,
                  blur_sigma: float | None = None, kernel_width: float = 0.25, alpha: float = 1.0,
                  sampling: str = "paired") -> tuple[torch.Tensor, dict[str, Any]]:
        return self._run(ctx, LimeOptions(
            n_samples=n_samples, seed=seed, batch_size=batch_size, precision=precision, output=output,
            segmentation=segmentation, n_segments=n_segments, segment_options=segment_options,
            segments=segments, mean=mean, std=std, baseline=baseline, blur_sigma=blur_sigma,
            kernel_width=kernel_width, alpha=alpha, sampling=sampling))

    def fit(self, scorer: Scorer, x: torch.Tensor, base: torch.Tensor, seg: torch.Tensor, target: int,
            batch_size: int, o: LimeOptions) -> tuple[torch.Tensor, dict[str, Any]]:
        m = int(seg.max()) + 1
        z = lime_coalitions(o.n_samples, m, o.seed, o.sampling)
        y = coalition_scores(scorer, x, base, seg, z, target, batch_size)
        zd = z.to(x.device)
        w = lime_kernel(zd, o.kernel_width)
        coef, intercept, r2 = weighted_ridge(zd, y, w, o.alpha)
        local_pred = intercept + coef.sum()
        return coef, {"intercept": float(intercept), "score": float(r2), "local_pred": float(local_pred)}


@register_method
class KernelShap(_SuperpixelMethod):
    """KernelSHAP on superpixels (Lundberg & Lee 2017): Shapley values of the superpixels.

    ``phi = argmin sum_z pi(z) (y(z) - y(0) - z.phi)^2`` subject to ``sum(phi) = y(1) - y(0)``, with
    the Shapley kernel ``pi(z) = (M-1) / (C(M,|z|) |z| (M-|z|))``. ``exact=True`` (auto when
    ``2^M <= n_samples``) enumerates every coalition and gives the exact Shapley values; otherwise
    coalitions are drawn from the kernel (paired with their complements by default; Covert & Lee
    2021) and weighted equally. Solved in closed form (:func:`.coalitions.constrained_shapley_fit`).

    Extras: as LIME's, with ``base_value`` (all superpixels hidden), ``full_value`` (none hidden),
    ``exact`` (bool per image). Options: :class:`ShapOptions`.
    """

    name = "kernel_shap"
    description = "KernelSHAP: Shapley values of superpixels by kernel-weighted regression (Lundberg & Lee 2017)"

    def attribute(self, ctx: Context, *, n_samples: int = 1000, seed: int = 0, batch_size: int | None = None,
                  precision: str = "float32", output: str = "prob", segmentation: str = "slic",
                  n_segments: int | None = None, segment_options: dict[str, Any] | None = None,
                  segments: torch.Tensor | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, baseline: FillSpec = Fill.SEGMENT_MEAN,
                  blur_sigma: float | None = None, exact: bool | None = None, sampling: str = "paired"
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        return self._run(ctx, ShapOptions(
            n_samples=n_samples, seed=seed, batch_size=batch_size, precision=precision, output=output,
            segmentation=segmentation, n_segments=n_segments, segment_options=segment_options,
            segments=segments, mean=mean, std=std, baseline=baseline, blur_sigma=blur_sigma, exact=exact,
            sampling=sampling))

    def fit(self, scorer: Scorer, x: torch.Tensor, base: torch.Tensor, seg: torch.Tensor, target: int,
            batch_size: int, o: ShapOptions) -> tuple[torch.Tensor, dict[str, Any]]:
        m = int(seg.max()) + 1
        ends = torch.stack([torch.ones(m, dtype=torch.bool), torch.zeros(m, dtype=torch.bool)])
        if m == 1:
            y = coalition_scores(scorer, x, base, seg, ends, target, batch_size)
            return (y[:1] - y[1:]).double(), {"base_value": float(y[1]), "full_value": float(y[0]),
                                              "exact": True}
        exact = o.exact
        if exact is None:
            exact = m <= 24 and 2 ** m <= o.n_samples
        if exact:
            z = all_coalitions(m)
            w = shapley_kernel(m, z.sum(1))
        else:
            z = shap_coalitions(max(1, o.n_samples - 2), m, o.seed, o.sampling)
            w = torch.ones(z.shape[0], dtype=torch.float64)
        y = coalition_scores(scorer, x, base, seg, torch.cat([ends, z]), target, batch_size)
        f1, f0 = float(y[0]), float(y[1])
        phi = constrained_shapley_fit(z.to(x.device), y[2:], w.to(x.device), f0, f1)
        return phi, {"base_value": f0, "full_value": f1, "exact": bool(exact)}


def _pair(name: str, v: int | tuple[int, int]) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in t):
        raise CnnlensError(f"{name} must be a positive int or a pair of them; got {v!r}")
    return int(t[0]), int(t[1])


@register_method
class Occlusion(_Perturbation):
    """Occlusion (Zeiler & Fergus 2014), the same numbers as ``captum.attr.Occlusion``.

    A ``window`` (all channels) slides with ``stride`` (Captum's positions: ``ceil((H - k) / s) + 1``
    per axis, the last window clipped at the border); each pixel gets the mean of
    ``y(x) - y(x with the window set to baseline)`` over the windows that cover it. The map is Captum's
    attribution summed over channels (the reduction Captum's own image visualization uses).

    Options (:class:`OcclusionOptions`): ``window`` (int or (h, w); default ``min(H,W)/8``, at least 2),
    ``stride`` (default window/2), ``baseline`` (default ``"dataset_mean"``: 0 after normalization),
    ``blur_sigma``, ``mean``/``std``, ``batch_size``, ``precision``, ``output``. Deterministic: there is
    no ``n_samples`` or ``seed``.
    """

    name = "occlusion"
    description = "occlusion: score drop when a sliding window is hidden (Zeiler & Fergus 2014; = Captum)"
    signed = True
    cost = 256

    def attribute(self, ctx: Context, *, window: int | tuple[int, int] | None = None,
                  stride: int | tuple[int, int] | None = None, baseline: FillSpec = Fill.DATASET_MEAN,
                  blur_sigma: float | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, batch_size: int | None = None,
                  precision: str = "float32", output: str = "prob") -> tuple[torch.Tensor, dict[str, Any]]:
        o = OcclusionOptions(window=window, stride=stride, baseline=baseline, blur_sigma=blur_sigma,
                             mean=mean, std=std, batch_size=batch_size, precision=precision, output=output)
        b, c, h, w = ctx.x.shape
        kh, kw = _pair("window", o.window if o.window is not None else max(2, round(min(h, w) / 8)))
        sh, sw = _pair("stride", o.stride if o.stride is not None else (max(1, kh // 2), max(1, kw // 2)))
        if kh > h or kw > w:
            raise CnnlensError(f"window {(kh, kw)} is larger than the image {(h, w)}; pass a smaller window=")
        bs = o.batch(ctx.x)
        scorer = o.scorer(ctx)
        dev = ctx.x.device
        rows = window_masks(h, kh, sh, dev)  # [nh, H]
        cols = window_masks(w, kw, sw, dev)  # [nw, W]
        nh, nw = rows.shape[0], cols.shape[0]
        counts = rows.sum(0)[:, None] * cols.sum(0)[None, :]
        targets = ctx.targets
        maps = []
        for i in range(b):
            x = ctx.x[i]
            base = o.fill(x, self.name, WINDOW_ALIASES)
            t = int(targets[i])
            full = scorer(x[None], t)
            drops = torch.empty(nh * nw, dtype=torch.float32, device=dev)
            for p0 in range(0, nh * nw, bs):
                idx = torch.arange(p0, min(p0 + bs, nh * nw), device=dev)
                hide = (rows[idx // nw][:, :, None] * cols[idx % nw][:, None, :]).unsqueeze(1)  # [b,1,H,W]
                drops[p0:p0 + idx.numel()] = full - scorer(torch.addcmul(x, hide, base - x), t)
            total = rows.T @ drops.view(nh, nw) @ cols  # [H,W]: sum of drops of covering windows
            maps.append(c * total / counts)
        extras = {"window": (kh, kw), "stride": (sh, sw), "n_windows": nh * nw,
                  "target": targets.detach().cpu(), "output": o.output, "precision": o.precision}
        return torch.stack(maps), extras


@register_method
class Rise(_Perturbation):
    """RISE (Petsiuk et al. 2018): ``S = 1/(N p) sum_i y(x_i) M_i``, ``x_i = base + M_i (x - base)``.

    Each mask ``M_i``: a ``grid x grid`` binary grid (cells kept with probability ``p``), upsampled
    bilinearly to ``(grid + 1) * cell`` (``cell = ceil(H / grid)``) and cropped to ``H x W`` at a
    random shift in ``[0, cell)``, so the masks are smooth and not aligned to the grid. Grids and
    shifts are drawn up front (``N x grid^2`` values); masks are built one chunk at a time
    (:func:`.coalitions.rise_masks`).

    Options (:class:`RiseOptions`): ``n_samples`` (masks, default 2000), ``grid`` (default 8), ``p``
    (default 0.5), ``baseline`` (default ``"dataset_mean"``: 0 after normalization), ``blur_sigma``,
    ``mean``/``std``, ``seed``, ``batch_size``, ``precision``, ``output``.
    """

    name = "rise"
    description = "RISE: score-weighted average of random smooth masks (Petsiuk et al. 2018)"
    signed = False
    cost = 2000

    def attribute(self, ctx: Context, *, n_samples: int = 2000, seed: int = 0, grid: int = 8, p: float = 0.5,
                  baseline: FillSpec = Fill.DATASET_MEAN, blur_sigma: float | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  batch_size: int | None = None, precision: str = "float32", output: str = "prob"
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        o = RiseOptions(n_samples=n_samples, seed=seed, grid=grid, p=p, baseline=baseline,
                        blur_sigma=blur_sigma, mean=mean, std=std, batch_size=batch_size,
                        precision=precision, output=output)
        n, s = o.n_samples, o.grid
        b, c, h, w = ctx.x.shape
        if s > min(h, w):
            raise CnnlensError(f"grid {s} is finer than the image {(h, w)}; pass grid <= {min(h, w)}")
        bs = o.batch(ctx.x)
        scorer = o.scorer(ctx)
        dev = ctx.x.device
        grids, dy, dx, (ch, cw) = rise_grids(n, s, o.p, h, w, o.seed)
        targets = ctx.targets
        maps = []
        for i in range(b):
            x = ctx.x[i]
            base = o.fill(x, self.name, WINDOW_ALIASES)
            delta = x - base
            t = int(targets[i])
            sal = torch.zeros(h * w, dtype=torch.float64, device=dev)
            for j in range(0, n, bs):
                m = rise_masks(grids[j:j + bs], dy[j:j + bs], dx[j:j + bs], (ch, cw), (h, w), dev)
                y = scorer(torch.addcmul(base, m.unsqueeze(1), delta), t)
                sal += (y.double() @ m.reshape(m.shape[0], -1).double())
            maps.append((sal / (n * o.p)).float().view(h, w))
        extras = {"n_masks": n, "grid": s, "p": o.p, "target": targets.detach().cpu(), "output": o.output,
                  "precision": o.precision}
        return torch.stack(maps), extras
