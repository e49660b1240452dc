"""Which layer a CAM method reads, and how its output becomes a feature map ``[B, D, h, w]``.

* :func:`hookable_layer`: a layer given by dotted name, leaf-layer index or module
  (:func:`cnnlens.nn.resolve_layer`) that can take hooks.
* :func:`default_layer`: the layer used when none is given: the last layer whose output still has a
  spatial grid and still carries gradient from the output. On a CNN that is the last ``Conv2d`` or
  the residual block around it; on a vision transformer (ViT, DeiT, Swin) a transformer block, or,
  where the head reads only a class token, the normalization at the start of the last block (the
  patch tokens reach the class token only through that block's attention).
* :class:`LayerView`: how an output that is not ``[B, D, h, w]`` is turned into one: token sequences
  ``[B, P + h*w, D]`` (``P`` class/distillation/register tokens, dropped) and channels-last
  ``[B, h, w, D]`` stage outputs (Swin). The grid comes from the input size and the token count; the
  number of prefix tokens from the model (timm ``num_prefix_tokens``, torchvision's ``class_token``).
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CnnlensError
from ..nn import resolve_layer

log = logging.getLogger(__name__)


# ---- naming a layer ------------------------------------------------------------------------------

def hookable_layer(model: nn.Module, layer: str | int | nn.Module) -> tuple[str, nn.Module]:
    """:func:`cnnlens.nn.resolve_layer` (a name, a leaf-layer index or a module), refusing a
    TorchScript layer, which cannot take the hooks layer methods install."""
    name, mod = resolve_layer(model, layer)
    _refuse_torchscript(mod)
    return name, mod


def _refuse_torchscript(module: nn.Module, deep: bool = False) -> None:
    """Layer methods hook a layer's output; TorchScript modules cannot take Python hooks."""
    if isinstance(module, torch.jit.ScriptModule) or (deep and any(
            isinstance(m, torch.jit.ScriptModule) for m in module.modules())):
        raise CnnlensError("this is a TorchScript model: its layers cannot take the hooks that layer-based "
                         "methods (gradcam, ...) need. Use an input-gradient method (saliency, ...), or "
                         "load the Python model instead (FILE.py:ClassName with weights=FILE)")


# ---- views: a layer's output as [B, D, h, w] -----------------------------------------------------

