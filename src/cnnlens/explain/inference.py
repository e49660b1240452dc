"""Faster no-grad forward passes on the CPU for the perturbation methods' scoring copy.

Perturbation methods (LIME, KernelSHAP, occlusion, RISE) and the trust metrics spend nearly all
their time in forward passes of one model copy that nobody else sees (:class:`Scorer`). On the CPU
that copy can run oneDNN's inference kernels directly instead of eager PyTorch's:

* each ``Conv2d`` becomes :class:`PackedConv2d`: its weight is reordered once into oneDNN's blocked
  layout (eager PyTorch reorders it on every call) and, when the next module of the same
  ``nn.Sequential`` (exactly that type; past ``Identity``s, e.g. a folded BatchNorm) is a ``ReLU``,
  the ReLU runs as the convolution's post-op and that module becomes an ``Identity``;
* each 2x2, stride-2 ``MaxPool2d`` becomes :class:`MaxPool2x2`: two elementwise maxima on
  channels-last views; CPU ``max_pool2d`` always computes and writes int64 indices too.

The same oneDNN kernels compute the same sums, so the float32 result matches eager to float
rounding, in bf16 too (timings: docs/benchmarks.md, "lime"). The fused modules write channels-last
outputs, so only a channels-last copy is fused; a CPU without a kernel (oneDNN's bf16 convolutions
need AVX512) keeps the eager copy.

Only modules reached by the example forward are touched; a module with hooks, a padding other than
zeros, a dtype other than float32/bfloat16, or a model whose fused copy does not reproduce the
original on the example, keeps the eager path.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.bfloat16)


def available(device: torch.device) -> bool:
    """Whether the fused CPU path can run here: a CPU device and a PyTorch built with oneDNN."""
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


class PackedConv2d(nn.Module):
    """A ``Conv2d`` (zero padding) with its weight pre-packed for oneDNN and an optional fused ReLU.

    Inference only: the packed weight is an opaque oneDNN tensor and has no gradient.
    """

    def __init__(self, conv: nn.Conv2d, input_size: tuple[int, ...], relu: bool) -> None:
        super().__init__()
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        w = conv.weight.detach()
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(w, *self.args, input_size=list(input_size))
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.attr = "relu" if relu else "none"
        self.dtype = w.dtype  # inputs are cast to it, as the bf16 copy's layers do (perturbation.py)
        self.extra = f"{conv.in_channels}, {conv.out_channels}, kernel_size={conv.kernel_size}, relu={relu}"

    def extra_repr(self) -> str:
        return self.extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args, self.attr, [], "")


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` for a channels-last ``[N,C,H,W]`` with even ``H`` and ``W``, as two
    elementwise maxima (rows, then columns) on views of its ``[N,H,W,C]`` memory; same values,
    NaN propagating like ``max_pool2d``. Other inputs go to ``F.max_pool2d``."""
    n, c, h, w = x.shape
    if h % 2 or w % 2 or not x.is_contiguous(memory_format=torch.channels_last):
        return F.max_pool2d(x, 2)
    y = x.permute(0, 2, 3, 1).reshape(n * h // 2, 2, w * c)
    y = torch.maximum(y[:, 0], y[:, 1]).reshape(n * h // 2 * w // 2, 2, c)
    y = torch.maximum(y[:, 0], y[:, 1])
    return y.reshape(n, h // 2, w // 2, c).permute(0, 3, 1, 2)


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` without the indices: :func:`max_pool_2x2`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x) if x.ndim == 4 else F.max_pool2d(x, 2)


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or getattr(m, "_backward_hooks", None))


def _is_2x2_pool(m: nn.Module) -> bool:
    def two(v: object) -> bool:
        return v == 2 or v == (2, 2) or v == [2, 2]

    def one(v: object) -> bool:
        return v == 1 or v == (1, 1) or v == [1, 1]

    def zero(v: object) -> bool:
        return v == 0 or v == (0, 0) or v == [0, 0]

    return (type(m) is nn.MaxPool2d and two(m.kernel_size) and two(m.stride) and zero(m.padding)
            and one(m.dilation) and not m.return_indices and not _hooked(m))


def _packable(conv: nn.Module) -> bool:
    own = conv.__dict__.get("forward")  # an instance-level forward: only the bf16 copy's input casts
    if own is not None and getattr(own, "cnnlens_cast", None) != getattr(getattr(conv, "weight", None), "dtype", 0):
        return False
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and conv.weight.dtype in _DTYPES and not conv.training and not _hooked(conv))


class Fusion:
    """What :func:`fuse_for_inference` swapped, with the counts and an :meth:`undo`."""

    def __init__(self) -> None:
        self.swaps: list[tuple[nn.Module, str, nn.Module]] = []
        self.counts = {"convs": 0, "relus": 0, "pools": 0}
        self.reference: torch.Tensor | None = None  # the unfused model's output on the example

    def swap(self, parent: nn.Module, name: str, new: nn.Module, kind: str) -> None:
        self.swaps.append((parent, name, parent._modules[name]))
        parent._modules[name] = new
        self.counts[kind] += 1

    def undo(self) -> None:
        """Put every original module back."""
        for parent, name, old in reversed(self.swaps):
            parent._modules[name] = old
        self.swaps.clear()


def fuse_for_inference(model: nn.Module, example: torch.Tensor) -> Fusion:
    """Swap ``model``'s convolutions, ReLUs and 2x2 max-pools for the fused CPU modules, in place
    (on a copy you own). ``example`` is one input batch, run once (unfused) to learn each conv's
    input size. Returns the :class:`Fusion`: ``counts`` (``{"convs", "relus", "pools"}``),
    ``reference`` (that run's output) and ``undo()``.
    """
    sizes: dict[int, set[tuple[int, ...]]] = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args: sizes.setdefault(id(mod), set()).add(tuple(args[0].shape)) if args else None)
        for m in model.modules() if _packable(m)]
    fusion = Fusion()
    try:
        with torch.no_grad():
            fusion.reference = model(example)
    finally:
        for h in hooks:
            h.remove()
    try:
        _swap_all(model, sizes, fusion)
    except RuntimeError as e:  # e.g. a CPU without oneDNN's bf16 kernels: keep the eager model
        fusion.undo()
        fusion.counts = dict.fromkeys(fusion.counts, 0)
        log.info("the fused CPU forward is not available here (%s); running eager PyTorch",
                 str(e).splitlines()[0] if str(e) else type(e).__name__)
    return fusion


def _swap_all(model: nn.Module, sizes: dict[int, set[tuple[int, ...]]], fusion: Fusion) -> None:
    for parent in list(model.modules()):
        names = list(parent._modules)
        for i, name in enumerate(names):
            m = parent._modules[name]
            if m is None:
                continue
            if _packable(m) and len(sizes.get(id(m), ())) == 1:
                relu_at = None
                if type(parent) is nn.Sequential:  # a subclass may use the conv's output twice
                    j = i + 1
                    while j < len(names) and type(parent._modules[names[j]]) is nn.Identity:
                        j += 1
                    if (j < len(names) and type(parent._modules[names[j]]) is nn.ReLU
                            and not _hooked(parent._modules[names[j]])):
                        relu_at = names[j]
                fusion.swap(parent, name, PackedConv2d(m, next(iter(sizes[id(m)])), relu_at is not None), "convs")
                if relu_at is not None:
                    fusion.swap(parent, relu_at, nn.Identity(), "relus")
            elif _is_2x2_pool(m):
                fusion.swap(parent, name, MaxPool2x2(), "pools")
