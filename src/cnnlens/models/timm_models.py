"""``timm:<name>``: any timm architecture (ConvNeXt, ViT/DeiT, Swin, EfficientNet, ResNet, ...).

Needs the optional ``timm`` package (``pip install 'cnnlens[timm]'``). The data's channel count,
class count and image size go through timm's own arguments (``in_chans``, ``num_classes``, and
``img_size`` for the models that take it: ViT, DeiT, Swin, ...). A name may carry a pretrained
tag (``convnext_atto.d2_in1k``).

Weights, on the user's terms:

- none (default): random initialization, nothing is downloaded;
- ``weights=FILE`` (``--weights``): read safely (safetensors, or tensors-only ``torch.load``; see
  :mod:`cnnlens.models.weights`). Weights of this very model (e.g. an earlier cnnlens run) are
  loaded strictly. Otherwise the file is taken as a checkpoint of the original timm model (e.g.
  ImageNet weights saved elsewhere) and goes through timm's own adaptation: the model's checkpoint
  filter (e.g. ViT position embeddings resampled to the patch grid), the stem adapted to the
  channel count, and a classifier of another size re-initialized; the log says what was fresh;
- ``pretrained=True`` (``--pretrained``): timm fetches its default weights (network); without a
  network the error names the file to pass as ``weights`` instead and how to make it.
"""

from __future__ import annotations

import logging
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

INSTALL = "pip install 'cnnlens[timm]'"


def require_timm():  # noqa: ANN201  (the timm module)
    """The ``timm`` module, or a CnnlensError naming the install command."""
    try:
        import timm
    except ImportError:
        raise CnnlensError(f"timm models need the timm package, which is not installed: {INSTALL} "
                           "(or pip install timm)") from None
    return timm


def _create(arch: str, c: int, k: int, size: tuple[int, int], **kw: Any) -> nn.Module:
    """``timm.create_model`` with ``img_size`` where the architecture takes it."""
    timm = require_timm()
    try:
        return timm.create_model(arch, num_classes=k, in_chans=c, img_size=size, **kw)
    except TypeError as e:
        if "img_size" not in str(e):
            raise CnnlensError(f"timm:{arch} does not accept these options: {e}") from None
    try:
        return timm.create_model(arch, num_classes=k, in_chans=c, **kw)
    except TypeError as e:
        raise CnnlensError(f"timm:{arch} does not accept these options: {e}") from None


def build(arch: str, in_channels: int = 3, num_classes: int = 1000, input_size: int | tuple[int, int] = 224,
          weights: str | os.PathLike[str] | None = None, pretrained: bool = False, **kw: Any) -> nn.Module:
    """Build ``timm.create_model(arch)`` for ``[B, in_channels, H, W]`` input and ``num_classes``."""
    size = hw(input_size)
    if weights is not None and pretrained:
        raise CnnlensError(f"timm:{arch}: give either weights (a file) or pretrained=True (a download), "
                           "not both")
    if pretrained:
        model = _fetch(arch, in_channels, num_classes, size, kw)
    else:
        model = _create(arch, in_channels, num_classes, size, **kw)
    if weights is not None:
        sd = read_state_dict(weights)
        rep = check_state_dict(model, sd)
        if rep.missing or rep.unexpected or rep.mismatched:
            _load_original(model, arch, sd, weights, in_channels, num_classes)
        else:
            load_weights(model, sd)
    check_runs(model, f"timm:{arch}", in_channels, num_classes, size,
               "use another image size (--image-size) or another architecture",
               errors=(RuntimeError, AssertionError, ValueError))
    return model


def _head_keys(model: nn.Module) -> list[str]:
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    own = model.state_dict()
    return [f"{h}.{t}" for h in heads for t in ("weight", "bias") if f"{h}.{t}" in own]