@dataclass(frozen=True)
class LayerView:
    """How a layer's output is read as a feature map ``[B, D, h, w]``.

    ``kind``: ``"nchw"`` (taken as is), ``"nhwc"`` (``[B, h, w, D]``, permuted) or ``"tokens"``
    (``[B, prefix + h*w, D]``: the first ``prefix`` tokens dropped, the rest laid out row by row on
    the ``grid``).
    """

    kind: str = "nchw"
    prefix: int = 0
    grid: tuple[int, int] | None = None

    def describe(self) -> str:
        """The transform in words, as recorded in :attr:`Explanation.layer_transform`."""
        if self.kind == "nhwc":
            return "channels-last [B, h, w, D] permuted to [B, D, h, w]"
        if self.kind == "tokens":
            h, w = self.grid or (0, 0)
            dropped = {0: "no prefix token", 1: "1 prefix (class) token dropped"}.get(
                self.prefix, f"{self.prefix} prefix tokens (class/distillation/register) dropped")
            return f"tokens [B, {self.prefix}+{h}x{w}, D] reshaped to [B, D, {h}, {w}] ({dropped})"
        return "none"

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feature map [B, D, h, w], the output rebuilt from it)``.

        The rebuilt output has the values of ``out`` and is what the model goes on with, so the
        gradient of anything downstream reaches the feature map.
        """
        if self.kind == "nhwc":
            act = out.permute(0, 3, 1, 2)
            return act, act.permute(0, 2, 3, 1).clone()
        if self.kind == "tokens":
            b, t, d = out.shape
            h, w = self.grid  # type: ignore[misc]
            if t != self.prefix + h * w:
                raise CnnlensError(f"the layer's output has {t} tokens; expected {self.prefix}+{h}x{w} (the "
                                   "grid the layer was set up with). Explain images of one size per call")
            act = out[:, self.prefix:, :].transpose(1, 2).reshape(b, d, h, w)
            tokens = act.flatten(2).transpose(1, 2)
            rebuilt = torch.cat([out[:, :self.prefix], tokens], 1) if self.prefix else tokens.clone()
            return act, rebuilt
        return out, out.clone()


NCHW = LayerView()


def _grid_like(h: int, w: int, size: tuple[int, int]) -> bool:
    """Whether ``h x w`` cells can tile an input of ``size`` with about the same stride both ways."""
    if h < 1 or w < 1 or h > size[0] or w > size[1]:
        return False
    sh, sw = size[0] / h, size[1] / w
    return abs(sh - sw) <= 0.25 * max(sh, sw)


def token_grid(tokens: int, size: tuple[int, int], prefix_hint: int | None = None
               ) -> tuple[int, tuple[int, int]] | None:
    """``(prefix, (h, w))`` for a sequence of ``tokens`` on an input of ``size`` (H, W), or ``None``.

    ``prefix_hint`` (the model's prefix-token count) is tried first, then 0..8 prefix tokens; the
    patch tokens must fill a grid with the input's aspect ratio.
    """
    tries = ([prefix_hint] if prefix_hint is not None else []) + [p for p in range(9) if p != prefix_hint]
    for p in tries:
        n = tokens - p
        if n < 1:
            continue
        h = max(1, round(math.sqrt(n * size[0] / size[1])))
        for hh in (h, h - 1, h + 1):
            if hh >= 1 and n % hh == 0 and _grid_like(hh, n // hh, size):
                return p, (hh, n // hh)
    return None


def model_prefix_tokens(model: nn.Module) -> int | None:
    """Class/distillation/register tokens the model puts before its patch tokens, when it says so."""
    p = getattr(model, "num_prefix_tokens", None)
    if isinstance(p, int):
        return p
    if isinstance(getattr(model, "class_token", None), torch.Tensor):  # torchvision ViT
        return 1
    return None


def channels_last_model(model: nn.Module) -> bool:
    """Whether the model's stages run channels-last ``[B, h, w, D]`` (timm and torchvision Swin)."""
    if getattr(model, "output_fmt", None) == "NHWC":
        return True
    return type(model).__name__ == "SwinTransformer" and type(model).__module__.startswith("torchvision")


def view_of(model: nn.Module, shape: tuple[int, ...], size: tuple[int, int], batch: int = 1
            ) -> LayerView | None:
    """The :class:`LayerView` for an output of ``shape`` (input ``size``), or ``None`` when the output
    has no spatial grid (a vector, a batch of windows, ...)."""
    if len(shape) < 3 or shape[0] != batch:
        return None
    if len(shape) == 4:
        nchw_ok = _grid_like(shape[2], shape[3], size)
        nhwc_ok = _grid_like(shape[1], shape[2], size)
        if nhwc_ok and (channels_last_model(model) or not nchw_ok):
            return LayerView("nhwc")
        return NCHW
    if len(shape) == 3:
        found = token_grid(shape[1], size, model_prefix_tokens(model))
        if found is not None:
            return LayerView("tokens", found[0], found[1])
    return None


def _cells(shape: tuple[int, ...], view: LayerView) -> int:
    if view.kind == "tokens":
        return view.grid[0] * view.grid[1]  # type: ignore[index]
    return shape[1] * shape[2] if view.kind == "nhwc" else shape[2] * shape[3]


def _channels(shape: tuple[int, ...], view: LayerView) -> int:
    return shape[-1] if view.kind in ("tokens", "nhwc") else shape[1]


_VIEWS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], LayerView]] = weakref.WeakKeyDictionary()


