"""One render loop: optimize an image parameterization so the model maximizes an objective.

``render(model, objective, ...)`` repeats: image = param() in [0,1] -> random transforms ->
(resize to the model's input size) -> normalize with the model's mean/std -> forward (stopping
after the last layer the objective reads) -> ascend the objective with Adam. A batch of ``B``
images is optimized at once; with a batched objective (``channel(layer, range(64))``) image ``i``
shows filter ``i``, so a whole layer costs one run.

The model comes back untouched (eval mode during the run, training flags, ``requires_grad`` and
hooks restored afterwards, also on error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import model_device, model_guard, resolve_layer
from . import objectives as obj
from . import transforms as T
from .param import ImageParam, make_param
from ..errors import CnnlensError, CnnlensTypeError

log = logging.getLogger(__name__)

SizeSpec = int | tuple[int, int]


# ---- layers ---------------------------------------------------------------------------------------


def filter_layer(model: nn.Module, layer: str | int | nn.Module, bn: bool = True) -> tuple[str, nn.Module]:
    """The module whose output is a filter's pre-ReLU response.

    ``layer`` is resolved with :func:`resolve_layer`. With ``bn=True`` a ``Conv2d`` that is directly
    followed by a ``BatchNorm2d`` (next sibling, as in ``conv -> bn -> relu`` blocks) is read after
    the BatchNorm: still pre-ReLU, but it is what the ReLU sees (a negative BN scale flips the
    filter's sign) and the only place where a layer's channels share one scale. Any other module is
    used as given.
    """
    name, mod = resolve_layer(model, layer)
    if not bn or not isinstance(mod, nn.Conv2d):
        return name, mod
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    kids = list(parent.named_children())
    for i, (n, _m) in enumerate(kids[:-1]):
        if n == child and isinstance(kids[i + 1][1], nn.BatchNorm2d):
            nxt = kids[i + 1][0]
            return (f"{parent_name}.{nxt}" if parent_name else nxt), kids[i + 1][1]
    return name, mod


class _Stop(Exception):
    """Raised by a hook once every needed activation is captured: the rest of the forward is skipped."""


@contextmanager
def capture(
    model: nn.Module, layers: Sequence[str], handles: list[torch.utils.hooks.RemovableHandle]
) -> Iterator[Callable[[torch.Tensor], dict[str, torch.Tensor]]]:
    """Yield ``run(x) -> {layer: output}`` capturing ``layers`` (``"logits"`` = the model's output).

    When no logits are needed the forward pass stops right after the last needed layer, which is
    both faster and lets layers be read at input sizes the classifier head would reject.
    Hooks go into ``handles`` (removed by :func:`model_guard`).
    """
    want = [n for n in layers if n != obj.LOGITS]
    need_logits = obj.LOGITS in layers
    store: dict[str, torch.Tensor] = {}
    mods = {n: resolve_layer(model, n)[1] for n in want}

    def make_hook(name: str) -> Callable[..., Any]:
        def hook(_m: nn.Module, _inp: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor):
                raise CnnlensTypeError(
                    f"layer {name!r} returns {type(out).__name__}, not a tensor; choose a "
                    "layer whose output is a feature map"
                )
            store[name] = out
            if not need_logits and len(store) == len(mods):
                raise _Stop
            return out.clone()  # in-place ops further on cannot change what was captured

        return hook

    own = [m.register_forward_hook(make_hook(n)) for n, m in mods.items()]
    handles.extend(own)

    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        store.clear()
        try:
            out = model(x)
        except _Stop:
            return dict(store)
        if need_logits:
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                raise CnnlensError(
                    "the model must return logits [B, num_classes] for a class objective; "
                    f"it returned {getattr(out, 'shape', type(out).__name__)}"
                )
            store[obj.LOGITS] = out
        missing = [n for n in mods if n not in store]
        if missing:
            raise CnnlensError(f"layer(s) {missing} never ran in the forward pass; pick layers the model uses")
        return dict(store)

    try:
        yield run
    finally:
        for h in own:
            h.remove()


# ---- model input space ----------------------------------------------------------------------------


def _hw(size: SizeSpec) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


@dataclass(frozen=True)
class InputSpace:
    """How the model sees images: ``channels x H x W``, normalized as ``(x - mean) / std``."""

    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @staticmethod
    def make(
        input_size: SizeSpec,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        channels: int | None = None,
    ) -> InputSpace:
        if mean is None and std is None and channels is None:
            raise CnnlensError(
                "give the model's input normalization: mean=..., std=... (per channel, in "
                "[0,1] units, e.g. dataset.mean/dataset.std) or channels=... for un-normalized input"
            )
        c = channels or len(mean or std or ())
        m = tuple(float(v) for v in (mean if mean is not None else [0.0] * c))
        s = tuple(float(v) for v in (std if std is not None else [1.0] * c))
        if len(m) != c or len(s) != c or c not in (1, 3):
            raise CnnlensError(f"mean/std must give one value per channel (1 or 3); got mean={m}, std={s}")
        if any(v <= 0 for v in s):
            raise CnnlensError(f"std must be positive; got {s}")
        return InputSpace(c, _hw(input_size), m, s)

    def normalize(self, img: torch.Tensor) -> torch.Tensor:
        """``[B,C,H,W]`` in [0,1] -> model input, resized to the model's size if needed."""
        if tuple(img.shape[-2:]) != self.size:
            img = F.interpolate(img, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        m = torch.tensor(self.mean, device=img.device, dtype=img.dtype).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=img.device, dtype=img.dtype).view(1, -1, 1, 1)
        return (img - m) / s

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return x * s + m


def quantize(img: torch.Tensor) -> torch.Tensor:
    """[0,1] float -> the same values an 8-bit PNG stores (``round(255 x) / 255``)."""
    return (img.clamp(0, 1) * 255).round() / 255


# ---- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """Result of :func:`render`.

    Attributes:
        images: ``float [B, C, H, W]`` in [0,1] at the render size, quantized to 8 bits (what is exported).
        inputs: ``float [B, C, h, w]`` the exported images in the model's input space (normalized,
            resized to the model's input size).
        scores: ``float [B]`` the objective on ``inputs`` (no transforms): the activation reached.
        history: ``float [steps, B]`` the objective during optimization (on transformed images).
        objective: the objective's name.
        seed: the seed used.
    """

    images: torch.Tensor
    inputs: torch.Tensor
    scores: torch.Tensor
    history: torch.Tensor
    objective: str
    seed: int

    def uint8(self) -> torch.Tensor:
        """``uint8 [B, C, H, W]``."""
        return (self.images * 255).round().to(torch.uint8)


def _transforms(spec: str | Sequence[T.Transform] | None, size: tuple[int, int]) -> T.Transform:
    if spec is None or spec == "none":
        return T.compose([])
    if isinstance(spec, str):
        if spec != "standard":
            raise CnnlensError(
                f"transforms must be 'standard', 'none', None or a list of transforms; got {spec!r}"
            )
        return T.compose(T.standard(size))
    return T.compose(list(spec))


@torch.no_grad()
def score(model: nn.Module, objective: obj.Objective, x: torch.Tensor) -> torch.Tensor:
    """The objective on normalized inputs ``x [B,C,H,W]`` -> ``float [B]`` (model returned untouched)."""
    with model_guard(model) as handles, capture(model, objective.layers, handles) as run:
        with torch.no_grad():
            return objective(run(x.to(model_device(model)))).float().detach()


def render(
    model: nn.Module,
    objective: obj.Objective,
    *,
    input_size: SizeSpec,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    channels: int | None = None,
    batch: int = 1,
    param: str | ImageParam = "fourier",
    transforms: str | Sequence[T.Transform] | None = "standard",
    steps: int = 128,
    lr: float = 0.05,
    size: SizeSpec | None = None,
    seed: int = 0,
    param_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Rendered:
    """Optimize ``batch`` images to maximize ``objective`` (Olah et al., "Feature Visualization",
    Distill 2017): ``max_theta sum_i obj_i(model(normalize(resize(t(param_theta)))))``, ``t`` a fresh
    random transform each step, Adam(``lr``).

    Args:
        model: any ``nn.Module``; returned untouched.
        objective: from :mod:`cnnlens.featureviz.objectives` (batched objectives need ``batch`` = their size).
        input_size: the model's input ``H x W`` (an int for square).
        mean, std: the model's per-channel normalization in [0,1] units (``dataset.mean``/``.std``).
        channels: 1 or 3; by default ``len(mean)``.
        batch: number of images optimized together.
        param: ``"fourier"`` (default), ``"pixel"`` or an :class:`ImageParam`.
        transforms: ``"standard"`` (:func:`transforms.standard`), ``None`` or a list of transforms.
        steps, lr: Adam steps and learning rate.
        size: render size ``H x W`` (default ``input_size``); a larger one is resized to ``input_size``
            for the forward pass.
        seed: seeds a :class:`torch.Generator` for the initial image and every random transform.

    Returns:
        :class:`Rendered` (images ``[B, C, H, W]`` in [0,1], inputs, scores ``[B]``, history ``[steps, B]``).
    """
    if steps < 1:
        raise CnnlensError(f"steps must be >= 1; got {steps}")
    if batch < 1:
        raise CnnlensError(f"batch must be >= 1; got {batch}")
    if not isinstance(objective, obj.Objective):
        raise CnnlensTypeError(
            f"objective must be an Objective (cnnlens.featureviz.channel(...) etc.); got "
            f"{type(objective).__name__}"
        )
    space = InputSpace.make(input_size, mean, std, channels)
    rsize = _hw(size) if size is not None else space.size
    dev = model_device(model)
    g = torch.Generator().manual_seed(int(seed))
    p = make_param(param, (batch, space.channels, *rsize), generator=g, device=dev, **(param_options or {}))
    tf = _transforms(transforms, rsize)
    opt = torch.optim.Adam(p.params, lr=lr)
    hist = torch.empty(steps, batch)
    with model_guard(model) as handles, capture(model, objective.layers, handles) as run:
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            img = p()
            s = objective(run(space.normalize(tf(img, g))))
            if s.shape != (batch,):
                raise CnnlensError(
                    f"objective {objective.name} gave scores of shape {tuple(s.shape)}; "
                    f"expected one per image ({batch})"
                )
            (-s.sum()).backward()
            opt.step()
            hist[i] = s.detach().float().cpu()
            if progress is not None:
                progress(i + 1, steps)
        with torch.no_grad():
            images = quantize(p().detach().float())
            if not torch.isfinite(images).all():
                raise FloatingPointError(f"rendering {objective.name} produced NaN; lower lr (now {lr})")
            inputs = space.normalize(images)
            scores = objective(run(inputs)).float()
    log.debug(
        "rendered %s: %d images, %d steps, final scores %s", objective.name, batch, steps, scores.tolist()[:8]
    )
    return Rendered(
        images=images,
        inputs=inputs,
        scores=scores.detach(),
        history=hist,
        objective=objective.name,
        seed=int(seed),
    )


# ---- whole layers and classes -----------------------------------------------------------------------


def layer_channels(model: nn.Module, layer: str | int | nn.Module, space: InputSpace) -> int:
    """Number of channels of ``layer``'s output (one probe forward pass on a grey image)."""
    name, _ = resolve_layer(model, layer)
    x = space.normalize(torch.full((1, space.channels, *space.size), 0.5, device=model_device(model)))
    with model_guard(model) as handles, capture(model, [name], handles) as run, torch.no_grad():
        a = run(x)[name]
    if a.ndim != 4:
        raise CnnlensError(
            f"layer {name!r} outputs shape {tuple(a.shape)}; filters need a conv layer "
            "([B, K, h, w]); for a dense layer use neuron(...)"
        )
    return int(a.shape[1])


@dataclass(frozen=True)
class FilterViz:
    """Synthetic images for filters of one layer.

    Attributes:
        layer: dotted layer name.
        channels: ``int64 [n]`` the filters shown.
        images: ``float [n, C, H, W]`` in [0,1] (8-bit exact).
        inputs: ``float [n, C, h, w]`` the same in the model's input space.
        activations: ``float [n]`` mean activation of each image's own filter, on the exported image.
        seed: the seed.
    """

    layer: str
    channels: torch.Tensor
    images: torch.Tensor
    inputs: torch.Tensor
    activations: torch.Tensor
    seed: int


def visualize_filters(
    model: nn.Module,
    layer: str | int | nn.Module,
    channels: Sequence[int] | None = None,
    *,
    input_size: SizeSpec,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 64,
    steps: int = 128,
    lr: float = 0.05,
    seed: int = 0,
    param: str = "fourier",
    transforms: str | Sequence[T.Transform] | None = "standard",
    size: SizeSpec | None = None,
    diversity: float = 0.0,
    bn: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> FilterViz:
    """What maximizes each filter of ``layer``: ``batch_size`` filters are optimized in one run
    (image ``i`` maximizes the mean activation of filter ``channels[i]``).

    ``channels=None`` shows every filter of the layer. ``diversity > 0`` adds that multiple of the
    Gram-matrix diversity term (useful when several images target the same filter). The filter's
    response is read pre-ReLU, after its BatchNorm when one follows (:func:`filter_layer`; ``bn=False``
    reads the raw conv output).
    """
    name, _ = filter_layer(model, layer, bn)
    space = InputSpace.make(input_size, mean, std)
    k = layer_channels(model, name, space)
    chans = torch.arange(k) if channels is None else torch.as_tensor(list(channels)).long().view(-1)
    if chans.numel() == 0:
        raise CnnlensError("channels is empty; pass at least one channel index or None for all")
    bad = (chans < 0) | (chans >= k)
    if bad.any():
        raise CnnlensError(
            f"channel {int(chans[bad][0])} is out of range for layer {name!r}, which has {k} "
            f"filters (0..{k - 1})"
        )
    if batch_size < 1:
        raise CnnlensError(f"batch_size must be >= 1; got {batch_size}")
    parts: list[Rendered] = []
    n = chans.numel()
    for i in range(0, n, batch_size):
        c = chans[i : i + batch_size]
        o = obj.channel(name, c)
        if diversity:
            o = o + diversity * obj.diversity(name)
        cb = None
        if progress is not None:
            chunks, done_before = -(-n // batch_size), (i // batch_size) * steps

            def cb(d: int, _t: int, base: int = done_before, total: int = chunks * steps) -> None:
                progress(base + d, total)

        r = render(
            model,
            o,
            input_size=space.size,
            mean=space.mean,
            std=space.std,
            batch=len(c),
            param=param,
            transforms=transforms,
            steps=steps,
            lr=lr,
            size=size,
            seed=seed + i,
            progress=cb,
        )
        parts.append(r)
    images = torch.cat([r.images for r in parts])
    inputs = torch.cat([r.inputs for r in parts])
    acts = score(model, obj.channel(name, chans), inputs)
    return FilterViz(layer=name, channels=chans, images=images, inputs=inputs, activations=acts, seed=seed)


def visualize_classes(
    model: nn.Module,
    classes: Sequence[int],
    *,
    input_size: SizeSpec,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    steps: int = 128,
    lr: float = 0.05,
    seed: int = 0,
    param: str = "fourier",
    transforms: str | Sequence[T.Transform] | None = "standard",
    size: SizeSpec | None = None,
) -> Rendered:
    """One image per class in ``classes`` maximizing that class's logit (never the softmax)."""
    c = torch.as_tensor(list(classes)).long().view(-1)
    return render(
        model,
        obj.class_logit(c),
        input_size=input_size,
        mean=mean,
        std=std,
        batch=c.numel(),
        param=param,
        transforms=transforms,
        steps=steps,
        lr=lr,
        size=size,
        seed=seed,
    )
