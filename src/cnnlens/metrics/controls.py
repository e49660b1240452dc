"""Controls: attribution "methods" that ignore the model, scored alongside every real method.

Adebayo et al. (2018, "Sanity Checks for Saliency Maps") showed that an edge detector produces
maps that look like explanations; a method that scores no better than these controls tells the
user nothing about their model. Both are registered in ``METHODS`` so they run through exactly the
same contract (``explain(model, x, "control_edge")``) and the same metrics as every method.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..explain.core import Context, Explainer, register_method

CONTROLS = ("control_random", "control_edge")


def is_control(method: str) -> bool:
    return method in CONTROLS


@register_method
class RandomControl(Explainer):
    """Control: a map of i.i.d. uniform noise in ``[0, 1)``, independent of the model and the image.

    ``seed=`` makes it reproducible; without it every call draws fresh noise (so two calls on the
    same images are uncorrelated: the floor of every similarity test).
    """

    name = "control_random"
    description = "CONTROL (ignores the model): uniform random noise map"

    def __init__(self) -> None:
        self._gen: torch.Generator | None = None

    def attribute(
        self, ctx: Context, seed: int | None = None, **_: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        if self._gen is None:  # one stream per explain() call, continued across chunks
            self._gen = torch.Generator()
            if seed is None:
                seed = int(torch.randint(0, 2**62, (1,)).item())
            self._gen.manual_seed(int(seed))
        b, _, h, w = ctx.x.shape
        _ = ctx.targets  # targets and probabilities are reported like for any method
        return torch.rand(b, h, w, generator=self._gen).to(ctx.x.device), {}


SOBEL_X = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude ``sqrt(gx^2 + gy^2)`` per channel, summed over channels.

    ``x`` float ``[B, C, H, W]`` -> ``[B, H, W]``; borders replicate the edge pixels.
    """
    b, c, h, w = x.shape
    k = torch.stack([SOBEL_X, SOBEL_X.t()]).to(x.device, x.dtype).unsqueeze(1)  # [2,1,3,3]
    xp = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(xp, k)  # [B*C, 2, H, W]
    return g.pow(2).sum(1).sqrt().reshape(b, c, h, w).sum(1)


@register_method
class EdgeControl(Explainer):
    """Control: Sobel edge magnitude of the input image; the model plays no part."""

    name = "control_edge"
    description = "CONTROL (ignores the model): Sobel edge magnitude of the image"

    def attribute(self, ctx: Context, **_: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        _ = ctx.targets
        return sobel_magnitude(ctx.x.detach()), {}
