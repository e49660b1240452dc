"""Small vision transformers and modern CNNs (timm, torchvision) for the explanation tests.

Random weights, built narrow and shallow so every method runs in well under a second; nothing is
downloaded. Each factory returns an eval-mode model taking ``3 x S x S`` inputs (``SIZES``).
"""

from __future__ import annotations

import torch
from torch import nn

timm = __import__("pytest").importorskip("timm")
import torchvision  # noqa: E402


def vit(**kw) -> nn.Module:
    """timm ViT: 2 blocks, width 48, 3 heads, patch 8 on 32x32 (a class token + a 4x4 grid)."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=4, img_size=32,
                             patch_size=8, depth=2, embed_dim=48, num_heads=3, **kw).eval()


def deit() -> nn.Module:
    """timm DeiT, distilled: class + distillation tokens (2 prefix tokens), 2 blocks."""
    torch.manual_seed(0)
    return timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=4, img_size=32,
                             patch_size=8, depth=2, embed_dim=48, num_heads=3).eval()


def swin() -> nn.Module:
    """timm Swin: 2 stages of 1 block (8x8 then 4x4 grid, channels-last), window 4."""
    torch.manual_seed(0)
    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=4, img_size=32,
                             depths=(1, 1), embed_dim=24, num_heads=(2, 4), window_size=4).eval()


def convnext() -> nn.Module:
    """timm's ``test_convnext`` (4 stages; 2x2 grid at 64x64)."""
    torch.manual_seed(0)
    return timm.create_model("test_convnext", pretrained=False, num_classes=4).eval()


def efficientnet() -> nn.Module:
    """timm's ``test_efficientnet`` (2x2 grid at 64x64)."""
    torch.manual_seed(0)
    return timm.create_model("test_efficientnet", pretrained=False, num_classes=4).eval()


def tv_vit() -> nn.Module:
    """torchvision ViT, 2 layers; its zero-initialised head is given random weights (else every
    logit is 0 and every gradient vanishes)."""
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                             hidden_dim=32, mlp_dim=64, num_classes=4)
    nn.init.normal_(m.heads.head.weight, std=0.5)
    return m.eval()


def tv_swin() -> nn.Module:
    """torchvision Swin (channels-last stages), 2 stages of 1 block, window 4."""
    torch.manual_seed(0)
    return torchvision.models.swin_transformer.SwinTransformer(
        patch_size=[4, 4], embed_dim=24, depths=[1, 1], num_heads=[2, 4], window_size=[4, 4],
        num_classes=4).eval()


FAMILIES = {"vit": vit, "deit": deit, "swin": swin, "convnext": convnext, "efficientnet": efficientnet,
            "tv_vit": tv_vit, "tv_swin": tv_swin}
SIZES = {"vit": 32, "deit": 32, "swin": 32, "convnext": 64, "efficientnet": 64, "tv_vit": 32, "tv_swin": 32}


def inputs(family: str, n: int = 3, seed: int = 1) -> torch.Tensor:
    s = SIZES[family]
    return torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(seed))
