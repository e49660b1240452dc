"""The explanation contract: one call, one output shape, the caller's model untouched.

``explain(model, x, method, target=None, layer=None, **options) -> Explanation``.
Each method is an :class:`Explainer` registered in ``METHODS``; it receives a :class:`Context`
(model in eval mode, input, target spec, resolved layer) and returns maps ``[B,H,W]`` at input
resolution plus method-specific extras.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LayerView, default_layer, default_layer_view, hookable_layer, layer_view  # noqa: F401 (re-exported)
from ..nn import check_input, forward_logits, model_device, model_guard, model_state, resolve_layer  # noqa: F401 (re-exported)
from ..registry import Registry
from ..errors import CnnlensError, CnnlensTypeError
from .checks import check_model_device, check_target
from .passes import channels_last_pays, weight_rows

TargetSpec = None | int | str | Sequence[int] | torch.Tensor


@dataclass(frozen=True)
class Explanation:
    """Attribution maps for a batch.

    Attributes:
        maps: ``float32 [B, H, W]`` at input resolution, on the input's device; raw values (signed
            where the method is signed). Use :func:`cnnlens.explain.display.normalize_maps` to display.
        method: registered method name.
        targets: ``int64 [B]`` class explained for each image.
        probs: ``float32 [B, K]`` softmax of the model's logits on the unmodified input; ``None``
            when the call asked for none (``explain(..., probs=False)``).
        layer: dotted name of the layer used (layer-based methods), else ``None``.
        signed: whether the maps carry sign (positive = evidence for the target).
        extras: method-specific results (IG's completeness gap, LIME's superpixel weights, ...).
        layer_transform: how the layer's output was read as a feature map ``[B, D, h, w]`` (layer-based
            methods): ``"none"``, or e.g. ``"tokens [B, 1+4x4, D] reshaped to [B, D, 4, 4] (1 prefix
            (class) token dropped)"`` (see :class:`~cnnlens.explain.layers.LayerView`); else ``None``.
    """

    maps: torch.Tensor
    method: str
    targets: torch.Tensor
    probs: torch.Tensor | None
    layer: str | None = None
    signed: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    layer_transform: str | None = None


class Explainer:
    """Base class of an attribution method. Subclasses set the class attributes and ``attribute``."""

    name: str = ""
    description: str = ""
    uses_layer: bool = False  # needs a (conv) layer: CAM family
    signed: bool = False  # maps carry sign
    cost: int = 1  # rough number of forward+backward passes per image (for auto chunking)
    channels_last_passes: bool = False  # its passes go through Context.forward (layout chosen there)

    def attribute(self, ctx: Context, **options: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def unsupported(self, model: nn.Module) -> str | None:
        """Why this method cannot explain ``model`` (``None``: it can). Default methods skip such models."""
        return None


METHODS: Registry = Registry("explanation method")


def register_method(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator: register an :class:`Explainer` subclass under ``cls.name``."""
    METHODS.register(cls.name, description=cls.description)(cls)
    return cls


def methods() -> list[str]:
    """Names of the registered explanation methods."""
    return METHODS.names()


# ---- context passed to methods -------------------------------------------------------------------


