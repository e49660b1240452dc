"""Objectives: what a feature visualization maximizes, as small composable pieces.

An :class:`Objective` maps the activations captured during one forward pass to one score per image
(``float [B]``), to be *maximized*. Objectives add, subtract and scale like numbers::

    obj = channel("cnn.4", 3) - 0.5 * channel("cnn.4", 7) + 0.1 * diversity("cnn.4")

Activations are read from the output of the module named (a ``Conv2d`` gives the pre-ReLU
response, as recommended by Olah et al., "Feature Visualization", Distill 2017). The special layer
name ``"logits"`` is the model's output (class scores, never the softmax).

Batched objectives target one channel per image: ``channel(layer, [0, 1, ..., 63])`` makes image
``i`` maximize channel ``i``, so all 64 filters of a layer are optimized in one run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from ..errors import CnnlensError, CnnlensTypeError

LOGITS = "logits"

Acts = Mapping[str, torch.Tensor]
ChannelSpec = int | Sequence[int] | torch.Tensor


@dataclass(frozen=True)
class Objective:
    """A score per image to maximize.

    Attributes:
        fn: ``acts -> float [B]``, where ``acts`` maps layer names to captured outputs
            (``[B, K, h, w]`` for a conv layer, ``[B, K]`` for ``"logits"``).
        name: readable description, e.g. ``"channel(cnn.4, 3)"``.
        layers: the layer names ``fn`` reads (the render loop hooks exactly these).
    """

    fn: Callable[[Acts], torch.Tensor]
    name: str
    layers: tuple[str, ...]

    def __call__(self, acts: Acts) -> torch.Tensor:
        return self.fn(acts)

    # ---- arithmetic ---------------------------------------------------------------------
    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            return Objective(lambda a: self.fn(a) + other, f"{self.name} + {other}", self.layers)
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(
            lambda a: self.fn(a) + other.fn(a),
            f"{self.name} + {other.name}",
            _merge(self.layers, other.layers),
        )

    def __radd__(self, other: float) -> Objective:  # sum([...]) starts with 0
        if isinstance(other, int | float) and other == 0:
            return self
        return self.__add__(other)

    def __neg__(self) -> Objective:
        return Objective(lambda a: -self.fn(a), f"-({self.name})", self.layers)

    def __sub__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            return self + (-other)
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, int | float) or isinstance(k, bool):
            raise CnnlensTypeError(f"an objective can only be scaled by a number; got {type(k).__name__}")
        return Objective(lambda a: k * self.fn(a), f"{k} * {self.name}", self.layers)

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)


def _merge(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))


def _get(acts: Acts, layer: str, ndim: int | None = None) -> torch.Tensor:
    a = acts[layer]
    if ndim is not None and a.ndim != ndim:
        raise CnnlensError(
            f"layer {layer!r} gives output of shape {tuple(a.shape)}; this objective needs "
            f"{'[B, K, h, w] (a conv layer)' if ndim == 4 else '[B, K]'}"
        )
    return a


def _per_image(k: ChannelSpec, b: int, n: int, what: str, layer: str) -> torch.Tensor:
    """Channel index per image: an int is used for every image, a sequence gives one per image."""
    t = torch.as_tensor(k).long().view(-1)
    if t.numel() == 1:
        t = t.expand(b)
    elif t.numel() != b:
        raise CnnlensError(
            f"{what} gives {t.numel()} indices for a batch of {b} images; give one per image or a single int"
        )
    bad = (t < 0) | (t >= n)
    if bad.any():
        raise CnnlensError(
            f"{what} index {int(t[bad][0])} is out of range for {layer!r}, which has {n} (0..{n - 1})"
        )
    return t


def _label(k: ChannelSpec) -> str:
    t = torch.as_tensor(k).view(-1).tolist()
    if len(t) == 1:
        return str(t[0])
    if t == list(range(t[0], t[0] + len(t))):
        return f"{t[0]}..{t[-1]}"
    return ",".join(map(str, t[:4])) + (",..." if len(t) > 4 else "")


def channel(layer: str | int, k: ChannelSpec) -> Objective:
    """Mean activation of channel ``k`` of ``layer`` over all spatial positions.

    ``score_i = mean_{y,x} A[i, k_i, y, x]`` with ``A`` the layer's output ``[B, K, h, w]``;
    ``k`` is an int (every image) or one index per image (batched: image ``i`` targets ``k[i]``).
    """
    layer = str(layer)
    idx_cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def fn(acts: Acts) -> torch.Tensor:
        a = _get(acts, layer, 4)
        key = (a.shape[0], a.shape[1], str(a.device))
        if key not in idx_cache:
            idx_cache[key] = _per_image(k, a.shape[0], a.shape[1], "channel", layer).to(a.device)
        idx = idx_cache[key]
        return a[torch.arange(a.shape[0], device=a.device), idx].mean((1, 2))

    return Objective(fn, f"channel({layer}, {_label(k)})", (layer,))


def neuron(layer: str | int, k: ChannelSpec, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of one unit: channel ``k`` at position ``(y, x)`` (default the centre).

    ``score_i = A[i, k_i, y, x]``. Works for conv outputs ``[B,K,h,w]`` and flat ones ``[B,K]``.
    """
    layer = str(layer)

    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]
        idx = _per_image(k, a.shape[0], a.shape[1], "neuron", layer).to(a.device)
        rows = torch.arange(a.shape[0], device=a.device)
        if a.ndim == 2:
            return a[rows, idx]
        if a.ndim != 4:
            raise CnnlensError(
                f"layer {layer!r} gives output of shape {tuple(a.shape)}; neuron needs [B,K] or [B,K,h,w]"
            )
        h, w = a.shape[-2:]
        yy = h // 2 if y is None else y
        xx = w // 2 if x is None else x
        if not (0 <= yy < h and 0 <= xx < w):
            raise CnnlensError(f"neuron position ({yy}, {xx}) is outside {layer!r}'s {h}x{w} output")
        return a[rows, idx, yy, xx]

    return Objective(fn, f"neuron({layer}, {_label(k)})", (layer,))