def layer_view(model: nn.Module, name: str, module: nn.Module, x1: torch.Tensor) -> LayerView:
    """The view of a given layer: its output on ``x1`` (one no-grad forward, remembered per model,
    layer and input shape). A 4-D or 3-D output whose grid is unclear is taken as it is."""
    key = (name, *x1.shape[1:])
    cache = _VIEWS.setdefault(model, {})
    if key in cache:
        return cache[key]
    seen: list[tuple[int, ...]] = []
    h = module.register_forward_hook(
        lambda _m, _i, o: seen.append(tuple(o.shape)) if isinstance(o, torch.Tensor) and not seen else None)
    try:
        with torch.no_grad():
            model(x1[:1])
    except Exception:  # noqa: BLE001 - the real call reports the model's error
        return NCHW
    finally:
        h.remove()
    view = (view_of(model, seen[0], tuple(x1.shape[-2:])) if seen else None) or NCHW
    cache[key] = view
    return view


# ---- the default layer ---------------------------------------------------------------------------

@dataclass
class _Out:
    name: str
    module: nn.Module
    out: torch.Tensor
    view: LayerView | None


_DEFAULT_LAYER: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, ...], tuple[str, LayerView]]] = (
    weakref.WeakKeyDictionary())


def default_layer(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module]:
    """The layer CAM methods use when none is given (see :func:`default_layer_view`)."""
    name, mod, _ = default_layer_view(model, x)
    return name, mod


