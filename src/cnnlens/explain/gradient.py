"""Gradient methods on the input: saliency, gradient x input, SmoothGrad, Integrated Gradients,
guided backpropagation, deconvnet; and a noise tunnel usable with any of them.

Every method first computes a per-channel attribution ``[B, C, H, W]`` and then reduces it over
channels to the contract's ``[B, H, W]`` map (option ``reduce``: ``"sum"``, ``"abs_max"``,
``"max"``, ``"abs_sum"``, ``"l2"``; each method has a default). The noise tunnel averages the
per-channel attributions over noisy copies of the input *before* the reduction, as Captum's
``NoiseTunnel`` does.

Memory is bounded: the noisy copies and IG's interpolation steps are evaluated in groups of at most
``batch_size`` rows per forward pass (default: the images of the chunk, or more when small).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .core import Context, Explainer, pass_rows, register_method
from .guided import activation_rule
from ..errors import CnnlensError, CnnlensTypeError
from ..fill import IG_ALIASES, Fill, FillSpec, fill_pixels, resolve_fill

REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": lambda a: a.sum(1),
    "abs_max": lambda a: a.abs().amax(1),
    "max": lambda a: a.amax(1),
    "abs_sum": lambda a: a.abs().sum(1),
    "l2": lambda a: a.pow(2).sum(1).sqrt(),
}
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def reduce_channels(a: torch.Tensor, how: str) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H, W]`` with one of :data:`REDUCTIONS`."""
    if how not in REDUCTIONS:
        raise CnnlensError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {how!r}")
    return REDUCTIONS[how](a)


def row_budget(x: torch.Tensor, batch_size: int | None, model: torch.nn.Module | None = None) -> int:
    """Rows per forward pass for methods that evaluate many copies of the input: ``batch_size``, or
    the chunk's images and at least :func:`~cnnlens.explain.core.pass_rows` (sized by ``model``'s
    weight too, when given; call it inside the model guard)."""
    if batch_size is None:
        return max(x.shape[0], pass_rows(x, model=model))
    if not isinstance(batch_size, int) or batch_size < 1:
        raise CnnlensError(f"batch_size must be a positive int (rows per forward pass); got {batch_size!r}")
    return batch_size


# ---- the shared pass -----------------------------------------------------------------------------

@dataclass
class Pass:
    """One forward (+ backward) on the clean input, shared by single-pass methods.

    ``gx``: ``[B,C,H,W]`` d(target logit)/d input; ``act``: ``[B,K,h,w]`` the layer's output;
    ``ga``: its gradient. Entries not requested are ``None``.
    """

    logits: torch.Tensor
    gx: torch.Tensor | None = None
    act: torch.Tensor | None = None
    ga: torch.Tensor | None = None


def run_pass(ctx: Context, need_input: bool, need_layer: bool, need_grad: bool) -> Pass:
    """Run one pass on ``ctx.x`` computing only what is asked."""
    store = None
    handle = None
    if need_layer:
        store = ctx.capture()
        handle = ctx.handles[-1]
    try:
        if need_grad and (need_input or need_layer):
            logits, gx, ga = ctx.forward_grad(ctx.x, store, wrt_input=need_input)
        else:
            with torch.no_grad():
                logits = ctx.forward(ctx.x)
            ctx.targets_from(logits)
            gx = ga = None
    finally:
        if handle is not None:
            handle.remove()
    act = store["act"].detach() if store is not None else None
    if ga is not None:
        ga = ga.detach()
    return Pass(logits=logits.detach(), gx=None if gx is None else gx.detach(), act=act, ga=ga)


# ---- base class ------------------------------------------------------------------------------------

