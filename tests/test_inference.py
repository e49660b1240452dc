"""The fused CPU forward of the perturbation methods' scoring copy (cnnlens.explain.inference)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from cnnlens.explain import inference
from cnnlens.explain.scoring import Scorer, fold_batchnorm

pytestmark = pytest.mark.skipif(not inference.available(torch.device("cpu")),
                                reason="this PyTorch has no oneDNN (mkldnn) CPU kernels")

CL = torch.channels_last


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 5, 8, 6), (2, 1, 4, 4), (1, 16, 12, 2)])
def test_max_pool_2x2_equals_max_pool2d_bit_for_bit(dtype, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    x.view(-1)[::7] = float("nan")  # NaN propagates as in max_pool2d
    x = x.to(dtype).contiguous(memory_format=CL)
    got, want = inference.max_pool_2x2(x), F.max_pool2d(x, 2)
    assert got.shape == want.shape and got.dtype == dtype
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


def test_max_pool_2x2_falls_back_on_odd_sizes_and_other_layouts():
    x = torch.randn(2, 3, 7, 6).contiguous(memory_format=CL)  # odd height: floor mode of max_pool2d
    assert torch.equal(inference.max_pool_2x2(x), F.max_pool2d(x, 2))
    y = torch.randn(2, 3, 8, 6)  # default layout
    assert torch.equal(inference.max_pool_2x2(y), F.max_pool2d(y, 2))


class Mixed(nn.Module):
    """Convs the pass may fuse and ones it must leave alone."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False), nn.ReLU(inplace=True),
                                  nn.Conv2d(8, 8, 3, stride=2), nn.Tanh())
        self.shared = nn.Conv2d(8, 8, 1)          # called at two input sizes: not packed
        self.same = nn.Conv2d(8, 8, 3, padding="same")  # string padding: not packed
        self.hooked = nn.Conv2d(8, 8, 1)          # has a forward hook: not packed
        self.hooked.register_forward_hook(lambda m, i, o: o)
        self.pool3 = nn.MaxPool2d(3)              # not 2x2: not swapped
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        h = self.body(x)
        h = self.shared(h) + F.interpolate(self.shared(F.avg_pool2d(h, 1, 1)), size=h.shape[-2:])
        h = self.shared(F.max_pool2d(h, 1))
        h = self.pool3(self.hooked(self.same(torch.cat([h, h], -1))))
        return self.head(h.mean((2, 3)))


class Shapes(nn.Module):
    """The shared conv at two input sizes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.shared = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.body(x)
        return self.head(self.shared(h).mean((2, 3)) + self.shared(h[..., ::2, ::2]).mean((2, 3)))


def test_fusion_counts_and_equals_eager_float32():
    model = Mixed().eval()
    fold_batchnorm(model)
    model = model.to(memory_format=CL)
    x = torch.randn(5, 3, 16, 16).contiguous(memory_format=CL)
    with torch.no_grad():
        want = model(x)
    fused = copy.deepcopy(model)
    fusion = inference.fuse_for_inference(fused, x)
    # body: conv+ReLU, grouped conv+ReLU(inplace), strided conv (Tanh after: no post-op); plus shared
    # (one input size here: it runs twice at 8x8 and once after an identity max-pool, all 8x8)
    assert fusion.counts == {"convs": 4, "relus": 2, "pools": 1}
    assert torch.equal(fusion.reference, want)
    assert type(fused.same) is nn.Conv2d and type(fused.hooked) is nn.Conv2d and type(fused.pool3) is nn.MaxPool2d
    assert isinstance(fused.body[0], inference.PackedConv2d) and type(fused.body[2]) is nn.Identity
    with torch.no_grad():
        for b in (5, 1, 9):  # the packed weights serve other batch sizes than the example's
            xb = torch.randn(b, 3, 16, 16).contiguous(memory_format=CL)
            torch.testing.assert_close(fused(xb), model(xb), rtol=1e-5, atol=1e-5)
    originals = [m for m in model.modules()]
    fusion.undo()
    assert [type(m) for m in fused.modules()] == [type(m) for m in originals]


def test_conv_at_two_input_sizes_is_not_packed():
    model = Shapes().eval().to(memory_format=CL)
    x = torch.randn(2, 1, 8, 8).contiguous(memory_format=CL)
    fusion = inference.fuse_for_inference(model, x)
    assert fusion.counts == {"convs": 1, "relus": 1, "pools": 1}
    assert type(model.shared) is nn.Conv2d


def _onednn_bf16_convs() -> bool:
    """Whether this CPU has oneDNN's bf16 convolution kernels (avx512bw/vl/dq or avx_ne_convert)."""
    try:
        conv = nn.Conv2d(3, 4, 3).to(torch.bfloat16)
        torch.ops.mkldnn._reorder_convolution_weight(conv.weight.detach(), [0, 0], [1, 1], [1, 1], 1)
        return True
    except RuntimeError:
        return False


