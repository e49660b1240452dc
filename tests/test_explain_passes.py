"""Pass sizes by the model's weight (cnnlens.explain.passes): the count behind the rule, the rows it
gives, and that the rows only regroup the same sums (the maps do not change)."""

from __future__ import annotations

import pytest
import torch
from test_explain_conformance import assert_untouched, snapshot
from torch import nn

import cnnlens
from cnnlens.explain.core import model_guard, pass_rows
from cnnlens.explain.passes import channels_last_pays, conv_reuse, weight_reuse, weight_rows


class Tokens(nn.Module):
    """``[B, C, 1, T]`` read as T tokens of width C, one Linear on every token, mean over tokens."""

    def __init__(self, width: int, out: int = 4) -> None:
        super().__init__()
        self.lin = nn.Linear(width, out)

    def forward(self, x):
        return self.lin(x.flatten(2).transpose(1, 2)).mean(1)


class PatchNet(nn.Module):
    """ViT-like: a 16x16 stride-16 patch embedding (4x4 grid at 64x64), a Linear on each of the 16
    tokens, mean over tokens, a Linear head: every weight is used about 16 times per image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Conv2d(3, 16, 16, stride=16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)  # [B, 16, 16]
        return self.head(torch.tanh(self.mix(t)).mean(1))


class WideConv(nn.Module):
    """A conv at full resolution (each weight used 4096 times per image at 64x64), pooled, a head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_weight_reuse_is_multiply_adds_over_weights_by_hand():
    # conv 1->2, 3x3, padding 1 on 4x4: 2*4*4 outputs of 9 terms = 288; Linear(32, 3): 3 outputs of 32 = 96
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3)).eval()
    assert weight_reuse(model, torch.zeros(2, 1, 4, 4)) == pytest.approx((288 + 96) / (18 + 96))
    # a Linear on tokens uses each weight once per token: 12 tokens -> 12
    assert weight_reuse(Tokens(8).eval(), torch.zeros(1, 8, 1, 12)) == pytest.approx(12.0)
    # PatchNet: embed 16 positions x 768 terms x 16 maps, mix 16 tokens x 256, head 4 x 16
    pn = PatchNet().eval()
    macs = 16 * 768 * 16 + 16 * 256 + 64
    assert weight_reuse(pn, torch.zeros(1, 3, 64, 64)) == pytest.approx(macs / (16 * 768 + 256 + 64))


def test_conv_reuse_counts_the_convs_alone_and_decides_the_cpu_layout():
    from cnnlens.explain.core import use_channels_last

    # the conv of the hand-counted model above: 288 multiply-adds over 18 weights = 16 positions
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3)).eval()
    assert conv_reuse(model, torch.zeros(2, 1, 4, 4)) == pytest.approx(16.0)
    assert channels_last_pays(model, torch.zeros(2, 1, 4, 4))  # 16 >= 16
    # a full-resolution conv uses each weight at all 64x64 positions: channels-last passes
    wide = WideConv().eval()
    assert conv_reuse(wide, torch.zeros(1, 3, 64, 64)) == pytest.approx(4096.0)
    with model_guard(wide):
        assert use_channels_last(wide, torch.zeros(1, 3, 64, 64)) is True
    # PatchNet's patch embedding at 32x32 input: a 2x2 grid, 4 positions: the default layout
    pn = PatchNet().eval()
    assert conv_reuse(pn, torch.zeros(1, 3, 32, 32)) == pytest.approx(4.0)
    with model_guard(pn):
        assert use_channels_last(pn, torch.zeros(1, 3, 32, 32)) is False
    # no conv at all: no conv rule, the default layout
    assert conv_reuse(Tokens(8).eval(), torch.zeros(1, 8, 1, 12)) is None
    assert not channels_last_pays(Tokens(8).eval(), torch.zeros(1, 8, 1, 12))


def test_weight_rows_is_the_largest_power_of_two_within_1024_uses():
    # 1024 / 20 = 51.2 -> 32; 1024 / 40 = 25.6 -> 16; 1024 / 16 = 64 -> 64; 1024 / 5 = 205 -> capped at 64
    assert weight_rows(Tokens(8).eval(), torch.zeros(1, 8, 1, 20)) == 32
    assert weight_rows(Tokens(8).eval(), torch.zeros(1, 8, 1, 40)) == 16
    assert weight_rows(Tokens(8).eval(), torch.zeros(1, 8, 1, 16)) == 64
    assert weight_rows(Tokens(8).eval(), torch.zeros(1, 8, 1, 5)) == 64
    # 1024 / 256 = 4; a weight used more than 1024 times per image: 1 row
    assert weight_rows(Tokens(8).eval(), torch.zeros(1, 8, 1, 256)) == 4
    assert weight_rows(WideConv().eval(), torch.zeros(1, 3, 64, 64)) == 1


def test_a_model_whose_forward_fails_gets_no_weight_rule():
    model = nn.Sequential(nn.Flatten(), nn.Linear(5, 2)).eval()  # 3x4x4 = 48 inputs, not 5
    assert weight_reuse(model, torch.zeros(1, 3, 4, 4)) is None
    assert weight_rows(model, torch.zeros(1, 3, 4, 4)) == 1
    assert not model[1]._forward_hooks


def test_pass_rows_on_the_cpu_is_the_wider_of_the_input_and_the_weight_rule():
    x = torch.zeros(4, 3, 64, 64)  # 12288 values an image: 8 rows by the input rule (2^17 values)
    for model, expected in ((PatchNet(), 64), (WideConv(), 8)):
        with model_guard(model):
            assert pass_rows(x) == 8
            assert pass_rows(x, model=model) == expected


@pytest.mark.parametrize("method, options", [
    ("integrated_gradients", {"steps": 32}),
    ("smoothgrad", {"n_samples": 24}),
    ("scorecam", {}),
])
def test_the_wider_passes_give_the_same_maps_and_leave_the_model_untouched(method, options):
    model = PatchNet().train()  # a caller's model in training mode: the probe runs in eval mode
    snap = snapshot(model)
    torch.manual_seed(1)
    x = torch.randn(4, 3, 64, 64)
    rows: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, a: rows.append(a[0].shape[0]))
    snap_hooked = snapshot(model)
    layer = "embed" if method == "scorecam" else None
    # one chunk of 4 images (Score-CAM's own chunking would take one image, 16 masked rows, at a time)
    wide = cnnlens.explain(model, x, method, target=[0, 1, 2, 3], layer=layer, chunk_size=4, **options)
    assert_untouched(model, snap_hooked)
    assert max(rows) == 64  # the weight rule's rows (1024 / 15.9 uses -> 64; the input rule alone: 8)
    rows.clear()
    narrow = cnnlens.explain(model, x, method, target=[0, 1, 2, 3], layer=layer, chunk_size=4, batch_size=8,
                             **options)
    assert max(rows) == 8
    handle.remove()
    assert_untouched(model, snap)
    torch.testing.assert_close(wide.maps, narrow.maps, rtol=1e-5, atol=1e-6)
