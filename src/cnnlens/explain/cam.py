"""Class activation maps on a conv layer."""

from __future__ import annotations

from typing import Any

import torch

from .core import Context, Explainer, register_method, upsample


@register_method
class GradCAM(Explainer):
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k w_k A_k)``, ``w_k = mean_ij dy_t/dA_kij``,

    upsampled bilinearly to the input size. All-zero maps are counted in ``extras['zero_maps']``.
    """

    name = "gradcam"
    description = "Grad-CAM: ReLU(sum_k mean(dy/dA_k) A_k) on a conv layer, upsampled (Selvaraju et al. 2017)"
    uses_layer = True

    def attribute(self, ctx: Context, **options: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        store = ctx.capture()
        _, _, ga = ctx.forward_grad(ctx.x, store, wrt_input=False)
        act = store["act"].detach()
        cam = cam_from_weights(act, ga.mean((2, 3)))  # type: ignore[union-attr]
        return upsample(cam, ctx.x.shape[-2:]), {"zero_maps": zero_maps(cam)}


def cam_from_weights(act: torch.Tensor, weights: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """``[B,K,h,w]`` activations and ``[B,K]`` (or ``[B,K,h,w]``) weights -> ``[B,h,w]`` map."""
    if weights.ndim == 2:
        weights = weights[:, :, None, None]
    cam = (weights * act).sum(1)
    return cam.clamp_min(0) if relu else cam


def zero_maps(cam: torch.Tensor) -> torch.Tensor:
    """``bool [B]``: maps that are zero everywhere (reported, never divided by)."""
    return cam.flatten(1).abs().amax(1) <= 0
