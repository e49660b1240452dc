"""Class activation maps on a conv layer: Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, Score-CAM,
Eigen-CAM and Guided Grad-CAM.

Every CAM is ``ReLU(sum_k w_k A_k)`` (or an elementwise-weighted variant) on the layer's output
``A`` ``[B, K, h, w]``; only the weights differ, so each method is a few lines on top of
:class:`CAMMethod`. The map is upsampled bilinearly (``align_corners=False``) to the input size and
*not* normalized (raw, as the contract says); ``extras['cam']`` holds the ``[B, h, w]`` map at layer
resolution and ``extras['zero_maps']`` flags maps that are zero everywhere (nothing is divided by
them). The formulas follow pytorch-grad-cam (same epsilons), which the tests check.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .core import Context, Explainer, register_method, upsample
from .gradient import GradientMethod, Pass, reduce_channels, row_budget, run_pass
from .guided import activation_rule
from ..errors import CnnlensError, CnnlensTypeError


def cam_from_weights(act: torch.Tensor, weights: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """``[B,K,h,w]`` activations and ``[B,K]`` (or ``[B,K,h,w]``) weights -> ``[B,h,w]`` map."""
    if weights.ndim == 2:
        weights = weights[:, :, None, None]
    cam = (weights * act).sum(1)
    return cam.clamp_min(0) if relu else cam


def zero_maps(cam: torch.Tensor) -> torch.Tensor:
    """``bool [B]``: maps that are zero everywhere (reported, never divided by)."""
    return cam.flatten(1).abs().amax(1) <= 0


class CAMMethod(Explainer):
    """A CAM from one pass: subclasses give :meth:`raw_cam` (before the final ReLU)."""

    uses_layer = True
    shareable = True
    needs_grad = True
    needs_input_grad = False
    channels_last_passes = True

    def raw_cam(self, act: torch.Tensor, ga: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def accepted_options(self) -> tuple[str, ...]:
        return ()

    def attribute(self, ctx: Context, **options: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        if options:
            raise CnnlensTypeError(f"{self.name} takes no options; got {', '.join(options)}")
        p = run_pass(ctx, need_input=False, need_layer=True, need_grad=self.needs_grad)
        return self.from_pass(ctx, p)

    def from_pass(self, ctx: Context, p: Pass) -> tuple[torch.Tensor, dict[str, Any]]:
        act = check_feature_map(p.act, ctx)
        raw, extra = self.raw_cam(act, p.ga)
        cam = raw.clamp_min(0)
        return upsample(cam, ctx.x.shape[-2:]), {"cam": cam, "zero_maps": zero_maps(cam), **extra}


def check_feature_map(act: torch.Tensor | None, ctx: Context) -> torch.Tensor:
    if act is None or act.ndim != 4:
        shape = None if act is None else tuple(act.shape)
        raise CnnlensError(f"layer {ctx.layer_name!r} outputs {shape}; CAM methods need a feature map "
                         "[B, K, h, w]: pass layer=<name of a conv layer or block>")
    return act


@register_method
class GradCAM(CAMMethod):
    """Grad-CAM (Selvaraju et al. 2017): ``ReLU(sum_k w_k A_k)``, ``w_k = mean_ij dy_t/dA_kij``."""

    name = "gradcam"
    description = "Grad-CAM: ReLU(sum_k mean(dy/dA_k) A_k) on a conv layer, upsampled (Selvaraju et al. 2017)"

    def raw_cam(self, act, ga):  # type: ignore[no-untyped-def,override]
        return cam_from_weights(act, ga.mean((2, 3)), relu=False), {}


@register_method
class GradCAMpp(CAMMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018), eq. 19 with exponentials as in pytorch-grad-cam:

    ``a_kij = g^2 / (2 g^2 + sum_ij(A_k) g^3 + 1e-6)`` (0 where ``g = 0``),
    ``w_k = sum_ij a_kij ReLU(g_kij)``, map ``ReLU(sum_k w_k A_k)``; ``g = dy_t/dA``.
    """

    name = "gradcam_pp"
    description = "Grad-CAM++: pixel-weighted positive gradients as weights (Chattopadhay et al. 2018)"

    def raw_cam(self, act, ga):  # type: ignore[no-untyped-def,override]
        g2 = ga * ga
        g3 = g2 * ga
        s = act.sum((2, 3), keepdim=True)
        aij = g2 / (2 * g2 + s * g3 + 1e-6)
        aij = torch.where(ga != 0, aij, torch.zeros_like(aij))
        w = (ga.clamp_min(0) * aij).sum((2, 3))
        return cam_from_weights(act, w, relu=False), {}


