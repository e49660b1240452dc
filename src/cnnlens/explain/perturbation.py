"""Perturbation methods: LIME, KernelSHAP, occlusion and RISE, batched on the model's device.

They share one machinery: a binary matrix says which parts of the image are kept in each perturbed
sample (superpixels for LIME/KernelSHAP, a window for occlusion, a smooth random mask for RISE); the
perturbed images of one chunk are built at once as ``base + mask * (x - base)`` (for superpixels,
``mask = Z @ onehot(segments)``, applied with ``torch.lerp`` so kept pixels are bit-exact copies of
``x``),
scored in batched forward passes without gradients, and reduced with a few small matrix operations.

Common options:
    n_samples: number of perturbed images (LIME, KernelSHAP, RISE).
    seed: every random draw comes from ``torch.Generator().manual_seed(seed)`` on the CPU, so the
        same seed gives the same samples on every device; on the CPU the same map, bit for bit.
        Each image of a batch is seeded alike: its result does not depend on its batch position.
    batch_size: perturbed images per forward pass; ``None`` picks :func:`auto_batch_size`.
    precision: ``"float32"`` or ``"bfloat16"`` (forward passes on a BN-folded, channels-last copy of the
        model, in bf16 with float32 ``Linear`` layers; the regression stays in float64).
    output: ``"prob"`` (softmax probability of the target, what ``lime`` explains) or ``"logit"``.

Memory: besides the per-sample coalition matrix (samples x superpixels), nothing grows with
samples x pixels beyond one chunk of ``batch_size`` images.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import weakref
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import check_choice
from . import inference
from .core import Context, Explainer, model_device, pow2_rows, register_method
from .segmentation import segment, to_unit_range
from ..errors import CnnlensError, CnnlensTypeError

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "bfloat16")
OUTPUTS = ("prob", "logit")
SAMPLINGS = ("paired", "iid", "sobol")
ONEHOT_LIMIT = 1 << 24  # coalition_scores: largest one-hot superpixel matrix (values) before a gather
MIN_SEGMENTS = 4  # fewer superpixels than this from scikit-image -> a regular grid (logged)


# ---- shared machinery ----------------------------------------------------------------------------

def auto_batch_size(shape: Sequence[int], device: torch.device | str = "cpu") -> int:
    """Perturbed images per forward pass for inputs of ``shape = (C, H, W)``.

    On the CPU, small chunks keep activations in cache and beat big ones (see docs/benchmarks.md):
    a power of two near 2**20 input values per chunk, between 8 and 64. On a GPU, up to 512 images
    and 2**25 input values per chunk.
    """
    numel = math.prod(int(s) for s in shape)
    if torch.device(device).type == "cpu":
        return pow2_rows(numel, 1 << 20, 8, 64)
    return pow2_rows(numel, 1 << 25, 8, 512)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` in an ``nn.Sequential``
    into that convolution, in place (use it on a copy); the BatchNorm becomes an ``Identity``.

    In eval mode BN is the affine map ``y = g (z - mu) / sqrt(var + eps) + b``, so
    ``BN(conv(x))`` is one convolution with weights ``W g / sqrt(var + eps)`` and bias
    ``(c - mu) g / sqrt(var + eps) + b``: the same function up to float rounding, one pass over the
    activations fewer (0.75x the forward time of the compact CNN on the CPU). Only pairs inside a
    ``Sequential`` are folded (there, the conv's output goes to the BN and nowhere else); modules with
    hooks, a BN in training mode or without running statistics are left alone. Returns the number
    of pairs folded.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    n = 0
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and not conv.training
                    and not bn.training and bn.running_mean is not None and bn.running_var is not None
                    and bn.num_features == conv.out_channels
                    and not any(mod._forward_hooks or mod._forward_pre_hooks for mod in (conv, bn))):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
                n += 1
    return n


class Scorer:
    """Target scores of perturbed images: batched forward passes, no gradient, chosen precision.

    The passes run on a copy of the model (the caller's model is never converted) with its
    BatchNorms folded into the convolutions before them (:func:`fold_batchnorm`) and in the
    channels-last layout: on the CPU, oneDNN's channels-last convolutions ran the compact CNN
    1.6-2.5x faster than the default layout, in float32 as in bfloat16 (docs/benchmarks.md).
    ``precision="bfloat16"`` runs a bf16 copy whose first convolution and ``Linear`` layers stay
    float32 (:func:`_bfloat16_copy`), or ``torch.autocast`` when the model's own code mixes dtypes and the
    bf16 copy fails (:func:`_float32_forward` keeps the head float32 there); logits come back as
    float32. On the CPU the copy's convolutions, ReLUs and 2x2 max-pools then run as fused oneDNN
    kernels (:mod:`.inference`; ``fuse=False`` keeps eager PyTorch), checked once against the
    unfused copy on the first chunk.
    """

    def __init__(self, model: nn.Module, precision: str = "float32", output: str = "prob",
                 channels_last: bool = True, fuse: bool = True) -> None:
        check_choice("precision", precision, PRECISIONS)
        check_choice("output", output, OUTPUTS)
        self.device = model_device(model)
        self.precision = precision
        self.output = output
        self.calls = 0
        self._source = model
        self._fuse = fuse
        self._own_copy = channels_last or precision == "bfloat16"  # else: score the caller's model as is
        known = _LAYOUT_OK.get(model)
        # the first 4-d chunk tries the channels-last layout; a model whose forward cannot take it
        # (``x.view(B, -1)`` after a conv, ...) is rebuilt in the default layout (remembered per model)
        self._layout_pending = channels_last and known is None
        self._build(channels_last and known is not False)

    bf16_mode = "autocast"  # "weights": a bf16 copy of the model; "autocast": torch.autocast

    def _build(self, channels_last: bool) -> None:
        """The scoring copy of the caller's model: folded, in the scoring layout, bf16 if asked."""
        model = self._source
        self.model = model
        self.channels_last = False
        self.folded = 0
        self.fusion: inference.Fusion | None = None
        self._fuse_pending = False
        self.bf16_mode = "autocast"
        if self._own_copy:
            try:
                self.model = copy.deepcopy(model)
            except Exception as e:  # a model that cannot be copied still runs, in its own layout
                log.info("could not copy the model (%s); running it as is, in its own layout", e)
                self._layout_pending = False
            else:
                self.channels_last = channels_last
                self.folded = self._prepare(self.model)
                if self.precision == "bfloat16":
                    # bf16 weights (first conv and Linear layers kept in float32); autocast only if
                    # that model fails (then a float32 copy is made again from the caller's model)
                    self.model = _bfloat16_copy(self.model, copy_first=False)
                    self.bf16_mode = "weights"
                # the fused kernels write channels-last outputs: only for a copy in that layout
                self._fuse_pending = self._fuse and channels_last and inference.available(self.device)

    def _prepare(self, own: nn.Module) -> int:
        """Fold ``own`` (a copy) in place and put it in the scoring layout; returns the pairs folded."""
        folded = fold_batchnorm(own)
        if self.channels_last:
            own.to(memory_format=torch.channels_last)
        return folded

    def _fused_forward(self, xb: torch.Tensor) -> torch.Tensor:
        """The first chunk: run it unfused while :func:`.inference.fuse_for_inference` learns the
        input sizes, fuse, and keep the fused copy only if it reproduces two of its images."""
        self._fuse_pending = False
        fusion = inference.fuse_for_inference(self.model, xb)
        want = fusion.reference
        if not any(fusion.counts.values()):
            return want
        try:
            with torch.no_grad():
                got = self.model(xb[:2]).float()
            ref = want[:2].float()
            tol = (2e-2 if self.precision == "bfloat16" else 1e-4) * (1.0 + float(ref.abs().max()))
            ok = got.shape == ref.shape and bool(((got - ref).abs() <= tol).all())
        except Exception as e:  # noqa: BLE001 - any failure of the fused copy means: do not use it
            log.info("the fused CPU forward failed (%s: %s); running eager PyTorch", type(e).__name__, e)
            ok = False
        if ok:
            self.fusion = fusion
        else:
            fusion.undo()
            log.info("the fused CPU forward did not reproduce the model; running eager PyTorch")
        return want

    def _use_autocast(self, err: Exception) -> None:
        log.info("the bfloat16 copy of the model failed (%s: %s); using torch.autocast instead",
                 type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        self.model = copy.deepcopy(self._source)
        self._prepare(self.model)
        for m in self.model.modules():
            if isinstance(m, nn.Linear):
                _float32_forward(m, self.device.type)
        self.bf16_mode = "autocast"

    def __call__(self, xb: torch.Tensor, target: int) -> torch.Tensor:
        """``[b,C,H,W]`` -> ``float32 [b]`` target score."""
        self.calls += xb.shape[0]
        with torch.no_grad():
            if self._layout_pending and xb.ndim == 4:
                logits = self._first_forward(xb)
            else:
                logits = self._forward(xb)
            logits = logits.float()
            if self.output == "prob":
                return logits.softmax(1)[:, target]
            return logits[:, target].clone()

    def _first_forward(self, xb: torch.Tensor) -> torch.Tensor:
        """The first chunk in the channels-last layout; if the model fails on it and runs in the
        default layout, the copy is rebuilt in the default layout (and the model remembered)."""
        self._layout_pending = False
        try:
            logits = self._forward(xb)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - retried below in the default layout
            cl_error = e
        else:
            _LAYOUT_OK[self._source] = True
            return logits
        self._build(channels_last=False)
        logits = self._forward(xb)  # fails too: a real error, not the layout's (raised as is)
        _LAYOUT_OK[self._source] = False
        log.info("the model fails on channels-last inputs (%s: %s); scoring in the default layout",
                 type(cl_error).__name__, str(cl_error).splitlines()[0] if str(cl_error) else "")
        return logits

    def _forward(self, xb: torch.Tensor) -> torch.Tensor:
        """Logits of one chunk on the scoring copy (any dtype; no gradient)."""
        if self.channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        fuse_now = self._fuse_pending and xb.ndim == 4
        if self.precision == "bfloat16" and self.bf16_mode == "weights":
            try:  # float32 in: the copy's first conv is float32, later layers cast to bf16
                return self._fused_forward(xb) if fuse_now else self.model(xb)
            except (RuntimeError, TypeError) as e:  # a dtype the model's own code did not expect
                self._use_autocast(e)
        if self.precision == "bfloat16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self.model(xb)
        return self._fused_forward(xb) if fuse_now else self.model(xb)


#: per caller's model: whether its scoring copy runs on channels-last inputs (see Scorer._first_forward)
_LAYOUT_OK: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _bfloat16_copy(model: nn.Module, copy_first: bool = True) -> nn.Module:
    """A copy of ``model`` with bfloat16 parameters and buffers, except two ends that stay float32:

    * the first ``Conv2d`` (in module order): it takes the unrounded float32 input. Rounding the
      input to bf16 alone moved the LIME weights of a trained compact CNN by 0.7% of the largest
      (median over 20 faces) and a bf16 first convolution (BatchNorm folded in) by 3.8%; with both in
      float32 it was 0.4%, and the top-5 superpixels matched float32 on 19 of 20 faces instead of 14;
    * its ``Linear`` layers, so the logits are not rounded to 8 bits (:func:`_float32_forward`).

    Every other module with parameters casts its floating inputs to bf16 (:func:`_cast_inputs`), so
    the input goes in as float32 and each layer gets the dtype of its weights. Running the weights in
    bf16 directly saved the per-pass weight casts of ``torch.autocast`` (0.25x vs 0.30x of the float32
    forward of the compact CNN on the CPU). ``copy_first=False`` converts ``model`` itself (a copy
    the caller owns)."""
    bf = copy.deepcopy(model) if copy_first else model
    device_type = model_device(bf).type
    first = next((m for m in bf.modules() if isinstance(m, nn.Conv2d)), None)

    def to_bf16(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.bfloat16) if t.is_floating_point() else t

    for m in bf.modules():
        if isinstance(m, nn.Linear) or m is first:  # the float32 weights themselves, never rounded
            _float32_forward(m.float(), device_type)
        else:
            m._apply(to_bf16, recurse=False)
            if next(m.parameters(recurse=False), None) is not None:
                _cast_inputs(m, torch.bfloat16)
    return bf


def _float32_forward(module: nn.Module, device_type: str) -> None:
    """Run ``module`` (a copy's ``Linear`` or first convolution) outside autocast, in float32.

    Under bf16 autocast a classifier head would round its logits to 8 significant bits (a step of
    0.016 at a logit of 3), which swamps LIME weights of 1e-3; the head is cheap next to the
    convolutions, so it stays in float32.
    """
    _cast_inputs(module, torch.float32, no_autocast=device_type)


def _cast_inputs(module: nn.Module, dtype: torch.dtype, no_autocast: str | None = None) -> None:
    """Make ``module`` (a copy's layer) cast its floating tensor arguments to ``dtype``, and run
    outside autocast on device type ``no_autocast`` when given. The wrapper is marked with
    ``cnnlens_cast = dtype``, so :mod:`.inference` may replace the layer by one that casts alike."""
    forward = module.forward

    def cast_forward(*args: Any, **kwargs: Any) -> Any:
        args = tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        if no_autocast is None:
            return forward(*args, **kwargs)
        with torch.autocast(no_autocast, enabled=False):
            return forward(*args, **kwargs)

    cast_forward.cnnlens_cast = dtype  # type: ignore[attr-defined]
    module.forward = cast_forward  # type: ignore[method-assign]


def make_baseline(x: torch.Tensor, spec: str | float | torch.Tensor,
                  segments: torch.Tensor | None = None) -> torch.Tensor:
    """What hidden pixels become, ``[C,H,W]`` like ``x`` (normalized space).

    ``"mean"``: each superpixel's own mean colour (lime's default ``hide_color=None``; the image's
    mean colour without segments); ``"zero"`` or ``0``: the dataset's mean colour (0 after
    normalization); ``"blur"``: a Gaussian blur (sigma = size/16); a number: that value everywhere;
    a tensor broadcastable to ``[C,H,W]``.
    """
    c, h, w = x.shape
    if isinstance(spec, torch.Tensor):
        try:
            return spec.to(x.device, x.dtype).expand(c, h, w).clone()
        except RuntimeError as e:
            raise CnnlensError(f"baseline tensor of shape {tuple(spec.shape)} does not broadcast to the "
                             f"image {(c, h, w)}") from e
    if isinstance(spec, bool) or not isinstance(spec, str | int | float):
        raise CnnlensTypeError(f"baseline must be 'mean', 'zero', 'blur', a number or a tensor; got {spec!r}")
    if isinstance(spec, int | float):
        return torch.full_like(x, float(spec))
    check_choice("baseline", spec, ("mean", "zero", "blur"))
    if spec == "zero":
        return torch.zeros_like(x)
    if spec == "blur":
        return gaussian_blur(x, sigma=max(h, w) / 16)
    if segments is None:
        return x.mean((1, 2), keepdim=True).expand_as(x).clone()
    seg = segments.to(x.device).flatten()
    m = int(seg.max()) + 1
    sums = torch.zeros(c, m, dtype=torch.float64, device=x.device).index_add_(1, seg, x.reshape(c, -1).double())
    counts = torch.bincount(seg, minlength=m).clamp_min(1)
    return (sums / counts).to(x.dtype)[:, seg].reshape(c, h, w)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[C,H,W]`` with reflect padding."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[0]
    y = x[None]
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect" if x.shape[-1] > r else "replicate"),
                 k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect" if x.shape[-2] > r else "replicate"),
                 k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def coalition_scores(scorer: Scorer, x: torch.Tensor, base: torch.Tensor, segments: torch.Tensor,
                     z: torch.Tensor, target: int, batch_size: int) -> torch.Tensor:
    """Scores of the images that keep superpixel ``j`` where ``z[s, j]`` and show ``base`` elsewhere.

    A chunk's keep masks are ``Z @ onehot(segments)`` (exact 0/1; a gather of ``Z`` when the one-hot
    matrix would pass 2**24 values) and its images ``torch.lerp(base, x, mask)``, exact copies of
    ``x`` or ``base`` for 0/1 weights. On the CPU this built a chunk 4x faster than a gather of the
    boolean mask and ``torch.where``.

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


def _options(local_vars: dict[str, Any]) -> dict[str, Any]:
    """A method's keyword options from its ``locals()`` (without ``self`` and ``ctx``)."""
    return {k: v for k, v in local_vars.items() if k not in ("self", "ctx")}


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise CnnlensError(f"{name} must be an integer >= {lo}; got {value!r}")
    return value


def _batch(batch_size: int | None, x: torch.Tensor) -> int:
    if batch_size is None:
        return auto_batch_size(x.shape[1:], x.device)
    return _check_int("batch_size", batch_size, 1)


class _Perturbation(Explainer):
    """The perturbation family: options are the keyword-only parameters of ``attribute``."""

    def accepted_options(self) -> tuple[str, ...]:
        params = inspect.signature(self.attribute).parameters.values()
        return tuple(p.name for p in params if p.kind == p.KEYWORD_ONLY)


class _SuperpixelMethod(_Perturbation):
    """Shared by LIME and KernelSHAP: segmentation, baseline, coalition scoring, pixel maps."""

    signed = True
    cost = 1000

    def _segments(self, ctx: Context, segments: torch.Tensor | None, segmentation: str,
                  n_segments: int | None, segment_options: dict[str, Any] | None,
                  mean: Sequence[float] | None, std: Sequence[float] | None, seed: int) -> list[torch.Tensor]:
        b, _, h, w = ctx.x.shape
        if segments is not None:
            seg = torch.as_tensor(segments).long()
            if tuple(seg.shape) == (h, w):
                seg = seg.expand(b, h, w)
            if tuple(seg.shape) != (b, h, w):
                raise CnnlensError(f"segments must be [H,W] or [B,H,W] = {(b, h, w)}; got {tuple(seg.shape)}")
            out = []
            for s in seg:
                _, inv = torch.unique(s, return_inverse=True)  # labels 0..M-1, each used
                out.append(inv.reshape(h, w).cpu())
            return out
        unit = to_unit_range(ctx.x, mean, std)
        out = []
        for i, u in enumerate(unit):
            seg = segment(u, segmentation, n_segments=n_segments, seed=seed, **(segment_options or {}))
            m = int(seg.max()) + 1
            if m < MIN_SEGMENTS <= h * w // 4:
                # e.g. SLIC on noise merges everything into one region: an explanation over 1-3 parts
                # says nothing, so fall back to a grid and say so
                log.warning("%s: %s segmentation of image %d gave %d superpixel(s); using a regular grid "
                            "instead (pass segmentation='grid' or other segment_options to choose)",
                            self.name, segmentation, i, m)
                seg = segment(u, "grid", n_segments=n_segments)
                self._fallbacks.append(i)
            out.append(seg)
        return out

    def _run(self, ctx: Context, options: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        n_samples = _check_int("n_samples", options.pop("n_samples"), 2)
        seed = _check_int("seed", options.pop("seed"), 0)
        bs = _batch(options.pop("batch_size"), ctx.x)
        scorer = Scorer(ctx.model, options.pop("precision"), options.pop("output"))
        baseline = options.pop("baseline")
        check_choice("sampling", options["sampling"], SAMPLINGS)
        self._fallbacks: list[int] = []
        segs = self._segments(ctx, options.pop("segments"), options.pop("segmentation"),
                              options.pop("n_segments"), options.pop("segment_options"),
                              options.pop("mean"), options.pop("std"), seed)
        targets = ctx.targets
        maps, per_image = [], []
        for i, seg in enumerate(segs):
            x = ctx.x[i]
            base = make_baseline(x, baseline, seg)
            weights, extra = self.fit(scorer, x, base, seg, int(targets[i]), n_samples, seed, bs, options)
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
            n_samples: int, seed: int, batch_size: int, options: dict[str, Any]
            ) -> tuple[torch.Tensor, dict[str, Any]]:
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
    Options beyond the common ones: ``segmentation`` (``slic``/``quickshift``/``felzenszwalb``/``grid``),
    ``n_segments``, ``segment_options`` (dict for scikit-image), ``segments`` (your own ``[H,W]`` or
    ``[B,H,W]`` labels), ``mean``/``std`` (dataset statistics, to segment the de-normalized image),
    ``baseline`` (``"mean"`` per superpixel, default), ``kernel_width``, ``alpha``, ``sampling``.
    """

    name = "lime"
    description = "LIME: weighted ridge on random superpixel coalitions (Ribeiro et al. 2016)"

    def attribute(self, ctx: Context, *, n_samples: int = 1000, seed: int = 0, batch_size: int | None = None,
                  precision: str = "float32", output: str = "prob", segmentation: str = "slic",
                  n_segments: int | None = None, segment_options: dict[str, Any] | None = None,
                  segments: torch.Tensor | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, baseline: str | float | torch.Tensor = "mean",
                  kernel_width: float = 0.25, alpha: float = 1.0, sampling: str = "paired"
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        if not kernel_width > 0:
            raise CnnlensError(f"kernel_width must be > 0; got {kernel_width}")
        if not alpha >= 0:
            raise CnnlensError(f"alpha must be >= 0; got {alpha}")
        return self._run(ctx, _options(locals()))

    def fit(self, scorer: Scorer, x: torch.Tensor, base: torch.Tensor, seg: torch.Tensor, target: int,
            n_samples: int, seed: int, batch_size: int, options: dict[str, Any]
            ) -> tuple[torch.Tensor, dict[str, Any]]:
        m = int(seg.max()) + 1
        z = lime_coalitions(n_samples, m, seed, options["sampling"])
        y = coalition_scores(scorer, x, base, seg, z, target, batch_size)
        zd = z.to(x.device)
        w = lime_kernel(zd, options["kernel_width"])
        coef, intercept, r2 = weighted_ridge(zd, y, w, options["alpha"])
        local_pred = intercept + coef.sum()
        return coef, {"intercept": float(intercept), "score": float(r2), "local_pred": float(local_pred)}


@register_method
class KernelShap(_SuperpixelMethod):
    """KernelSHAP on superpixels (Lundberg & Lee 2017): Shapley values of the superpixels.

    ``phi = argmin sum_z pi(z) (y(z) - y(0) - z.phi)^2`` subject to ``sum(phi) = y(1) - y(0)``, with
    the Shapley kernel ``pi(z) = (M-1) / (C(M,|z|) |z| (M-|z|))``. ``exact=True`` (auto when
    ``2^M <= n_samples``) enumerates every coalition and gives the exact Shapley values; otherwise
    coalitions are drawn from the kernel (paired with their complements by default; Covert & Lee
    2021) and weighted equally. Solved in closed form (:func:`constrained_shapley_fit`).

    Extras: as LIME's, with ``base_value`` (all superpixels hidden), ``full_value`` (none hidden),
    ``exact`` (bool per image).
    """

    name = "kernel_shap"
    description = "KernelSHAP: Shapley values of superpixels by kernel-weighted regression (Lundberg & Lee 2017)"

    def attribute(self, ctx: Context, *, n_samples: int = 1000, seed: int = 0, batch_size: int | None = None,
                  precision: str = "float32", output: str = "prob", segmentation: str = "slic",
                  n_segments: int | None = None, segment_options: dict[str, Any] | None = None,
                  segments: torch.Tensor | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, baseline: str | float | torch.Tensor = "mean",
                  exact: bool | None = None, sampling: str = "paired") -> tuple[torch.Tensor, dict[str, Any]]:
        return self._run(ctx, _options(locals()))

    def fit(self, scorer: Scorer, x: torch.Tensor, base: torch.Tensor, seg: torch.Tensor, target: int,
            n_samples: int, seed: int, batch_size: int, options: dict[str, Any]
            ) -> tuple[torch.Tensor, dict[str, Any]]:
        m = int(seg.max()) + 1
        ends = torch.stack([torch.ones(m, dtype=torch.bool), torch.zeros(m, dtype=torch.bool)])
        if m == 1:
            y = coalition_scores(scorer, x, base, seg, ends, target, batch_size)
            return (y[:1] - y[1:]).double(), {"base_value": float(y[1]), "full_value": float(y[0]),
                                              "exact": True}
        exact = options["exact"]
        if exact is None:
            exact = m <= 24 and 2 ** m <= n_samples
        if exact:
            z = all_coalitions(m)
            w = shapley_kernel(m, z.sum(1))
        else:
            z = shap_coalitions(max(1, n_samples - 2), m, seed, options["sampling"])
            w = torch.ones(z.shape[0], dtype=torch.float64)
        y = coalition_scores(scorer, x, base, seg, torch.cat([ends, z]), target, batch_size)
        f1, f0 = float(y[0]), float(y[1])
        phi = constrained_shapley_fit(z.to(x.device), y[2:], w.to(x.device), f0, f1)
        return phi, {"base_value": f0, "full_value": f1, "exact": bool(exact)}


@register_method
class Occlusion(_Perturbation):
    """Occlusion (Zeiler & Fergus 2014), the same numbers as ``captum.attr.Occlusion``.

    A ``window`` (all channels) slides with ``stride`` (Captum's positions: ``ceil((H - k) / s) + 1``
    per axis, the last window clipped at the border); each pixel gets the mean of
    ``y(x) - y(x with the window set to baseline)`` over the windows that cover it. The map is Captum's
    attribution summed over channels (the reduction Captum's own image visualization uses).

    Options: ``window`` (int or (h, w); default ``min(H,W)/8``, at least 2), ``stride`` (default
    window/2), ``baseline`` (default 0: the dataset mean colour), ``batch_size``, ``precision``,
    ``output``. Deterministic: there is no ``n_samples`` or ``seed``.
    """

    name = "occlusion"
    description = "occlusion: score drop when a sliding window is hidden (Zeiler & Fergus 2014; = Captum)"
    signed = True
    cost = 256

    def attribute(self, ctx: Context, *, window: int | tuple[int, int] | None = None,
                  stride: int | tuple[int, int] | None = None, baseline: str | float | torch.Tensor = 0.0,
                  batch_size: int | None = None, precision: str = "float32", output: str = "prob"
                  ) -> tuple[torch.Tensor, dict[str, Any]]:
        b, c, h, w = ctx.x.shape
        kh, kw = _pair("window", window if window is not None else max(2, round(min(h, w) / 8)))
        sh, sw = _pair("stride", stride if stride is not None else (max(1, kh // 2), max(1, kw // 2)))
        if kh > h or kw > w:
            raise CnnlensError(f"window {(kh, kw)} is larger than the image {(h, w)}; pass a smaller window=")
        bs = _batch(batch_size, ctx.x)
        scorer = Scorer(ctx.model, precision, output)
        dev = ctx.x.device
        rows = _window_masks(h, kh, sh, dev)  # [nh, H]
        cols = _window_masks(w, kw, sw, dev)  # [nw, W]
        nh, nw = rows.shape[0], cols.shape[0]
        counts = rows.sum(0)[:, None] * cols.sum(0)[None, :]
        targets = ctx.targets
        maps = []
        for i in range(b):
            x = ctx.x[i]
            base = make_baseline(x, baseline)
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
                  "target": targets.detach().cpu(), "output": output, "precision": precision}
        return torch.stack(maps), extras


def _pair(name: str, v: int | tuple[int, int]) -> tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in t):
        raise CnnlensError(f"{name} must be a positive int or a pair of them; got {v!r}")
    return int(t[0]), int(t[1])


def _window_masks(n: int, k: int, s: int, device: torch.device) -> torch.Tensor:
    """``float32 [positions, n]``: 1 where each window covers; positions at ``0, s, 2s, ...`` as Captum."""
    positions = math.ceil((n - k) / s) + 1
    start = torch.arange(positions, device=device)[:, None] * s
    t = torch.arange(n, device=device)[None, :]
    return ((t >= start) & (t < start + k)).float()


@register_method
class Rise(_Perturbation):
    """RISE (Petsiuk et al. 2018): ``S = 1/(N p) sum_i y(x_i) M_i``, ``x_i = base + M_i (x - base)``.

    Each mask ``M_i``: a ``grid x grid`` binary grid (cells kept with probability ``p``), upsampled
    bilinearly to ``(grid + 1) * cell`` (``cell = ceil(H / grid)``) and cropped to ``H x W`` at a
    random shift in ``[0, cell)``, so the masks are smooth and not aligned to the grid. Grids and
    shifts are drawn up front (``N x grid^2`` values); masks are built one chunk at a time.

    Options: ``n_samples`` (masks, default 2000), ``grid`` (default 8), ``p`` (default 0.5),
    ``baseline`` (default 0: the dataset mean colour), ``seed``, ``batch_size``, ``precision``, ``output``.
    """

    name = "rise"
    description = "RISE: score-weighted average of random smooth masks (Petsiuk et al. 2018)"
    signed = False
    cost = 2000

    def attribute(self, ctx: Context, *, n_samples: int = 2000, seed: int = 0, grid: int = 8, p: float = 0.5,
                  baseline: str | float | torch.Tensor = 0.0, batch_size: int | None = None,
                  precision: str = "float32", output: str = "prob") -> tuple[torch.Tensor, dict[str, Any]]:
        n = _check_int("n_samples", n_samples, 1)
        s = _check_int("grid", grid, 1)
        seed = _check_int("seed", seed, 0)
        if not 0 < p <= 1:
            raise CnnlensError(f"p (probability of keeping a grid cell) must be in (0, 1]; got {p}")
        b, c, h, w = ctx.x.shape
        if s > min(h, w):
            raise CnnlensError(f"grid {s} is finer than the image {(h, w)}; pass grid <= {min(h, w)}")
        bs = _batch(batch_size, ctx.x)
        scorer = Scorer(ctx.model, precision, output)
        dev = ctx.x.device
        grids, dy, dx, (ch, cw) = rise_grids(n, s, p, h, w, seed)
        targets = ctx.targets
        maps = []
        for i in range(b):
            x = ctx.x[i]
            base = make_baseline(x, baseline)
            delta = x - base
            t = int(targets[i])
            sal = torch.zeros(h * w, dtype=torch.float64, device=dev)
            for j in range(0, n, bs):
                m = rise_masks(grids[j:j + bs], dy[j:j + bs], dx[j:j + bs], (ch, cw), (h, w), dev)
                y = scorer(torch.addcmul(base, m.unsqueeze(1), delta), t)
                sal += (y.double() @ m.reshape(m.shape[0], -1).double())
            maps.append((sal / (n * p)).float().view(h, w))
        extras = {"n_masks": n, "grid": s, "p": p, "target": targets.detach().cpu(), "output": output,
                  "precision": precision}
        return torch.stack(maps), extras


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
