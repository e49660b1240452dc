"""Pass sizes and layout by the model's weight, on the CPU.

The methods that run many copies of the input (SmoothGrad, Integrated Gradients, Score-CAM) evaluate
them in passes of :func:`~cnnlens.explain.core.pass_rows` rows. The input-size rule there (about 2^17
input values a pass) was tuned on small CNNs, whose activations are large next to their weights.
A transformer on few tokens, or a CNN whose weights sit at a coarse grid, uses each weight only a
dozen times per image: there a pass of 8 rows streams the weights from memory for little arithmetic,
and wider passes ran faster (docs/benchmarks.md "explain"). :func:`weight_rows` gives those models
wider passes; the others keep the input rule. The rows per pass change only how the same sums are
grouped, not what is computed. The same probe decides the memory layout of the passes
(:func:`channels_last_pays`): channels-last only where the convs use each weight at many positions.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import nn

#: on the CPU, a pass should use each weight between half this and this many times (rows x the
#: weight's uses per image): below it the pass streams the weights from memory for little arithmetic.
#: vit_tiny, swin_tiny, convnext_atto and resnet18 at 64x64 use a weight 13-17 times per image and ran
#: fastest per image at 32-128 rows; vgg at 3x128x128 (32 uses) at 16 (of 8, 16, 32); the small CNNs
#: (49-640 uses) at 8-32 (docs/benchmarks.md "explain")
CPU_WEIGHT_USES = 1024

#: on the CPU, channels-last passes pay off where a conv weight is used at many output positions
#: (``conv_reuse`` >= this). Saliency, CPU time per image, channels-last / default layout
#: (``benchmarks/layout.py``, docs/benchmarks.md "explain", #20 session 5): compact at 48x48 (conv
#: reuse 114) 0.79, the small ResNet at 64x64 (642) 0.90, resnet18 at 128x128 (53) 0.93, vgg11 at
#: 128x128 (265) 0.93, mobilenet_v3_small at 128x128 (20) 0.94; but resnet18 at 64x64 (13: most of its
#: weights sit at the 2x2 last stage) 1.07 (1.25 at 4 images), convnext_atto at 64x64 (13) 1.02
CPU_CHANNELS_LAST_CONV_REUSE = 16

_REUSE: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], tuple[float | None, float | None]]] = (
    weakref.WeakKeyDictionary())


def _reuse(model: nn.Module, x: torch.Tensor) -> tuple[float | None, float | None]:
    """``(weight reuse of Conv2d + Linear, weight reuse of Conv2d only)`` from one no-grad forward on
    one image of ``x``'s shape (remembered per model and shape); ``None`` where not known."""
    key = tuple(x.shape[1:])
    known = _REUSE.setdefault(model, {})
    if key in known:
        return known[key]
    macs = {"conv": 0, "linear": 0}
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]

    def count(mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):  # out.numel() outputs, each a dot product of this many terms
            if isinstance(mod, nn.Conv2d):
                macs["conv"] += out.numel() * mod.weight[0].numel()
            else:
                macs["linear"] += out.numel() * mod.weight.shape[1]

    hooks = [m.register_forward_hook(count) for m in layers]
    try:
        with torch.no_grad():
            model(x[:1])
        weights = sum(m.weight.numel() for m in layers)
        conv_weights = sum(m.weight.numel() for m in layers if isinstance(m, nn.Conv2d))
        total = macs["conv"] + macs["linear"]
        found = (total / weights if weights and total else None,
                 macs["conv"] / conv_weights if conv_weights and macs["conv"] else None)
    except Exception:  # noqa: BLE001 - any failure: no weight rule (real errors surface in the passes)
        found = (None, None)
    finally:
        for h in hooks:
            h.remove()
    known[key] = found
    return found


def weight_reuse(model: nn.Module, x: torch.Tensor) -> float | None:
    """How many times the model uses a weight per image, on average: the multiply-adds of its
    ``Conv2d`` and ``Linear`` layers for one image of ``x``'s shape, divided by their weights. A conv
    weight is used at every output position, a linear weight once per token; a transformer on few
    tokens or a CNN at a coarse grid uses each weight few times. Measured with one no-grad forward on
    one image, the first time per model and image shape (remembered); ``None`` when that forward
    fails or the model has no such layers. Call it inside :func:`~cnnlens.explain.core.model_guard`,
    with no hooks on the model's layers."""
    return _reuse(model, x)[0]


def conv_reuse(model: nn.Module, x: torch.Tensor) -> float | None:
    """:func:`weight_reuse` of the ``Conv2d`` layers alone: the mean number of output positions a
    conv weight is used at (weighted by the weights); from the same remembered probe forward."""
    return _reuse(model, x)[1]


def channels_last_pays(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether channels-last passes are expected to run faster on the CPU for this model and image
    shape: its convs use a weight at :data:`CPU_CHANNELS_LAST_CONV_REUSE` or more positions."""
    r = conv_reuse(model, x)
    return r is not None and r >= CPU_CHANNELS_LAST_CONV_REUSE


def weight_rows(model: nn.Module, x: torch.Tensor) -> int:
    """Rows per CPU pass by the model's weight: the largest power of two ``r`` with
    ``r *`` :func:`weight_reuse` ``<= CPU_WEIGHT_USES``, clamped to 1..64 (64 for swin_tiny,
    convnext_atto and resnet18 at 64x64, 32 for vit_tiny, 16 for vgg at 3x128x128); 1 when the reuse
    is unknown."""
    reuse = weight_reuse(model, x)
    if not reuse:
        return 1
    return int(min(64, 2 ** max(0, math.floor(math.log2(max(CPU_WEIGHT_USES / reuse, 1.0))))))
