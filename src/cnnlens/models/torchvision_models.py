"""``torchvision:<name>``: any torchvision classification architecture, adapted to the data.

Built with ``weights=None`` (never downloaded). The first convolution takes the data's channel
count and the classifier gives ``num_classes`` logits. ``weights=FILE`` loads from disk (see
:mod:`cnnlens.models.weights`): either weights of the adapted model (e.g. from an earlier cnnlens
run), or of the original 3-channel model (e.g. ImageNet weights you downloaded yourself); in the
second case the first convolution is adapted (summed over RGB for one channel, as timm does) and
the tensors whose shape changed (the classifier) start fresh.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from .base import MODELS, check_runs, hw
from .weights import check_state_dict, load_weights, read_state_dict
from ..errors import CnnlensError

log = logging.getLogger(__name__)


def classification_names() -> list[str]:
    """Names of torchvision's classification architectures (no detection/segmentation/video)."""
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def _builder_kwargs(arch: str, input_size: tuple[int, int]) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if arch in ("googlenet", "inception_v3"):
        # auxiliary heads return tuples in training; transform_input assumes ImageNet RGB statistics
        kw.update(aux_logits=False, transform_input=False, init_weights=True)
    if arch.startswith("vit_"):
        h, w = input_size
        if h != w:
            raise CnnlensError(f"torchvision:{arch} needs square images; got {h}x{w}")
        kw["image_size"] = h
    return kw


def first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """``(parent, attribute, conv)`` of the first ``Conv2d`` registered in ``model`` (its stem)."""
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            return model.get_submodule(parent_name), attr, mod
    raise CnnlensError(f"{type(model).__name__} has no Conv2d to adapt to the input channels")


def adapt_input_channels(model: nn.Module, in_channels: int) -> str:
    """Replace the stem conv by one taking ``in_channels``; keep and adapt its weights.

    One channel: the RGB kernels are summed (a gray image x gives the response the RGB image
    (x, x, x) would). C channels: RGB kernels repeated and scaled by 3/C. Returns the conv's name.
    """
    parent, attr, conv = first_conv(model)
    name = next(n for n, m in model.named_modules() if m is conv)
    if conv.in_channels == in_channels:
        return name
    if conv.groups != 1:
        raise CnnlensError(f"cannot adapt grouped stem conv {name!r} to {in_channels} channels")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, 1, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        w = conv.weight
        if in_channels == 1:
            new.weight.copy_(w.sum(1, keepdim=True))
        else:
            reps = math.ceil(in_channels / w.shape[1])
            new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_channels] * (w.shape[1] / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, attr, new)
    return name


def build(arch: str, in_channels: int = 3, num_classes: int = 1000, input_size: int | tuple[int, int] = 224,
          weights: str | os.PathLike[str] | None = None, pretrained: bool = False, **kw: Any) -> nn.Module:
    """Build ``torchvision.models.<arch>`` for ``[B, in_channels, H, W]`` input and ``num_classes``.

    ``pretrained=True`` downloads torchvision's default weights (network; only when asked)."""
    import torchvision.models as tvm

    size = hw(input_size)
    kw = {**_builder_kwargs(arch, size), **kw}
    if weights is not None and pretrained:
        raise CnnlensError(f"torchvision:{arch}: give either weights (a file) or pretrained=True (a "
                           "download), not both")
    model = tvm.get_model(arch, weights=None, num_classes=num_classes, **kw)
    stem = adapt_input_channels(model, in_channels)
    if pretrained:
        weights = _fetch(arch)
    if weights is not None:
        sd = weights if isinstance(weights, dict) else read_state_dict(weights)
        rep = check_state_dict(model, sd)
        if rep.missing or rep.unexpected or rep.mismatched:
            label = (f"the pretrained weights {default_weights(arch)}" if pretrained
                     else f"weights file {weights}")
            model = _from_original(arch, sd, label, in_channels, num_classes, stem, kw)
        else:
            load_weights(model, sd)
    check_runs(model, f"torchvision:{arch}", in_channels, num_classes, size,
               "use larger images or another architecture")
    return model


def default_weights(arch: str) -> Any:
    """torchvision's default weights enum entry for ``arch`` (metadata only), or None."""
    import torchvision.models as tvm

    try:
        return tvm.get_model_weights(arch).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _fetch(arch: str) -> dict[str, torch.Tensor]:
    """The default pretrained weights' state dict, downloaded by torchvision (only when asked)."""
    w = default_weights(arch)
    if w is None:
        raise CnnlensError(f"torchvision:{arch} has no pretrained weights in torchvision; train it from "
                           "scratch or pass --weights FILE")
    try:
        return dict(w.get_state_dict(progress=False, check_hash=False))
    except Exception as e:  # no network, a proxy, a damaged cache: all say what to do instead
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise CnnlensError(
            f"torchvision:{arch}: could not fetch the pretrained weights {w} ({type(e).__name__}: {why}). "
            "cnnlens downloads only when asked (--pretrained), and here it failed; pass the weights as a "
            f"file instead: --weights FILE (Python: weights=FILE). Download {w.url} on a machine with "
            "internet (it is a torch.save state dict, read safely)") from None


def pretrained_normalization(arch: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std of the default weights' transforms (``weights.transforms()``), per channel."""
    from .timm_models import per_channel

    w = default_weights(arch)
    t = w.transforms() if w is not None else None
    if t is None or not hasattr(t, "mean"):
        raise CnnlensError(f"torchvision:{arch} has no pretrained weights whose normalization could be used; "
                           "pass --normalize dataset or MEAN,STD")
    return per_channel(tuple(map(float, t.mean)), tuple(map(float, t.std)), channels)


def _from_original(arch: str, sd: dict[str, torch.Tensor], path: Any, in_channels: int, num_classes: int,
                   stem: str, kw: dict[str, Any]) -> nn.Module:
    """Weights of the unadapted model: load them there, adapt the stem, re-init what changed shape."""
    import torchvision.models as tvm

    orig = tvm.get_model(arch, weights=None, **kw)
    try:
        load_weights(orig, sd, strict=True)
    except ValueError as e:
        raise CnnlensError(f"{path} fits neither torchvision:{arch} for {in_channels} channels "
                         f"and {num_classes} classes nor its original form ({e})") from None
    adapt_input_channels(orig, in_channels)
    model = tvm.get_model(arch, weights=None, num_classes=num_classes, **kw)
    adapt_input_channels(model, in_channels)
    src, own = orig.state_dict(), model.state_dict()
    fresh = [k for k in own if k not in src or src[k].shape != own[k].shape]
    model.load_state_dict({k: v for k, v in src.items() if k in own and k not in fresh}, strict=False)
    (log.warning if fresh else log.info)(
        "torchvision:%s: loaded %s (stem %r adapted to %d channels); freshly initialized: %s", arch, path,
        stem, in_channels, ", ".join(fresh) or "nothing")
    return model


def resolve(arch: str) -> Callable[..., nn.Module]:
    names = classification_names()
    if arch not in names:
        raise CnnlensError(f"unknown torchvision classification model {arch!r}; valid names: "
                         f"{', '.join(names)}")
    return partial(build, arch)


MODELS.register_prefix("torchvision", resolve)
