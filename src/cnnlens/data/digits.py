"""The bundled demo data: scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DATASETS, ImageDataset, channel_stats, stratified_split
from ..errors import CnnlensError


@DATASETS.register("digits", description="bundled: scikit-learn's 1,797 handwritten digits, upsampled to 32x32")
def load_digits(path: str | None = None, *, image_size: int = 32, seed: int = 0,
                fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> ImageDataset:
    """scikit-learn's digits (values 0-16 on 8x8), scaled to uint8 and upsampled bilinearly.

    Split train/val/test by a seeded stratified split (default 70/15/15).
    """
    if path:
        raise CnnlensError(f"the digits dataset is bundled and takes no path; got {path!r}: use SPEC 'digits'")
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) * (255.0 / 16.0)  # [N,1,8,8]
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = x.round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(d.target).long()
    splits = stratified_split(labels, dict(zip(("train", "val", "test"), fractions)), seed)
    mean, std = channel_stats(images[splits["train"]])
    return ImageDataset(name="digits", images=images, labels=labels,
                        classes=[str(i) for i in range(10)], splits=splits, mean=mean, std=std,
                        ids=[str(i) for i in range(len(labels))], source="sklearn.datasets.load_digits")
