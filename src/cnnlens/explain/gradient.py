"""Gradient methods on the input."""

from __future__ import annotations

from typing import Any

import torch

from .core import Context, Explainer, register_method


@register_method
class Saliency(Explainer):
    """Vanilla gradient (Simonyan et al. 2014): ``max_c |d y_t / d x_c|``.

    The reports' saliency map: absolute gradient of the target logit, max over channels.
    """

    name = "saliency"
    description = "vanilla gradient |dy/dx|, max over channels (Simonyan et al. 2014)"

    def attribute(self, ctx: Context, **options: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        _, gx, _ = ctx.forward_grad(ctx.x)
        return gx.abs().amax(1), {}  # type: ignore[union-attr]