@dataclass
class Context:
    model: nn.Module
    x: torch.Tensor  # normalized input chunk [B,C,H,W] on the model's device
    target: TargetSpec  # resolved to a LongTensor after the first forward pass
    layer_name: str | None
    layer: nn.Module | None
    handles: list[torch.utils.hooks.RemovableHandle]
    labels: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # logits on the unmodified input (set on first forward)
    channels_last: bool = False  # run the passes on channels-last copies of the input (CPU)
    view: LayerView | None = None  # how the layer's output is read as [B, D, h, w] (None: as it is)
    want_probs: bool = True  # False: the call returns no probs; given targets need no clean forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` checked to be logits, in the chosen memory layout."""
        return forward_logits(self.model, x, self.channels_last)

    # targets ----------------------------------------------------------------------------------
    def targets_from(self, logits: torch.Tensor) -> torch.Tensor:
        """Resolve the target spec against these logits and remember the clean logits."""
        if self.logits is None:
            self.logits = logits.detach()
        if not isinstance(self.target, torch.Tensor) or self.target.dtype != torch.long:
            self.target = resolve_targets(self.target, self.logits, self.labels)
        else:
            _check_range(self.target, self.logits.shape[1])
        return self.target

    def forward_clean(self, x: torch.Tensor) -> torch.Tensor:
        """``model(x)`` with no graph, for logits only (the clean input's, IG's baseline's). In the
        passes' layout: the default layout, and ``inference_mode``, were measured no faster here
        (docs/benchmarks.md, #20)."""
        with torch.no_grad():
            return self.forward(x)

    @property
    def targets(self) -> torch.Tensor:
        """Targets; runs a no-grad forward pass if none has been run yet."""
        if self.logits is None:
            self.targets_from(self.forward_clean(self.x))
        return self.targets_from(self.logits)  # type: ignore[arg-type]

    def pass_targets(self) -> torch.Tensor:
        """Targets for the gradient passes. Like :attr:`targets`, but when the call wants no probs
        and the caller gave the classes (an int, one per image, or ``"label"`` with labels), no clean
        forward is run for them (:meth:`given_targets`)."""
        given = self.given_targets()
        return given if given is not None else self.targets

    def given_targets(self) -> torch.Tensor | None:
        """The caller's classes without a clean forward, when the call wants no probs and none has run
        yet; their range is then checked against each pass's logits (:meth:`forward_grad`). ``None``
        when the classes come from the prediction or the clean forward is wanted anyway."""
        if self.logits is not None or self.want_probs:
            return None
        given = given_targets(self.target, self.x.shape[0], self.x.device, self.labels)
        if given is not None:
            self.target = given
        return given

    # hooks ------------------------------------------------------------------------------------
    def capture(self, module: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Capture ``module``'s output on every forward pass (``store['act']``).

        The captured output is kept in the graph and a clone is passed on, so in-place operations
        after the layer (``ReLU(inplace=True)``) cannot change what was captured. For the context's
        own layer, a token or channels-last output is captured as ``[B, D, h, w]`` (:attr:`view`)
        and the model goes on with the output rebuilt from it, so gradients reach the captured map.
        """
        view = self.view if module is None or module is self.layer else None
        module = module if module is not None else self.layer
        if module is None:
            raise CnnlensError("this method needs a layer, and none was resolved")
        store: dict[str, torch.Tensor] = {}

        def hook(_m: nn.Module, _inp: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor):
                raise CnnlensTypeError(f"layer {self.layer_name!r} returns {type(out).__name__}, not a tensor; "
                                "choose a layer whose output is a feature map")
            if view is None or view.kind == "nchw":
                store["act"] = out
                return out.clone()
            store["act"], rebuilt = view.split(out)
            return rebuilt

        self.handles.append(module.register_forward_hook(hook))
        return store

    def forward_grad(self, x: torch.Tensor, store: dict[str, torch.Tensor] | None = None,
                     wrt_input: bool = True, targets: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """One forward + backward: ``(logits, d score/d x, d score/d layer activation)``.

        ``score`` is the sum over the batch of each image's target logit.
        """
        # the input always requires grad: parameters are frozen, so it is what builds the graph
        x = x.detach().requires_grad_(True)
        logits = self.forward(x)
        t = targets if targets is not None else self.targets_from(logits)
        if targets is not None and self.logits is None:  # given classes, no clean forward (probs=False)
            _check_range(targets, logits.shape[1])
        score = logits.gather(1, t.view(-1, 1)).sum()
        wrt: list[torch.Tensor] = []
        if wrt_input:
            wrt.append(x)
        if store is not None:
            wrt.append(store["act"])
        grads = torch.autograd.grad(score, wrt, allow_unused=True)
        gx = grads[0] if wrt_input else None
        ga = grads[-1] if store is not None else None
        if wrt_input and gx is None:
            raise CnnlensError("the model's output does not depend on its input")
        return logits, gx, ga


def resolve_targets(target: TargetSpec, logits: torch.Tensor, labels: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """``None`` -> predicted class; int -> that class for all; sequence/tensor -> per image;
    ``"label"`` -> ``labels``; ``"pred"`` -> predicted. Checked against the logits' classes."""
    t = given_targets(target, logits.shape[0], logits.device, labels)
    if t is None:
        return logits.argmax(1)
    _check_range(t, logits.shape[1])
    return t


def given_targets(target: TargetSpec, b: int, device: torch.device, labels: torch.Tensor | None = None
                  ) -> torch.Tensor | None:
    """``target`` as ``int64 [b]`` when it names the classes itself (an int, one per image, ``"label"``
    with labels), without the logits (their range is not checked here: :func:`resolve_targets`);
    ``None`` when the classes come from the prediction (``None``, ``"pred"``)."""
    target = check_target(target, b)
    if target is None or (isinstance(target, str) and target == "pred"):
        return None
    if isinstance(target, str):
        if target != "label":
            raise CnnlensError(f"target must be None, 'pred', 'label', an int or one per image; got {target!r}")
        if labels is None:
            raise CnnlensError("target='label' needs labels=...; pass the images' labels")
        t = torch.as_tensor(labels, device=device).long().view(-1)
    elif isinstance(target, int):
        t = torch.full((b,), target, dtype=torch.long, device=device)
    else:
        t = torch.as_tensor(target, device=device).long().view(-1)
        if t.numel() == 1:
            t = t.expand(b).clone()
    if t.shape != (b,):
        raise CnnlensError(f"target must give one class per image ({b}); got {t.numel()}")
    return t


def _check_range(t: torch.Tensor, k: int) -> None:
    bad = (t < 0) | (t >= k)
    if bad.any():
        raise CnnlensError(f"target class {t[bad][0].item()} is out of range: the model has {k} classes "
                         f"(0..{k - 1})")


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B,h,w]`` -> ``[B,H,W]`` bilinear (align_corners=False, as Captum and pytorch-grad-cam)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)