class GradientMethod(Explainer):
    """Per-channel input attribution, optional noise tunnel, channel reduction.

    Subclasses implement :meth:`channel_attr`; single-pass ones also :meth:`from_pass`.
    """

    signed = True
    default_reduce = "sum"
    shareable = False  # computable from the shared plain forward+backward pass
    needs_input_grad = True
    needs_grad = True
    channels_last_passes = True
    option_names: tuple[str, ...] = ()  # method-specific options passed to channel_attr

    def __init__(self) -> None:
        self._gen: torch.Generator | None = None
        self._gen_key: tuple[Any, ...] | None = None

    # subclass API ----------------------------------------------------------------------------
    def channel_attr(self, ctx: Context, x: torch.Tensor, t: torch.Tensor | None, rows: int,
                     **opts: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Attribution ``[R, C, H, W]`` for ``x`` ``[R, C, H, W]`` and targets ``t`` ``[R]``.

        ``t=None`` means "the clean input of the chunk": resolve targets from its logits.
        """
        raise NotImplementedError

    def passes_per_image(self, **opts: Any) -> int:
        return 1

    # the contract ----------------------------------------------------------------------------
    def attribute(self, ctx: Context, *, reduce: str | None = None, nt_samples: int = 0,
                  nt_stdev: float = 0.15, nt_type: str = "smoothgrad", seed: int | None = 0,
                  batch_size: int | None = None, **opts: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        self._check_opts(opts)
        how = reduce or self.default_reduce
        reduce_channels(ctx.x[:1, :, :1, :1], how)  # validate early
        # the weight rule (one probe forward per model) only where a call runs many rows per image
        many = bool(nt_samples) or self.passes_per_image(**opts) > 1
        rows = row_budget(ctx.x, batch_size, ctx.model if many else None)
        if nt_samples:
            a = self.noise_tunnel(ctx, rows, nt_samples, nt_stdev, nt_type, seed, **opts)
            extra: dict[str, Any] = {"nt_samples": nt_samples, "nt_stdev": nt_stdev, "nt_type": nt_type}
        else:
            a, extra = self.channel_attr(ctx, ctx.x, None, rows, **opts)
        return reduce_channels(a, how), extra

    def from_pass(self, ctx: Context, p: Pass, reduce: str | None = None
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def accepted_options(self) -> tuple[str, ...]:
        return ("reduce", "nt_samples", "nt_stdev", "nt_type", "seed", "batch_size", *self.option_names)

    def _check_opts(self, opts: dict[str, Any]) -> None:
        bad = [k for k in opts if k not in self.option_names]
        if bad:
            raise CnnlensTypeError(f"{self.name} got unknown option(s) {', '.join(bad)}; valid options: "
                            f"{', '.join(self.accepted_options())}")

    def generator(self, seed: int | None, device: torch.device) -> torch.Generator | None:
        """One generator per explain call (kept across chunks), so chunks get different noise."""
        if seed is None:
            return None
        key = (seed, str(device))
        if self._gen is None or self._gen_key != key:
            self._gen = torch.Generator(device=device).manual_seed(int(seed))
            self._gen_key = key
        return self._gen

    def noise_tunnel(self, ctx: Context, rows: int, n: int, stdev: float, kind: str, seed: int | None,
                     **opts: Any) -> torch.Tensor:
        """SmoothGrad / SmoothGrad² / VarGrad over ``n`` noisy copies ``x + N(0, sigma^2)``,

        ``sigma = stdev * (max(x) - min(x))`` per image (Smilkov et al. 2017). ``[B, C, H, W]``.
        """
        if not isinstance(n, int) or n < 1:
            raise CnnlensError(f"nt_samples must be a positive int; got {n!r}")
        if not (isinstance(stdev, int | float) and stdev >= 0):
            raise CnnlensError(f"nt_stdev must be >= 0 (a fraction of each image's value range); got {stdev!r}")
        if kind not in NT_TYPES:
            raise CnnlensError(f"nt_type must be one of {', '.join(NT_TYPES)}; got {kind!r}")
        x = ctx.x
        b = x.shape[0]
        t = ctx.pass_targets()
        sigma = stdev * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
        gen = self.generator(seed, x.device)
        per = max(1, rows // (b * max(1, self.passes_per_image(**opts))))
        s1 = torch.zeros_like(x)
        s2 = torch.zeros_like(x) if kind != "smoothgrad" else None
        for i in range(0, n, per):
            k = min(per, n - i)
            noise = torch.randn((k, *x.shape), generator=gen, device=x.device, dtype=x.dtype)
            xs = (x.unsqueeze(0) + noise * sigma.view(1, b, 1, 1, 1)).reshape(k * b, *x.shape[1:])
            a, _ = self.channel_attr(ctx, xs, t.repeat(k), rows, **opts)
            a = a.view(k, *x.shape)
            s1 += a.sum(0)
            if s2 is not None:
                s2 += (a * a).sum(0)
        mean = s1 / n
        if kind == "smoothgrad":
            return mean
        if kind == "smoothgrad_sq":
            return s2 / n  # type: ignore[operator]
        return s2 / n - mean * mean  # type: ignore[operator]


def plain_grad(ctx: Context, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    _, gx, _ = ctx.forward_grad(x, targets=t)
    return gx.detach()  # type: ignore[union-attr]


# ---- methods ------------------------------------------------------------------------------------------

@register_method
class Saliency(GradientMethod):
    """Vanilla gradient (Simonyan et al. 2014): ``max_c |d y_t / d x_c|``.

    The reports' saliency map: absolute gradient of the target logit, max over channels.
    ``abs=False`` keeps the sign per channel (then reduce with ``"abs_max"`` or ``"sum"``).
    """

    name = "saliency"
    description = "vanilla gradient |dy/dx|, max over channels (Simonyan et al. 2014)"
    signed = False
    default_reduce = "abs_max"
    shareable = True
    option_names = ("abs",)

    def channel_attr(self, ctx, x, t, rows, abs: bool = True):  # type: ignore[no-untyped-def,override]
        g = plain_grad(ctx, x, t)
        return (g.abs() if abs else g), {}

    def from_pass(self, ctx: Context, p: Pass, reduce: str | None = None, abs: bool = True
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        g: torch.Tensor = p.gx  # type: ignore[assignment]
        return reduce_channels(g.abs() if abs else g, reduce or self.default_reduce), {}


@register_method
class SmoothGrad(Saliency):
    """SmoothGrad (Smilkov et al. 2017): ``mean_n |d y_t / d x|(x + eps_n)``, ``eps_n ~ N(0, sigma^2)``,

    ``sigma = stdev * (max x - min x)``; then max over channels. Options ``n_samples`` (25),
    ``stdev`` (0.15), ``nt_type`` (smoothgrad | smoothgrad_sq | vargrad), ``seed``, ``abs``.
    """

    name = "smoothgrad"
    description = "SmoothGrad: saliency averaged over noisy copies of the input (Smilkov et al. 2017)"
    shareable = False

    def accepted_options(self) -> tuple[str, ...]:
        return ("n_samples", "stdev", "nt_type", "seed", "reduce", "batch_size", "abs")

    def attribute(self, ctx: Context, *, n_samples: int = 25, stdev: float = 0.15,  # type: ignore[override]
                  nt_type: str = "smoothgrad", seed: int | None = 0, reduce: str | None = None,
                  batch_size: int | None = None, abs: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
        return super().attribute(ctx, reduce=reduce, nt_samples=n_samples, nt_stdev=stdev, nt_type=nt_type,
                                 seed=seed, batch_size=batch_size, abs=abs)


@register_method
class GradientXInput(GradientMethod):
    """Gradient x input (Shrikumar et al. 2016): ``sum_c x_c * d y_t / d x_c`` (signed)."""

    name = "gradient_x_input"
    description = "gradient x input, summed over channels (Shrikumar et al. 2016)"
    shareable = True

    def channel_attr(self, ctx, x, t, rows):  # type: ignore[no-untyped-def,override]
        return plain_grad(ctx, x, t) * x, {}

    def from_pass(self, ctx: Context, p: Pass, reduce: str | None = None
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        return reduce_channels(p.gx * ctx.x, reduce or self.default_reduce), {}  # type: ignore[operator]


# ---- Integrated Gradients --------------------------------------------------------------------------

IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def quadrature_rule(method: str, steps: int) -> tuple[list[float], list[float]]:
    """``(alphas, weights)`` on [0, 1] for ``steps`` points; Captum's rules (its trapezoid corrected)."""
    if method not in IG_METHODS:
        raise CnnlensError(f"quadrature must be one of {', '.join(IG_METHODS)}; got {method!r}")
    if not isinstance(steps, int) or steps < (1 if method == "gausslegendre" else 2):
        raise CnnlensError(f"steps must be an int >= 2 (>= 1 for gausslegendre); got {steps!r}")
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (nodes + 1)).tolist(), (0.5 * w).tolist()
    n = steps
    weights = [1 / n] * n
    kind = method.split("_")[1]
    if kind == "trapezoid":
        # points 0, 1/(n-1), ..., 1: spacing 1/(n-1), halved at both ends. (Captum uses 1/n here, so
        # its weights sum to (n-1)/n and its trapezoid attributions are ours times (n-1)/n.)
        weights = [1 / (n - 1)] * n
        weights[0] /= 2
        weights[-1] /= 2
        alphas = torch.linspace(0, 1, n).tolist()
    elif kind == "left":
        alphas = torch.linspace(0, 1 - 1 / n, n).tolist()
    elif kind == "middle":
        alphas = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n).tolist()
    else:
        alphas = torch.linspace(1 / n, 1, n).tolist()
    return alphas, weights