def test_fusion_in_bfloat16_matches_eager_bfloat16_or_stays_eager():
    model = Mixed().eval()
    fold_batchnorm(model)
    model = model.to(memory_format=CL).to(torch.bfloat16)
    x = torch.randn(4, 3, 16, 16).to(torch.bfloat16).contiguous(memory_format=CL)
    fused = copy.deepcopy(model)
    fusion = inference.fuse_for_inference(fused, x)
    if _onednn_bf16_convs():
        assert fusion.counts["convs"] == 4 and fused.body[0].weight.dtype == torch.bfloat16
        with torch.no_grad():
            torch.testing.assert_close(fused(x).float(), model(x).float(), rtol=2e-2, atol=2e-2)
    else:  # no kernel on this CPU: nothing is swapped and the copy is the eager model, bit for bit
        assert fusion.counts == {"convs": 0, "relus": 0, "pools": 0}
        assert [type(m) for m in fused.modules()] == [type(m) for m in model.modules()]
        with torch.no_grad():
            assert torch.equal(fused(x), model(x))


def test_scorer_fuses_its_copy_and_scores_like_eager():
    model = cnnlens.create_model("compact", in_channels=1, num_classes=3, input_size=32).eval()
    x = torch.randn(20, 1, 32, 32)
    before = copy.deepcopy(model.state_dict())
    fused, eager = Scorer(model), Scorer(model, fuse=False)
    got, want = fused(x, 1), eager(x, 1)
    torch.testing.assert_close(torch.cat([got, fused(x[:7], 2)]), torch.cat([want, eager(x[:7], 2)]),
                               rtol=1e-5, atol=1e-6)
    assert fused.fusion is not None and fused.fusion.counts == {"convs": 4, "relus": 4, "pools": 4}
    assert eager.fusion is None
    # the caller's model is untouched: same modules, same weights
    assert all(type(m) in (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d) for m in model.cnn)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_scorer_keeps_eager_when_the_fused_copy_does_not_reproduce_the_model():
    # a model left in training mode with dropout gives a different answer on every call, so the check
    # on the first chunk fails and the copy stays eager
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Dropout(0.5), nn.Linear(4 * 8 * 8, 2)).train()
    s = Scorer(model)
    out = s(torch.randn(8, 1, 16, 16), 0)
    assert out.shape == (8,) and s.fusion is None
    assert type(s.model[0]) is nn.Conv2d and type(s.model[1]) is nn.ReLU and type(s.model[2]) is nn.MaxPool2d


def test_lime_is_the_same_with_and_without_fusion():
    model = cnnlens.create_model("compact", in_channels=1, num_classes=2, input_size=32).eval()
    x = torch.randn(1, 1, 32, 32)
    seg = (torch.arange(32)[:, None] // 8) * 4 + torch.arange(32)[None, :] // 8
    e = cnnlens.explain(model, x, "lime", segments=seg, n_samples=200, output="logit")
    # the same regression on eager scores
    from cnnlens.explain.perturbation import (coalition_scores, lime_coalitions, lime_kernel, make_baseline,
                                              weighted_ridge)
    z = lime_coalitions(200, 16, 0)
    y = coalition_scores(Scorer(model, output="logit", fuse=False), x[0], make_baseline(x[0], "mean", seg),
                         seg, z, int(e.extras["target"][0]), 64)
    coef = weighted_ridge(z, y, lime_kernel(z))[0]
    torch.testing.assert_close(e.extras["weights"][0], coef.float(), rtol=1e-4, atol=1e-6)