@register_method
class XGradCAM(CAMMethod):
    """XGrad-CAM (Fu et al. 2020): ``w_k = sum_ij (A_kij / (sum_ij A_kij + 1e-7)) dy_t/dA_kij``."""

    name = "xgradcam"
    description = "XGrad-CAM: activation-normalized gradient weights (Fu et al. 2020)"

    def raw_cam(self, act, ga):  # type: ignore[no-untyped-def,override]
        s = act.sum((2, 3), keepdim=True)
        w = (ga * act / (s + 1e-7)).sum((2, 3))
        return cam_from_weights(act, w, relu=False), {}


@register_method
class LayerCAM(CAMMethod):
    """LayerCAM (Jiang et al. 2021): ``ReLU(sum_k ReLU(dy_t/dA_kij) A_kij)`` (elementwise weights)."""

    name = "layercam"
    description = "LayerCAM: positive gradients weight each activation elementwise (Jiang et al. 2021)"

    def raw_cam(self, act, ga):  # type: ignore[no-untyped-def,override]
        return (ga.clamp_min(0) * act).sum(1), {}


@register_method
class EigenCAM(CAMMethod):
    """Eigen-CAM (Muhammad & Yeasin 2020): projection of the centered activations ``[hw, K]`` on their

    first right singular vector. The SVD's sign is arbitrary; it is chosen so the projection
    correlates positively with the channel-summed activation (``extras['projection']`` keeps the
    signed map at layer resolution). Class-agnostic: the target does not change the map.
    """

    name = "eigencam"
    description = "Eigen-CAM: first principal component of the layer's activations (Muhammad & Yeasin 2020)"
    needs_grad = False

    def raw_cam(self, act, ga):  # type: ignore[no-untyped-def,override]
        b, k, h, w = act.shape
        m = act.reshape(b, k, h * w).transpose(1, 2)  # [B, hw, K]
        m = m - m.mean(1, keepdim=True)
        _, _, vh = torch.linalg.svd(m, full_matrices=False)
        proj = (m @ vh[:, 0, :].unsqueeze(-1)).squeeze(-1)  # [B, hw]
        total = act.sum(1).reshape(b, h * w)
        corr = (proj * (total - total.mean(1, keepdim=True))).sum(1)
        sign = torch.where(corr < 0, -1.0, 1.0).to(proj.dtype)
        proj = (proj * sign[:, None]).reshape(b, h, w)
        return proj, {"projection": proj}


