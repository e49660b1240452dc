"""Attention rollout (Abnar & Zuidema 2020) for vision transformers with global self-attention.

Each block ``l``'s attention ``A_l`` ``[B, heads, T, T]`` (softmax rows, captured from the model's
own forward pass) is fused over heads (``mean``, ``max`` or ``min``), optionally thinned (the
``discard_ratio`` smallest entries per image set to 0, the class token's attention to itself kept,
as in pytorch-grad-cam's author's ``vit-explain``), mixed with the residual connection and
row-normalized: ``Â_l = norm_rows((A_l + I) / 2)``. The rollout is ``R = Â_L ... Â_2 Â_1``. The map is
the class token's row of ``R`` over the patch tokens (``R[0, P:]``, ``P`` prefix tokens), or, for a
model without prefix tokens, the mean of ``R``'s rows, laid out on the patch grid and upsampled
bilinearly to the input size. Raw values (a distribution over tokens), not normalized.

Class-agnostic: the target does not change the map (the targets are still resolved, for the
contract's ``targets`` and ``probs``). Supported: timm ViT/DeiT/... (``Attention`` modules; fused
attention hides the matrix, so ``fused_attn`` is switched off for the call and restored) and
torchvision ViT (``nn.MultiheadAttention``, asked for per-head weights for the call).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .core import Context, Explainer, register_method, upsample
from .layers import model_prefix_tokens, token_grid
from ..errors import CnnlensError, CnnlensTypeError
from ..registry import check_choice

HEAD_FUSIONS = ("mean", "max", "min")


def _timm_attention(m: nn.Module) -> bool:
    return (isinstance(getattr(m, "fused_attn", None), bool)
            and isinstance(getattr(m, "attn_drop", None), nn.Module))


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's self-attention modules (timm-style ``Attention`` or ``nn.MultiheadAttention``)."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.MultiheadAttention) or _timm_attention(m)]


def rollout(attentions: list[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
            ) -> torch.Tensor:
    """``R = Â_L ... Â_1`` ``[B, T, T]`` from per-block attentions ``[B, heads, T, T]`` (see module doc)."""
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    b, _, t, _ = attentions[0].shape
    eye = torch.eye(t, device=attentions[0].device, dtype=torch.float64)
    result = eye.expand(b, t, t)
    for a in attentions:
        a = a.to(torch.float64)
        fused = {"mean": lambda: a.mean(1), "max": lambda: a.amax(1), "min": lambda: a.amin(1)}[head_fusion]()
        if discard_ratio > 0:
            flat = fused.reshape(b, t * t).clone()
            k = int(t * t * discard_ratio)
            if k:
                idx = flat.topk(k, dim=1, largest=False).indices
                # never the class token's attention to itself (entry 0)
                keep0 = torch.where(idx == 0, idx.new_ones(()) * -1, idx)
                rows = torch.arange(b, device=flat.device).view(-1, 1).expand_as(idx)
                ok = keep0 >= 0
                flat[rows[ok], keep0[ok]] = 0
            fused = flat.view(b, t, t)
        mixed = (fused + eye) / 2
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed @ result
    return result


@register_method
class AttentionRollout(Explainer):
    """Attention rollout (Abnar & Zuidema 2020) for ViT/DeiT: see :mod:`cnnlens.explain.rollout`.

    Options: ``head_fusion`` (``"mean"``, the paper's; ``"max"``, ``"min"``) and ``discard_ratio``
    (0..1, default 0: nothing discarded; ``vit-explain`` shows 0.9 with ``max``).
    """

    name = "attention_rollout"
    description = ("attention rollout: attention propagated through the blocks, class-token row "
                   "(Abnar & Zuidema 2020)")
    signed = False
    cost = 1

    def accepted_options(self) -> tuple[str, ...]:
        return ("head_fusion", "discard_ratio")

    def unsupported(self, model: nn.Module) -> str | None:
        mods = attention_modules(model)
        windows = [n for n, m in model.named_modules() if "windowattention" in type(m).__name__.lower()]
        if windows:
            return (f"attention_rollout needs global self-attention over all tokens; {type(model).__name__} "
                    f"attends within windows ({windows[0]}, as in Swin). Use gradcam or another method")
        if not mods:
            return (f"attention_rollout needs a vision transformer with self-attention (ViT, DeiT); "
                    f"{type(model).__name__} has no attention module. Use gradcam or another method")
        return None

    def attribute(self, ctx: Context, head_fusion: str = "mean",  # type: ignore[override]
                  discard_ratio: float = 0.0) -> tuple[torch.Tensor, dict[str, Any]]:
        check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, int | float):
            raise CnnlensTypeError(f"discard_ratio must be a number in [0, 1); got {discard_ratio!r}")
        if not 0 <= discard_ratio < 1:
            raise CnnlensError(f"discard_ratio must be in [0, 1) (the fraction of each block's smallest "
                               f"attention entries set to 0); got {discard_ratio!r}")
        x = ctx.x
        attns = capture_attention(ctx, x)  # also resolves (and checks) the targets
        why = self.unsupported(ctx.model)
        if why:
            raise CnnlensError(why)
        shapes = {tuple(a.shape) for a in attns}
        b = x.shape[0]
        if not attns:
            raise CnnlensError("attention_rollout found attention modules, but none ran in the forward pass")
        one = next(iter(shapes))
        if len(shapes) != 1 or one[0] != b or one[2] != one[3]:
            raise CnnlensError(f"attention_rollout needs every block's attention as [B={b}, heads, T, T]; "
                               f"got {sorted(shapes)}")
        t = attns[0].shape[-1]
        found = token_grid(t, (x.shape[-2], x.shape[-1]), model_prefix_tokens(ctx.model))
        if found is None:
            raise CnnlensError(f"attention_rollout cannot lay {t} tokens out on a grid for input "
                               f"{tuple(x.shape[-2:])}")
        prefix, (h, w) = found
        r = rollout(attns, head_fusion, float(discard_ratio))
        row = r[:, 0, prefix:] if prefix else r.mean(1)
        grid = row.reshape(b, h, w).to(x.dtype)
        extra = {"rollout": grid, "head_fusion": head_fusion, "discard_ratio": float(discard_ratio),
                 "blocks": len(attns), "prefix_tokens": prefix, "class_agnostic": True}
        return upsample(grid, x.shape[-2:]), extra


def capture_attention(ctx: Context, x: torch.Tensor) -> list[torch.Tensor]:
    """One no-grad forward of ``x`` recording each attention module's ``[B, heads, T, T]`` weights, in
    call order. timm modules run unfused for the call (``fused_attn`` restored after, also on error);
    ``nn.MultiheadAttention`` is called with ``need_weights=True, average_attn_weights=False``."""
    got: list[torch.Tensor] = []
    fused: list[nn.Module] = []
    try:
        for _, m in attention_modules(ctx.model):
            if isinstance(m, nn.MultiheadAttention):
                ctx.handles.append(m.register_forward_pre_hook(_ask_weights, with_kwargs=True))
                ctx.handles.append(m.register_forward_hook(lambda _m, _i, o: got.append(o[1].detach())))
            else:
                if m.fused_attn:
                    fused.append(m)
                    m.fused_attn = False
                ctx.handles.append(m.attn_drop.register_forward_hook(
                    lambda _m, _i, o: got.append(o.detach())))
        with torch.no_grad():
            ctx.targets_from(ctx.forward(x))
    finally:
        for m in fused:
            m.fused_attn = True
        for h in ctx.handles:
            h.remove()
        ctx.handles.clear()
    return got


def _ask_weights(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    return args, {**kwargs, "need_weights": True, "average_attn_weights": False}