def pass_setup(model: nn.Module, x1: torch.Tensor, layer: str | int | nn.Module | None, uses_layer: bool,
               channels_last_passes: bool) -> tuple[str | None, nn.Module | None, LayerView | None, bool]:
    """``(layer name, layer module, layer view, channels_last)`` for a call's passes: the given layer or
    :func:`~cnnlens.explain.layers.default_layer_view` (when a method uses one), how its output is
    read as ``[B, D, h, w]`` (:class:`~cnnlens.explain.layers.LayerView`), and
    :func:`use_channels_last` (when a method's passes go through :meth:`Context.forward`). ``x1``:
    one image on the model's device. Call it inside :func:`model_guard`, before any hook is installed."""
    name, mod, view = None, None, None
    if uses_layer:
        if layer is not None:
            name, mod = hookable_layer(model, layer)
            view = layer_view(model, name, mod, x1)
        else:
            name, mod, view = default_layer_view(model, x1)
    return name, mod, view, channels_last_passes and use_channels_last(model, x1)


_LAYOUT_OK: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def use_channels_last(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether to run the method's passes on channels-last inputs.

    On the CPU, convolutions (forward and backward) run faster on channels-last inputs where a conv
    weight is used at many output positions (:func:`~cnnlens.explain.passes.channels_last_pays`:
    the course CNNs, ResNets at 128x128 and up); a network whose conv weights sit at a coarse grid
    (resnet18 at 64x64) ran slower and keeps the default layout (figures in docs/benchmarks.md
    "explain"); on other devices the model's own layout is kept. A model whose ``forward`` cannot
    take a channels-last input (``x.view(B, -1)`` after a conv, ...) is detected with one no-grad
    forward on one image, the first time only (remembered per model), and keeps the default layout.
    Call it inside :func:`model_guard`, with no hooks on the model.
    """
    if x.device.type != "cpu" or x.ndim != 4 or not channels_last_pays(model, x):
        return False
    ok = _LAYOUT_OK.get(model)
    if ok is None:
        try:
            with torch.no_grad():
                model(x[:1].clone(memory_format=torch.channels_last))
            ok = True
        except Exception:  # noqa: BLE001 - any failure: keep the default layout (real errors surface later)
            ok = False
        _LAYOUT_OK[model] = ok
    return ok


#: on the CPU, a forward+backward pass is fastest per image when its input holds about this many
#: elements (larger batches fall out of the cache); the measurements are in docs/benchmarks.md "explain".
CPU_PASS_ELEMENTS = 1 << 17


def pow2_rows(per_row: int, budget: int, lo: int, hi: int) -> int:
    """The largest power of two ``r`` with ``r * per_row <= budget`` (1 if none), clamped to ``lo..hi``."""
    n = max(1, budget // max(int(per_row), 1))
    return int(min(hi, max(lo, 1 << (n.bit_length() - 1))))


def pass_rows(x: torch.Tensor, device: torch.device | str | None = None, model: nn.Module | None = None
              ) -> int:
    """Rows (images) per forward(+backward) pass that the methods use when not told otherwise.

    On the CPU: the largest power of two whose input stays within :data:`CPU_PASS_ELEMENTS`,
    clamped to 8..64; with ``model`` (call it inside :func:`model_guard`), at least
    :func:`~cnnlens.explain.passes.weight_rows` (the pass size by the model's weight). Elsewhere (GPU): up to 2^22 input
    elements, at most 256 rows.
    """
    dev = torch.device(device) if device is not None else x.device
    per_image = max(int(x[0].numel()), 1)
    if dev.type == "cpu":
        rows = pow2_rows(per_image, CPU_PASS_ELEMENTS, 8, 64)
        return rows if model is None else max(rows, weight_rows(model, x))
    return int(max(1, min(256, (1 << 22) // per_image)))


def auto_chunk(x: torch.Tensor, cost: int, device: torch.device | str | None = None) -> int:
    """Images per explain chunk: one pass's rows, divided by the method's cost (passes per image)."""
    return int(max(1, pass_rows(x, device) // max(cost, 1)))


def explain(model: nn.Module, x: torch.Tensor, method: str, target: TargetSpec = None,
            layer: str | int | nn.Module | None = None, *, labels: torch.Tensor | Sequence[int] | None = None,
            chunk_size: int | None = None, progress: Callable[[int, int], None] | None = None,
            probs: bool = True, **options: Any) -> Explanation:
    """Explain the model's decision for each image of ``x``.

    Args:
        model: any classifier ``nn.Module`` returning logits ``[B, K]``; returned untouched.
        x: normalized float ``[B, C, H, W]``.
        method: a name from :func:`methods` (or ``captum:<ClassName>`` when Captum is installed).
        target: ``None`` (predicted class), ``"label"`` (with ``labels``), an int, or one per image.
        layer: dotted name or module for layer methods; default
            :func:`~cnnlens.explain.layers.default_layer_view` (the last ``Conv2d`` or the residual
            block around it; on a vision transformer the last block, or ``blocks[-1].norm1`` when the
            head reads the class token). Token and channels-last outputs are read as ``[B, D, h, w]``.
        chunk_size: images per pass (bounds memory); auto when ``None``.
        progress: optional callback ``(done, total)`` after each chunk.
        probs: ``False``: return no ``probs`` (``None``). With targets given as classes (an int, one
            per image, ``"label"``), SmoothGrad and Integrated Gradients then run no forward pass on
            the clean input, the one pass their maps do not need; IG then returns no
            ``delta``/``completeness_gap`` (they come from that pass and the baseline's). The other
            methods take the logits from their own passes and cost the same either way.

    Returns:
        :class:`Explanation` with ``maps`` ``float32 [B, H, W]`` on ``x``'s device.
    """
    check_input(x)
    impl = METHODS.get(method)
    explainer: Explainer = impl() if isinstance(impl, type) else impl
    state = model_state(model)  # one walk for the device check and the guard
    dev = check_model_device(model, state)
    out_dev = x.device
    lab = None if labels is None else torch.as_tensor(labels).long().view(-1)
    if lab is not None and lab.numel() != x.shape[0]:
        raise CnnlensError(f"labels must have one entry per image ({x.shape[0]}); got {lab.numel()}")
    tgt = check_target(target, x.shape[0])
    n = x.shape[0]
    step = chunk_size or auto_chunk(x, explainer.cost, dev)
    if step < 1:
        raise CnnlensError(f"chunk_size must be >= 1; got {chunk_size}")
    maps, targets, soft, extras_list = [], [], [], []
    with model_guard(model, state) as handles:
        layer_name, layer_mod, view, cl = pass_setup(model, x[:1].to(dev, torch.float32), layer,
                                                     explainer.uses_layer, explainer.channels_last_passes)
        for i in range(0, n, step):
            xc = x[i:i + step].to(dev, torch.float32)
            tc: TargetSpec = tgt
            if isinstance(tgt, torch.Tensor) and tgt.numel() == n and n > 1:
                tc = tgt[i:i + step]
            ctx = Context(model=model, x=xc, target=tc, layer_name=layer_name,
                          layer=layer_mod, handles=handles,
                          labels=None if lab is None else lab[i:i + step].to(dev), channels_last=cl,
                          view=view, want_probs=probs)
            m, extra = explainer.attribute(ctx, **chunk_options(options, n, i, step))
            for h in handles:
                h.remove()
            handles.clear()
            t = ctx.pass_targets()  # ctx.targets, unless no probs are wanted and the classes were given
            if tuple(m.shape) != (xc.shape[0], *xc.shape[-2:]):
                raise RuntimeError(f"method {method!r} returned maps {tuple(m.shape)}; expected "
                                   f"{(xc.shape[0], *xc.shape[-2:])}")
            maps.append(m.detach().float().to(out_dev))
            targets.append(t.detach().to(out_dev))
            if probs:
                soft.append(ctx.logits.float().softmax(1).to(out_dev))  # type: ignore[union-attr]
            extras_list.append(extra)
            if progress is not None:
                progress(min(i + step, n), n)
    return Explanation(maps=torch.cat(maps), method=method, targets=torch.cat(targets),
                       probs=torch.cat(soft) if probs else None, layer=layer_name, signed=explainer.signed,
                       extras=merge_extras(extras_list),
                       layer_transform=None if view is None else view.describe())


#: options that may hold one entry per image (``[N, ...]`` tensors): each chunk gets its rows
PER_IMAGE_OPTIONS = ("baseline",)


def chunk_options(options: dict[str, Any], n: int, start: int, step: int) -> dict[str, Any]:
    """``options`` for the chunk ``[start, start + step)``: per-image tensors (``baseline`` of shape
    ``[N, C, H, W]``) are sliced to the chunk's rows; everything else is passed as is."""
    if n < 2 or start == 0 and step >= n:
        return options
    out = dict(options)
    for k in PER_IMAGE_OPTIONS:
        v = out.get(k)
        if isinstance(v, torch.Tensor) and v.ndim == 4 and v.shape[0] == n:
            out[k] = v[start:start + step]
    return out


def merge_extras(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate per-chunk extras: tensors along dim 0, lists joined, the rest from the first chunk."""
    if len(parts) == 1:
        return parts[0]
    out: dict[str, Any] = {}
    for k, v in parts[0].items():
        vals = [p[k] for p in parts]
        if isinstance(v, torch.Tensor) and v.ndim >= 1:
            out[k] = torch.cat(vals)
        elif isinstance(v, list):
            out[k] = [e for vv in vals for e in vv]
        elif isinstance(v, float | int) and not isinstance(v, bool) and k.endswith(("_max", "max")):
            out[k] = max(vals)
        else:
            out[k] = v
    return out