def make_baseline(x: torch.Tensor, baseline: FillSpec, blur_sigma: float | None,
                  stats: tuple[Sequence[float], Sequence[float]] | None = None) -> torch.Tensor:
    """IG's baseline for the chunk ``x`` ``[B,C,H,W]``: a :class:`~cnnlens.fill.Fill` name
    (``dataset_mean``, ``black`` with ``stats``, ``image_mean``, ``blur`` with ``blur_sigma``, default
    ``max(H, W) / 10`` pixels), a number, or a tensor broadcastable to ``x`` (``[C,H,W]``,
    ``[C,1,1]``, ``[1,C,H,W]``, or ``[B,C,H,W]``: ``explain`` slices a per-image ``[N,C,H,W]``
    baseline to each chunk). The older ``"zeros"`` and ``"mean"`` are ``dataset_mean``."""
    return fill_pixels(x, baseline, stats=stats, blur_sigma=blur_sigma, aliases=IG_ALIASES,
                       where="integrated_gradients", arg="baseline")


@register_method
class IntegratedGradients(GradientMethod):
    """Integrated Gradients (Sundararajan et al. 2017):

    ``IG_c(x) = (x_c - x'_c) * int_0^1 d y_t/d x_c (x' + a (x - x')) da``, approximated by a
    quadrature (option ``quadrature``: Gauss-Legendre like Captum's default, or Riemann left/right/middle/
    trapezoid) with ``steps`` points (64); map = sum over channels. Completeness says
    ``sum IG = y_t(x) - y_t(x')``; ``extras['completeness_gap']`` ``[B]`` is
    ``|sum IG - (y_t(x) - y_t(x'))| / |y_t(x) - y_t(x')|`` and ``extras['delta']`` the difference.
    Baselines (option ``baseline``, :mod:`cnnlens.fill`): ``"dataset_mean"`` (default: zeros in
    normalized space), ``"black"`` (needs ``mean``/``std``, the normalization), ``"image_mean"``,
    ``"blur"`` (``blur_sigma``), a number or a tensor; the older ``"zeros"``/``"mean"`` are ``dataset_mean``.
    """

    name = "integrated_gradients"
    description = "Integrated Gradients from a baseline, with completeness gap (Sundararajan et al. 2017)"
    option_names = ("baseline", "steps", "quadrature", "blur_sigma", "mean", "std")

    def passes_per_image(self, steps: int = 64, **_: Any) -> int:
        return steps

    def channel_attr(self, ctx, x, t, rows, baseline=Fill.DATASET_MEAN, steps=64,  # type: ignore[override]
                     quadrature="gausslegendre", blur_sigma=None, mean=None, std=None):
        if t is None:
            t = ctx.given_targets()  # given classes and no probs wanted: no clean pass, so no delta
        clean = t is None
        alphas, weights = quadrature_rule(quadrature, steps)
        base = make_baseline(x, baseline, blur_sigma, None if mean is None or std is None else (mean, std))
        fb = None
        if clean:
            if ctx.logits is None:  # the clean and the baseline logits in one no-grad pass, not two
                both = ctx.forward_clean(torch.cat([x, base.expand_as(x)]))
                ctx.targets_from(both[:x.shape[0]])
                fb = both[x.shape[0]:]
            t = ctx.targets
        diff = x - base
        b = x.shape[0]
        total = torch.zeros_like(x)
        per = max(1, rows // b)
        al = torch.tensor(alphas, device=x.device, dtype=x.dtype)
        wt = torch.tensor(weights, device=x.device, dtype=x.dtype)
        for i in range(0, steps, per):
            a = al[i:i + per]
            k = a.numel()
            xs = (base.unsqueeze(0) + a.view(k, 1, 1, 1, 1) * diff.unsqueeze(0)).reshape(k * b, *x.shape[1:])
            g = plain_grad(ctx, xs, t.repeat(k)).view(k, *x.shape)
            total += (g * wt[i:i + k].view(k, 1, 1, 1, 1)).sum(0)
        attr = total * diff
        if not clean:
            return attr, {}
        if fb is None:
            fb = ctx.forward_clean(base.expand_as(x))
        fb = fb.gather(1, t.view(-1, 1)).squeeze(1)
        fx = ctx.logits.gather(1, t.view(-1, 1)).squeeze(1)  # type: ignore[union-attr]
        delta = fx - fb
        err = (attr.flatten(1).sum(1) - delta).abs()
        gap = torch.nan_to_num(err / delta.abs(), nan=0.0)
        return attr, {"completeness_gap": gap, "delta": delta, "steps": steps, "quadrature": quadrature,
                      "baseline": _fill_name(baseline)}


def _fill_name(baseline: FillSpec) -> str:
    """The baseline's name for the extras: its fill name (old spellings resolved), else its kind."""
    if isinstance(baseline, str):
        return str(resolve_fill(baseline, IG_ALIASES, "integrated_gradients"))
    return "tensor" if isinstance(baseline, torch.Tensor) else "number"


# ---- modified-ReLU methods ------------------------------------------------------------------------------

def rule_grad(ctx: Context, x: torch.Tensor, t: torch.Tensor | None, rule: str, force: bool
              ) -> tuple[torch.Tensor, dict[str, int]]:
    """Input gradient with the activations' backward replaced by ``rule`` (see :mod:`.guided`)."""
    with activation_rule(ctx.model, rule, ctx.handles, force=force) as info:
        xg = x.detach().requires_grad_(True)
        logits = ctx.forward(xg)
    tt = t if t is not None else ctx.targets_from(logits)
    (g,) = torch.autograd.grad(logits.gather(1, tt.view(-1, 1)).sum(), xg)
    return g.detach(), info["unguided"]


@register_method
class GuidedBackprop(GradientMethod):
    """Guided backpropagation (Springenberg et al. 2015): the gradient with every ReLU's backward

    replaced by ``max(0, 1[x>0] * g)``; summed over channels. Needs activations as modules (raises
    on ``F.relu`` in forward unless ``force=True``).
    """

    name = "guided_backprop"
    description = "guided backpropagation: only positive gradients pass ReLUs (Springenberg et al. 2015)"
    option_names = ("force",)
    rule = "guided"

    def channel_attr(self, ctx, x, t, rows, force=False):  # type: ignore[no-untyped-def,override]
        g, unguided = rule_grad(ctx, x, t, self.rule, force)
        return g, ({"unguided": unguided} if unguided else {})


@register_method
class Deconvnet(GuidedBackprop):
    """Deconvnet (Zeiler & Fergus 2014): the gradient with every ReLU's backward replaced by

    ``max(0, g)`` (the forward mask is ignored); summed over channels.
    """

    name = "deconvnet"
    description = "deconvnet: ReLUs pass max(0, output gradient) backwards (Zeiler & Fergus 2014)"
    rule = "deconvnet"
