"""Batch augmentation against independent references: torch.flip, torchvision's rotate, slicing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from cnnlens.data.augment import (NO_AUGMENT, AugmentConfig, AugmentParams, apply_params, augment_batch,
                                  normalize_batch, prepare_batch, sample_params)


def smooth(b=4, c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, c, 4, 4, generator=g)
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def params(b, angle=0.0, shift=(0.0, 0.0), flip=False, scale=(1.0, 1.0), center=(0.0, 0.0)):
    return AugmentParams(angle=torch.full((b,), float(angle)), shift=torch.tensor([shift] * b),
                         flip=torch.full((b,), flip), scale=torch.tensor([scale] * b),
                         center=torch.tensor([center] * b))


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_identity_config_returns_input_exactly():
    x = torch.rand(5, 1, 9, 7)
    y = augment_batch(x, NO_AUGMENT, gen(0))
    assert torch.equal(y, x)
    # and a warp with identity parameters is exact up to float rounding
    cfg = AugmentConfig(rotation=10, hflip=False, resized_crop=None, fill="zeros")
    assert torch.allclose(apply_params(x, params(5), cfg), x, atol=1e-6)


def test_flip_only_equals_torch_flip_on_the_chosen_rows():
    x = torch.rand(32, 3, 8, 8)
    cfg = AugmentConfig(rotation=0, shift=0, hflip=True, resized_crop=None)
    y = augment_batch(x, cfg, gen(3))
    chosen = sample_params(32, cfg, gen(3)).flip
    assert 0 < int(chosen.sum()) < 32  # both kinds of rows occur
    for i in range(32):
        want = torch.flip(x[i], dims=[-1]) if chosen[i] else x[i]
        assert torch.equal(y[i], want)


@pytest.mark.parametrize("h, w", [(32, 32), (24, 40)])
@pytest.mark.parametrize("angle", [30.0, -7.5])
def test_rotation_matches_torchvision_rotate(h, w, angle):
    x = smooth(3, 3, h, w)
    cfg = AugmentConfig(rotation=45, shift=0, hflip=False, resized_crop=None, fill="zeros")
    y = apply_params(x, params(3, angle=angle), cfg)
    ref = torch.stack([TF.rotate(img, angle, InterpolationMode.BILINEAR) for img in x])
    assert (y - ref).abs().max() < 1e-3


def test_shift_moves_content_right_and_down_by_whole_pixels():
    x = smooth(2, 1, 16, 20)
    cfg = AugmentConfig(rotation=0, shift=0.5, hflip=False, resized_crop=None, fill="zeros")
    y = apply_params(x, params(2, shift=(0.25, 0.125)), cfg)  # 5 px right, 2 px down
    assert torch.allclose(y[..., 2:, 5:], x[..., :-2, :-5], atol=1e-5)
    assert y[..., :2, :].abs().max() < 1e-6 and y[..., :, :5].abs().max() < 1e-6


def test_center_crop_zoom_matches_interpolate_of_the_crop():
    x = smooth(2, 3, 16, 16)
    cfg = AugmentConfig(rotation=0, shift=0, hflip=False, resized_crop=(0.25, 0.25))
    y = apply_params(x, params(2, scale=(0.5, 0.5)), cfg)
    ref = F.interpolate(x[..., 4:12, 4:12], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5)


def test_seeded_and_sane():
    x = smooth(8, 1, 24, 24)
    cfg = AugmentConfig()
    a, b, c = (augment_batch(x, cfg, gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1 + 1e-6  # bilinear of [0,1] stays in [0,1]
    p = sample_params(1000, cfg, gen(0))
    assert p.angle.abs().max() <= 10 and p.shift.abs().max() <= 0.1
    area = p.scale.prod(1)
    assert area.min() >= 0.8 - 1e-5 and area.max() <= 1.0 + 1e-6 and p.scale.max() <= 1.0
    assert ((p.center.abs() + p.scale) <= 1 + 1e-6).all()  # the crop stays inside the image
    with pytest.raises(TypeError, match="float"):
        augment_batch(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), cfg, gen(0))


@pytest.mark.parametrize("kw", [dict(rotation=-1), dict(shift=1.5), dict(resized_crop=(0.0, 1.0)),
                                dict(resized_crop=(0.9, 0.8)), dict(fill="wrap")])
def test_bad_config_is_a_value_error(kw):
    with pytest.raises(ValueError):
        AugmentConfig(**kw)


def test_normalize_and_prepare_batch():
    u8 = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    want = (u8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(prepare_batch(u8, mean, std), want)
    assert torch.allclose(normalize_batch(u8.float() / 255, mean, std), want)
    cfg = AugmentConfig(rotation=0, shift=0, resized_crop=None)
    got = prepare_batch(u8, mean, std, cfg, gen(5))
    flips = sample_params(4, cfg, gen(5)).flip
    assert torch.allclose(got, torch.where(flips.view(-1, 1, 1, 1), want.flip(-1), want))
