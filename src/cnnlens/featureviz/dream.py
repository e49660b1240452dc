"""Deep Dream on a real image (Mordvintsev, Olah & Tyka, "Inceptionism", Google Research blog, 2015).

Gradient *ascent on the image itself* so that a layer (or one of its filters) responds more:

- each step rolls the image by a random offset (jitter), takes the gradient of the objective,
  un-rolls it and divides it by its mean absolute value (normalized step);
  ``img <- clip(img + lr/255 * g / mean|g| - lr * weight_decay * (img - mean), 0, 1)``,
  so ``lr`` is the mean step in 0-255 grey levels and the weight decay pulls towards the dataset
  mean (the zero of the normalized input, as SGD's weight decay on a normalized image);
- octaves: the image is processed from ``octave_scale**(octaves-1)`` times smaller up to full size;
  the detail added at one octave (``dreamed - base``) is upscaled and carried to the next.

Objective: the mean activation of ``channel`` of ``layer``, or the mean squared activation of the
whole layer when no channel is given (the original Deep Dream objective). The forward pass stops at
the layer, so smaller octaves work whenever the layers up to it are convolutional.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import model_device, model_guard
from . import objectives as obj
from .render import InputSpace, capture, filter_layer, quantize
from ..errors import CnnlensError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dream:
    """Result of :func:`deep_dream`.

    Attributes:
        image: ``float [C, H, W]`` the final image in [0,1] (8-bit exact).
        snapshots: ``float [S, C, H, W]`` full-size images in [0,1] at ``snapshot_steps`` (step 0 =
            the original).
        snapshot_steps: the global step count (over all octaves) of each snapshot.
        octave_sizes: ``(h, w)`` of each octave, smallest first.
        octave_scores: ``float [octaves]`` the objective on the full-size image after each octave.
        initial_score: the objective on the original image.
        layer: dotted name of the module read; channel: the filter (``None`` = whole layer).
        objective: the objective's name.
    """

    image: torch.Tensor
    snapshots: torch.Tensor
    snapshot_steps: list[int]
    octave_sizes: list[tuple[int, int]]
    octave_scores: torch.Tensor
    initial_score: float
    layer: str
    channel: int | None
    objective: str


def _resize(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)


def deep_dream(
    model: nn.Module,
    image: torch.Tensor,
    layer: str | int | nn.Module,
    channel: int | None = None,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    steps: int = 20,
    lr: float = 4.0,
    weight_decay: float = 0.0,
    every: int = 10,
    octaves: int = 3,
    octave_scale: float = 1.4,
    jitter: float = 0.0625,
    seed: int = 0,
    bn: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Dream:
    """Dream on ``image`` (uint8 ``[C, H, W]``, or float in [0,1]) at the model's own input size.

    Args:
        layer: by name, by index into the leaf layers (``34`` as ``features[34]``) or module.
        channel: one filter to amplify (e.g. ``94``); ``None`` amplifies the whole layer.
        mean, std: the model's normalization (``dataset.mean``/``.std``).
        steps: steps per octave; lr: mean step in grey levels (0-255); weight_decay: see module doc.
        every: keep a full-size snapshot every ``every`` steps (counted over all octaves).
        octaves, octave_scale: number of scales and the ratio between neighbouring ones.
        jitter: random roll of up to ``jitter * size`` pixels each step.
        seed: seeds the rolls.

    The report's run is ``deep_dream(m, img, 34, 94, lr=12, weight_decay=1e-4, every=10)``.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise CnnlensError(
            f"image must be one image [C, H, W] (uint8 or float in [0,1]); got "
            f"{getattr(image, 'shape', type(image).__name__)}"
        )
    for nm, v, lo in (("steps", steps, 1), ("every", every, 1), ("octaves", octaves, 1)):
        if int(v) < lo:
            raise CnnlensError(f"{nm} must be >= {lo}; got {v}")
    if octave_scale <= 1.0 and octaves > 1:
        raise CnnlensError(f"octave_scale must be > 1 (e.g. 1.4); got {octave_scale}")
    if lr <= 0:
        raise CnnlensError(f"lr must be > 0; got {lr}")
    img0 = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    if img0.min() < 0 or img0.max() > 1:
        raise CnnlensError(
            "a float image must be in [0, 1] (pixel space, not normalized); pass the raw uint8 "
            "image or dataset.denormalize(x)"
        )
    c, H, W = img0.shape
    space = InputSpace.make((H, W), mean, std)
    if c != space.channels:
        raise CnnlensError(f"image has {c} channels but mean/std give {space.channels}")
    name, _ = filter_layer(model, layer, bn)
    objective = obj.layer_l2(name) if channel is None else obj.channel(name, int(channel))
    dev = model_device(model)
    g = torch.Generator().manual_seed(int(seed))
    sizes = [
        (max(1, round(H / octave_scale**i)), max(1, round(W / octave_scale**i)))
        for i in reversed(range(octaves))
    ]
    full = img0[None].to(dev)
    mpix = torch.tensor(space.mean, device=dev).view(1, -1, 1, 1)
    spix = torch.tensor(space.std, device=dev).view(1, -1, 1, 1)
    total = steps * octaves
    snaps, snap_steps, oct_scores = [quantize(full[0]).cpu()], [0], []
    step = 0
    with model_guard(model) as handles, capture(model, objective.layers, handles) as run:

        def value(im: torch.Tensor) -> float:
            with torch.no_grad():
                return float(objective(run(space.normalize(im)))[0])

        try:
            with torch.no_grad():
                run((_resize(full, sizes[0]) - mpix) / spix)  # at its own size, not resized back
        except (RuntimeError, AssertionError) as e:  # timm asserts its input size (ViT, Swin)
            raise CnnlensError(
                f"layer {name!r} cannot be computed at the smallest octave {sizes[0]}: {e}. "
                "Use fewer octaves or a smaller octave_scale"
            ) from None
        initial = value(full)
        detail = torch.zeros_like(_resize(full, sizes[0]))
        for size in sizes:
            base = _resize(full, size)
            img = (base + _resize(detail, size)).clamp(0, 1)
            d = max(1, round(jitter * max(size)))
            for _ in range(steps):
                dy, dx = torch.randint(-d, d + 1, (2,), generator=g).tolist()
                rolled = torch.roll(img, (dy, dx), (-2, -1)).detach().requires_grad_(True)
                s = objective(run((rolled - mpix) / spix)).sum()
                (grad,) = torch.autograd.grad(s, rolled)
                grad = torch.roll(grad, (-dy, -dx), (-2, -1))
                with torch.no_grad():
                    grad = grad / grad.abs().mean().clamp_min(1e-12)
                    img = img + (lr / 255.0) * grad
                    if weight_decay:
                        img = img - lr * weight_decay * (img - mpix)
                    img = img.clamp(0, 1)
                step += 1
                if step % every == 0:
                    snaps.append(quantize((full + _resize(img - base, (H, W))).clamp(0, 1)[0]).cpu())
                    snap_steps.append(step)
                if progress is not None:
                    progress(step, total)
            detail = (img - base).detach()
            oct_scores.append(value(quantize((full + _resize(detail, (H, W))).clamp(0, 1))))
            log.debug("octave %s: objective %.4f", size, oct_scores[-1])
    final = quantize((full + _resize(detail, (H, W))).clamp(0, 1))[0].cpu()
    return Dream(
        image=final,
        snapshots=torch.stack(snaps),
        snapshot_steps=snap_steps,
        octave_sizes=sizes,
        octave_scores=torch.tensor(oct_scores),
        initial_score=initial,
        layer=name,
        channel=None if channel is None else int(channel),
        objective=objective.name,
    )