@register_method
class ScoreCAM(CAMMethod):
    """Score-CAM (Wang et al. 2020), as pytorch-grad-cam computes it:

    each channel ``A_k`` is upsampled (bilinear, ``align_corners=True``) to the input size and
    min-max normalized to a mask ``M_k = (U_k - min U_k) / (max U_k - min U_k + 1e-8)``; the score
    ``s_k = y_t(x * M_k)`` (logit); ``w = softmax_k(s)``; map ``ReLU(sum_k w_k A_k)``. No gradients.
    The ``B*K`` masked images run in batches of ``batch_size`` rows (memory bound); by default as
    many as the other methods use (:func:`~cnnlens.explain.gradient.row_budget`: on the CPU sized by
    the input and by the model's weight, so a transformer or a weight-heavy CNN gets wide passes).

    ``max_channels=N`` (default: all): on a layer with more than ``N`` channels (a ViT-B block has
    768), only the ``N`` channels whose activation varies most over the grid (per image) are scored,
    as in Faster Score-CAM; the others get weight 0 and the softmax runs over the scored ones.
    ``extras['channels_scored']`` and ``extras['channels']`` record how many of how many were used.
    """

    name = "scorecam"
    description = "Score-CAM: weights from the logits of the input masked by each channel (Wang et al. 2020)"
    needs_grad = False
    shareable = False
    cost = 16

    def accepted_options(self) -> tuple[str, ...]:
        return ("batch_size", "max_channels")

    def attribute(self, ctx: Context, batch_size: int | None = None,  # type: ignore[override]
                  max_channels: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        if max_channels is not None and (isinstance(max_channels, bool) or not isinstance(max_channels, int)
                                         or max_channels < 1):
            raise CnnlensError("max_channels must be a positive int (channels scored per image); got "
                               f"{max_channels!r}")
        p = run_pass(ctx, need_input=False, need_layer=True, need_grad=False)
        full = check_feature_map(p.act, ctx)
        t = ctx.targets
        x = ctx.x
        b, total = full.shape[:2]
        act, chosen = full, None
        if max_channels is not None and max_channels < total:
            chosen = full.flatten(2).var(2).topk(max_channels, dim=1).indices.sort(1).values  # [B, N]
            act = full.gather(1, chosen[:, :, None, None].expand(-1, -1, *full.shape[2:]))
        k = act.shape[1]
        rows = row_budget(x, batch_size, ctx.model)
        flat = act.reshape(b * k, 1, *act.shape[2:])
        img = torch.arange(b, device=x.device).repeat_interleave(k)
        scores = torch.empty(b * k, device=x.device, dtype=x.dtype)
        with torch.no_grad():
            for i in range(0, b * k, rows):
                up = F.interpolate(flat[i:i + rows], size=x.shape[-2:], mode="bilinear", align_corners=True)
                lo = up.flatten(1).amin(1).view(-1, 1, 1, 1)
                hi = up.flatten(1).amax(1).view(-1, 1, 1, 1)
                mask = (up - lo) / (hi - lo + 1e-8)
                idx = img[i:i + rows]
                out = ctx.forward(x[idx] * mask)
                scores[i:i + rows] = out.gather(1, t[idx].view(-1, 1)).squeeze(1)
        w = scores.view(b, k).softmax(1)
        cam = cam_from_weights(act, w, relu=True)
        extra = {"cam": cam, "zero_maps": zero_maps(cam), "channel_scores": scores.view(b, k),
                 "channels_scored": k, "channels": total}
        if chosen is not None:
            extra["scored_channels"] = chosen
        return upsample(cam, x.shape[-2:]), extra


@register_method
class GuidedGradCAM(GradientMethod):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backpropagation ``[B,C,H,W]`` times the Grad-CAM

    map upsampled to the input (bilinear), summed over channels (as Captum's ``GuidedGradCam`` with
    ``interpolate_mode='bilinear'``). Two passes: Grad-CAM needs the plain gradient.
    """

    name = "guided_gradcam"
    description = "Guided Grad-CAM: guided backprop x upsampled Grad-CAM (Selvaraju et al. 2017)"
    uses_layer = True
    option_names = ("force",)
    cost = 2

    def channel_attr(self, ctx, x, t, rows, force=False):  # type: ignore[no-untyped-def,override]
        # One forward pass for both: the guided gates are switched to "plain" for the Grad-CAM
        # backward (to the layer), then back to "guided" for the backward to the input.
        clean = t is None
        store = ctx.capture()
        handle = ctx.handles[-1]
        try:
            with activation_rule(ctx.model, "guided", ctx.handles, force=force) as info:
                xg = x.detach().requires_grad_(True)
                logits = ctx.forward(xg)
        finally:
            handle.remove()
        unguided = info["unguided"]
        if clean:
            t = ctx.targets_from(logits)
        score = logits.gather(1, t.view(-1, 1)).sum()
        act = check_feature_map(store["act"], ctx)
        info["set_rule"]("plain")
        (ga,) = torch.autograd.grad(score, act, retain_graph=True, allow_unused=True)
        if ga is None:
            raise CnnlensError(f"the model's output does not depend on layer {ctx.layer_name!r}; pass "
                             "layer=<a conv layer on the path to the output>")
        info["set_rule"]("guided")
        (g,) = torch.autograd.grad(score, xg)
        cam = cam_from_weights(act.detach(), ga.mean((2, 3)), relu=True)
        gc = upsample(cam, x.shape[-2:])
        extra = {"cam": cam, "zero_maps": zero_maps(cam)}
        if unguided:
            extra["unguided"] = unguided
        return g.detach() * gc.unsqueeze(1), (extra if clean else {})


__all__ = ["CAMMethod", "EigenCAM", "GradCAM", "GradCAMpp", "GuidedGradCAM", "LayerCAM", "ScoreCAM",
           "XGradCAM", "cam_from_weights", "reduce_channels", "zero_maps"]