def _load_original(model: nn.Module, arch: str, sd: dict[str, torch.Tensor], path: Any, c: int,
                   k: int) -> None:
    """Load a checkpoint of the original timm model into ``model`` through timm's own adaptation."""
    from timm.models import load_pretrained

    import sys

    heads = _head_keys(model)
    file_classes = next((int(sd[h].shape[0]) for h in heads if h.endswith(".weight") and h in sd), k)
    cfg = {**model.pretrained_cfg, "state_dict": dict(sd), "source": "timm", "num_classes": file_classes}
    stem = model.pretrained_cfg.get("first_conv")
    stem_w = sd.get(f"{stem}.weight") if isinstance(stem, str) else None
    if stem_w is not None and stem_w.ndim == 4 and getattr(model.get_submodule(stem), "groups", 1) == 1:
        cfg["input_size"] = (int(stem_w.shape[1]), *tuple(cfg.get("input_size") or (3, 224, 224))[1:])
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    seen: dict[str, list[str]] = {}

    def _record(module: nn.Module, incompatible: Any) -> None:
        seen["missing"] = list(incompatible.missing_keys)
        seen["unexpected"] = list(incompatible.unexpected_keys)

    handle = model.register_load_state_dict_post_hook(_record)
    try:
        load_pretrained(model, pretrained_cfg=cfg, num_classes=k, in_chans=c, filter_fn=filter_fn,
                        strict=False)
    except (RuntimeError, ValueError, KeyError, NotImplementedError) as e:
        raise CnnlensError(f"weights file {path} fits neither timm:{arch} for {c} channels and {k} classes "
                           f"nor its original form ({type(e).__name__}: {str(e)[:400]})") from None
    finally:
        handle.remove()
    missing = [m for m in seen.get("missing", []) if m not in heads]
    unexpected = seen.get("unexpected", [])
    if missing or unexpected:
        raise CnnlensError(f"weights file {path} does not fit timm:{arch}: missing from the file "
                           f"{missing[:8]}, not in the model {unexpected[:8]}. Check that the file holds "
                           f"weights of {arch}")
    fresh = [h for h in heads if h in seen.get("missing", [])]
    if fresh:
        log.warning("timm:%s: loaded the backbone from %s; the classifier head (%s) holds %d classes there "
                    "and is freshly initialized for %d", arch, path, ", ".join(fresh), file_classes, k)
    else:
        log.info("timm:%s: loaded %s (adapted to %d channel(s))", arch, path, c)


def weights_hint(arch: str) -> str:
    """Where a weights file for ``timm:arch`` comes from, for a machine without network."""
    timm = require_timm()
    try:
        cfg = timm.models.get_pretrained_cfg(arch) or {}
        cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    except Exception:  # an unknown tag: the hint still says how to save weights
        cfg = {}
    hub = cfg.get("hf_hub_id")
    where = (f"https://huggingface.co/{hub} (model.safetensors)" if hub
             else cfg.get("url") or "the model's page")
    return (f"pass the weights as a file instead: --weights FILE (Python: weights=FILE). Get it on a machine "
            f"with internet from {where}, or save it there with `python -c \"import timm; from "
            f"safetensors.torch import save_file; m = timm.create_model('{arch}', pretrained=True); "
            f"save_file(m.state_dict(), '{arch.replace('/', '_')}.safetensors')\"`")


def _fetch(arch: str, c: int, k: int, size: tuple[int, int], kw: dict[str, Any]) -> nn.Module:
    """timm's own download of the default pretrained weights; a clear error without network."""
    try:
        model = _create(arch, c, k, size, pretrained=True, **kw)
    except CnnlensError:
        raise
    except Exception as e:  # no network, no weights for this name, a hub error: all say what to do
        why = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise CnnlensError(f"timm:{arch}: could not fetch the pretrained weights ({type(e).__name__}: "
                           f"{why}). cnnlens downloads only when asked (--pretrained), and here it failed; "
                           f"{weights_hint(arch)}") from None
    src_k = int(model.pretrained_cfg.get("num_classes") or k)
    if src_k != k:
        log.warning("timm:%s: pretrained weights loaded; the classifier head (%s) is freshly initialized for "
                    "%d classes (the weights have %d)", arch, ", ".join(_head_keys(model)), k, src_k)
    return model


def pretrained_normalization(model: nn.Module, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The input normalization timm's pretrained weights expect (``pretrained_cfg`` mean/std), for
    ``channels`` channels: as given for 3; for 1 (or another count) the mean over RGB repeated, as
    the stem adaptation sums (or repeats) the RGB kernels."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = tuple(float(v) for v in cfg.get("mean", ())), tuple(float(v) for v in cfg.get("std", ()))
    if not mean or not std:
        raise CnnlensError(f"{type(model).__name__} has no pretrained mean/std in its pretrained_cfg; pass "
                           "--normalize dataset or MEAN,STD")
    return per_channel(mean, std, channels)


def per_channel(mean: tuple[float, ...], std: tuple[float, ...], c: int) -> tuple[tuple[float, ...],
                                                                                  tuple[float, ...]]:
    if len(mean) == c:
        return mean, std
    return (sum(mean) / len(mean),) * c, (sum(std) / len(std),) * c


def resolve(name: str) -> Callable[..., nn.Module]:
    timm = require_timm()
    arch = name.partition(".")[0]
    if not timm.is_model(arch):
        from ..registry import did_you_mean

        raise CnnlensError(f"unknown timm model {name!r}{did_you_mean(arch, timm.list_models())}; "
                           "`python -c \"import timm; print(timm.list_models('*convnext*'))\"` lists names")
    return partial(build, name)


MODELS.register_prefix("timm", resolve)