def default_layer_view(model: nn.Module, x: torch.Tensor) -> tuple[str, nn.Module, LayerView]:
    """``(name, module, view)`` of the layer CAM methods use when none is given.

    1. The last ``Conv2d``, or the outermost block around it whose output
       keeps the conv's spatial size. On a plain CNN (conv-BN-ReLU-pool blocks) that is the conv
       itself: its parent's output is pooled. On a residual network (ResNet, ConvNeXt) the last conv
       sits inside a block that adds the shortcut after it; the block's output (what
       ``model.layer4[-1]`` gives in pytorch-grad-cam's examples) is chosen instead. Among ancestors
       that return the very same tensor (a ``Sequential`` and its last block) the innermost is kept.
    2. When token ``[B, P + h*w, D]`` or channels-last ``[B, h, w, D]`` outputs with a grid follow
       it (a vision transformer: the last conv is its patch embedding), a transformer layer is
       chosen: among those outputs with the last one's width ``D``, the last block (a module with
       children) if its grid still carries gradient from the output (Swin, a ViT that averages its
       tokens), else the last output whose grid does (a ViT whose head reads the class token: the
       last block's first normalization, ``blocks[-1].norm1`` in timm, ``ln_1`` in torchvision).
       "Carries gradient" is measured with one forward + backward of ``x[:1]`` from a random
       projection of the classifier's input (so a zero-initialised head does not hide it).

    Remembered per model and input shape. Call it with the model in eval mode and no other hooks.
    """
    named = dict(model.named_modules())
    key = tuple(int(v) for v in x.shape[1:])
    cache = _DEFAULT_LAYER.get(model)
    if cache is not None and key in cache and cache[key][0] in named:
        name, view = cache[key]
        return name, named[name], view
    convs = [n for n, m in named.items() if isinstance(m, nn.Conv2d)]
    if not convs:
        _refuse_torchscript(model, deep=True)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    outs: list[_Out] = []
    head_in: dict[int, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def fn(m: nn.Module, inp: Any, out: Any) -> None:
            if not isinstance(out, torch.Tensor):
                return
            if isinstance(m, nn.Linear) and inp and isinstance(inp[0], torch.Tensor):
                head_in[id(out)] = inp[0]
            outs.append(_Out(name, m, out, view_of(model, tuple(out.shape), size)))
        return fn

    hooks = [m.register_forward_hook(hook(n)) for n, m in named.items() if n]
    try:
        with torch.enable_grad():
            x1 = x[:1].detach().requires_grad_(True)
            logits = model(x1)
    except Exception:  # noqa: BLE001 - the real call reports the model's error
        if convs:
            return convs[-1], named[convs[-1]], NCHW
        raise CnnlensError("the model has no Conv2d layer to use by default; pass layer=<name>") from None
    finally:
        for h in hooks:
            h.remove()
    conv_at, chosen = _conv_choice(outs, convs)
    later = [o for o in outs[conv_at + 1:] if o.view is not None and o.view.kind != "nchw"
             and _cells(tuple(o.out.shape), o.view) > 1]
    if later:
        pick = _transformer_choice(later, logits, head_in)
        if pick is not None:
            chosen = pick
    if chosen is None:
        raise CnnlensError("the model has no Conv2d layer and no token or channels-last layer with a "
                           f"spatial grid to use by default; pass layer=<name>. Layers: "
                           f"{', '.join(n for n in named if n)}")
    view = chosen.view if chosen.view is not None else NCHW
    _DEFAULT_LAYER.setdefault(model, {})[key] = (chosen.name, view)
    return chosen.name, named[chosen.name], view


def _conv_choice(outs: list[_Out], convs: list[str]) -> tuple[int, _Out | None]:
    """Step 1 of :func:`default_layer_view`: ``(index in outs, record)`` of the last conv or the
    block around it (``(-1, None)`` without a conv)."""
    if not convs:
        return -1, None
    name = convs[-1]
    first = {o.name: (i, o) for i, o in reversed(list(enumerate(outs)))}  # each name's first call
    if name not in first:
        return -1, None
    at, chosen = first[name]
    parts = name.split(".")
    if chosen.out.ndim == 4:
        for anc in (".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)):  # innermost first
            rec = first.get(anc)
            if rec is None or rec[1].out.ndim != 4 or rec[1].out.shape[-2:] != chosen.out.shape[-2:]:
                break
            if rec[1].out is not chosen.out:
                chosen = rec[1]
            at = max(at, rec[0])
    return at, chosen


def _transformer_choice(later: list[_Out], logits: Any, head_in: dict[int, torch.Tensor]) -> _Out | None:
    """Step 2 of :func:`default_layer_view` on the token/channels-last outputs after the last conv."""
    width = _channels(tuple(later[-1].out.shape), later[-1].view)  # type: ignore[arg-type]
    same = [o for o in later if _channels(tuple(o.out.shape), o.view) == width]  # type: ignore[arg-type]
    if not isinstance(logits, torch.Tensor) or not logits.requires_grad:
        return None
    feats = head_in.get(id(logits), logits)
    r = torch.randn(feats.shape, generator=torch.Generator().manual_seed(0)).to(feats.device, feats.dtype)
    uniq: list[_Out] = []
    for o in same:  # one record per tensor: the innermost module that returned it
        if not any(u.out is o.out for u in uniq):
            uniq.append(o)
    grads = torch.autograd.grad((feats * r).sum(), [o.out for o in uniq], allow_unused=True)
    carries = {id(o.out): _grid_grad(o, g) for o, g in zip(uniq, grads)}
    blocks = [o for o in same if list(o.module.children())]
    if blocks:
        last = next(u for u in uniq if u.out is blocks[-1].out)
        if carries[id(last.out)]:
            return last
    alive = [u for u in uniq if carries[id(u.out)]]
    if alive:
        return alive[-1]
    log.info("no transformer layer's grid carries gradient from the output; using the last conv")
    return None


def _grid_grad(o: _Out, g: torch.Tensor | None) -> bool:
    """Whether the gradient ``g`` of output ``o`` is non-zero on its grid (prefix tokens left out)."""
    if g is None:
        return False
    top = float(g.abs().max())
    if o.view is not None and o.view.kind == "tokens":
        g = g[:, o.view.prefix:]
    return top > 0 and float(g.abs().max()) > 1e-6 * top
