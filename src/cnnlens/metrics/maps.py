"""The images and maps of a trust run: a seeded image draw, the default methods, and maps that do
not depend on which other images share the batch (stochastic methods are seeded per image)."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.base import ImageDataset
from ..errors import CnnlensError
from ..explain.core import METHODS, explain
from .controls import is_control


def select_images(dataset: ImageDataset, n_images: int, split: str = "test", seed: int = 0) -> torch.Tensor:
    """``int64 [n]`` indices: a seeded random subset of ``split`` (all of it if smaller)."""
    if not isinstance(n_images, int) or n_images < 2:
        raise CnnlensError(f"n_images must be an int >= 2 (scores need a spread); got {n_images!r}")
    idx = dataset.indices(split)
    g = torch.Generator().manual_seed(seed)
    return idx[torch.randperm(len(idx), generator=g)[:n_images]].sort().values


def default_methods(max_cost: int | None = None, model: nn.Module | None = None
                    ) -> tuple[list[str], list[tuple[str, str]]]:
    """All registered methods (controls last), minus those whose ``cost`` exceeds ``max_cost`` and,
    given ``model``, those that cannot explain it (``Explainer.unsupported``: attention rollout on a
    CNN); each left-out method comes with its reason."""
    chosen, skipped = [], []
    for name in METHODS.names():
        if is_control(name):
            continue
        impl = METHODS.get(name)
        cost = getattr(impl, "cost", 1)
        why = None
        if model is not None and hasattr(impl, "unsupported"):
            why = (impl() if isinstance(impl, type) else impl).unsupported(model)
        if why:
            skipped.append((name, why))
        elif max_cost is not None and cost > max_cost:
            skipped.append((name, f"cost {cost} passes/image > max_cost {max_cost}"))
        else:
            chosen.append(name)
    return chosen, skipped


def image_seed(seed: int, index: int, call: int = 0) -> int:
    """The seed of one image's random draws: a function of ``(seed, index, call)`` only.

    ``index`` is the image's index in the dataset, so its noise does not depend on which images
    share its batch or its process. ``call`` numbers the explain calls of one method (only the
    random control draws fresh noise per call). Mixed with NumPy's ``SeedSequence``; ``[0, 2^62)``.
    """
    state = np.random.SeedSequence([int(seed) % 2**64, int(index), int(call)]).generate_state(1, np.uint64)
    return int(state[0]) >> 2


def is_stochastic(method: str, options: dict[str, Any] | None = None) -> bool:
    """Whether ``explain(method, **options)`` draws random numbers (and so takes a ``seed``): the
    random control, SmoothGrad, LIME, KernelSHAP, RISE, and a gradient method with ``nt_samples``."""
    options = options or {}
    impl = METHODS.get(method)
    inst = impl() if isinstance(impl, type) else impl
    names = set(getattr(inst, "accepted_options", lambda: ())() or ())
    names |= set(inspect.signature(inst.attribute).parameters)
    if "nt_samples" in names:  # a gradient method: random only through the noise tunnel
        return bool(options.get("nt_samples"))
    return "seed" in names


def explain_maps(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: torch.Tensor,
    index: torch.Tensor,
    options: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    call: int = 0,
) -> torch.Tensor:
    """Maps ``[B, H, W]`` of ``method`` for images ``x`` ``[B, C, H, W]`` (targets ``[B]``), the
    same whatever images share the batch: a stochastic method (:func:`is_stochastic`) explains one
    image at a time, image ``i`` with seed ``image_seed(options.get("seed", seed), index[i], call)``
    (``call`` counts only for the random control, whose noise is fresh on every call).
    ``options={"seed": None}`` asks for unseeded draws (not reproducible)."""
    opts = dict(options or {})
    if not is_stochastic(method, opts) or ("seed" in opts and opts["seed"] is None):
        return explain(model, x, method, target=target, **opts).maps
    base = int(opts.pop("seed", seed))
    fresh = call if method == "control_random" else 0
    return torch.cat(
        [
            explain(model, x[i : i + 1], method, target=target[i : i + 1],
                    seed=image_seed(base, int(index[i]), fresh), **opts).maps
            for i in range(x.shape[0])
        ]
    )
