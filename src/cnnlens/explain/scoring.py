"""The perturbation methods' scoring engine: target scores of many perturbed images, fast.

:class:`Scorer` runs batched no-grad forward passes on a copy of the caller's model (never the model
itself): BatchNorms folded into the convolutions before them (:func:`fold_batchnorm`), the
channels-last layout when the model takes it (probed on the first chunk, remembered per model),
an optional bf16 copy (:func:`_bfloat16_copy`) and, on the CPU, fused oneDNN kernels
(:mod:`.inference`) checked once against the unfused copy. Measurements: docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import logging
import math
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..registry import check_choice
from . import inference
from .core import pow2_rows
from ..nn import model_device

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "bfloat16")
OUTPUTS = ("prob", "logit")


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
    activations fewer. Only pairs inside a
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
    channels-last layout (faster oneDNN convolutions on the CPU; docs/benchmarks.md). A model whose
    ``forward`` cannot take channels-last activations (``x.view(B, -1)`` after a convolution) fails
    on the first chunk, which is then scored again on a copy in the default layout; the answer is
    remembered per model, so later scorers of that model start in the default layout.
    ``precision="bfloat16"`` runs a bf16 copy whose first convolution and ``Linear`` layers stay
    float32 (:func:`_bfloat16_copy`), or ``torch.autocast`` when the model's own code mixes dtypes and the
    bf16 copy fails (:func:`_float32_forward` keeps the head float32 there); logits come back as
    float32. On the CPU a channels-last copy's convolutions, ReLUs and 2x2 max-pools then run as
    fused oneDNN kernels (:mod:`.inference`; ``fuse=False`` keeps eager PyTorch), checked once
    against the unfused copy on the first chunk.
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

    * the first ``Conv2d`` (in module order): it takes the unrounded float32 input, which kept
      LIME's weights closest to float32 of the variants measured (docs/benchmarks.md, "bfloat16
      accuracy");
    * its ``Linear`` layers, so the logits are not rounded to 8 bits (:func:`_float32_forward`).

    Every other module with parameters casts its floating inputs to bf16 (:func:`_cast_inputs`), so
    the input goes in as float32 and each layer gets the dtype of its weights; bf16 weights save
    the per-pass weight casts of ``torch.autocast``. ``copy_first=False`` converts ``model`` itself (a copy
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

    Under bf16 autocast a classifier head would round its logits to 8 significant bits, coarser
    than typical LIME weights; the head is cheap next to the convolutions, so it stays in float32.
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