def class_logit(k: ChannelSpec) -> Objective:
    """The logit (pre-softmax score) of class ``k``: ``score_i = z[i, k_i]``.

    The softmax is never maximized directly: it can rise by lowering the other classes, which
    yields images of "not the others" rather than of the class (Simonyan et al., 2014).
    """

    def fn(acts: Acts) -> torch.Tensor:
        z = _get(acts, LOGITS, 2)
        idx = _per_image(k, z.shape[0], z.shape[1], "class", "the model's output").to(z.device)
        return z[torch.arange(z.shape[0], device=z.device), idx]

    return Objective(fn, f"class_logit({_label(k)})", (LOGITS,))


def layer_l2(layer: str | int) -> Objective:
    """Deep Dream's objective: mean squared activation of the whole layer, ``mean A[i]^2``."""
    layer = str(layer)

    def fn(acts: Acts) -> torch.Tensor:
        a = acts[layer]
        return a.pow(2).flatten(1).mean(1)

    return Objective(fn, f"layer_l2({layer})", (layer,))


def diversity(layer: str | int) -> Objective:
    """Diversity term for a batch (Olah et al. 2017): minus the mean cosine similarity of each
    image's Gram matrix with the others'.

    ``G_i = A_i A_i^T / (h w)`` (``A_i``: ``[K, h*w]``), ``score_i = -mean_{j != i} cos(G_i, G_j)``.
    A batch of one scores 0.
    """
    layer = str(layer)

    def fn(acts: Acts) -> torch.Tensor:
        a = _get(acts, layer, 4)
        b, k = a.shape[:2]
        if b < 2:
            return a.new_zeros(b)
        flat = a.reshape(b, k, -1)
        gram = torch.bmm(flat, flat.transpose(1, 2)).reshape(b, -1) / flat.shape[-1]
        g = F.normalize(gram, dim=1)
        sim = g @ g.T
        off = sim.sum(1) - sim.diagonal()
        return -off / (b - 1)

    return Objective(fn, f"diversity({layer})", (layer,))
