"""Saliency and Grad-CAM against Captum, by hand, and the model-untouched contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
from cnnlens.explain.core import model_guard


def _model(seed: int = 0, c: int = 1, k: int = 5, size: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    m = cnnlens.create_model("compact", in_channels=c, num_classes=k, input_size=size)
    # non-trivial BatchNorm statistics so eval mode matters
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
    return m


@pytest.mark.parametrize("c", [1, 3])
def test_saliency_equals_captum(c):
    from captum.attr import Saliency

    m = _model(c=c)
    x = torch.randn(6, c, 32, 32)
    ours = cnnlens.explain(m, x, "saliency")
    m.eval()
    ref = Saliency(m).attribute(x.clone().requires_grad_(), target=ours.targets, abs=True).amax(1)
    torch.testing.assert_close(ours.maps, ref, atol=1e-5, rtol=1e-5)
    assert ours.maps.dtype == torch.float32 and ours.maps.shape == (6, 32, 32)


@pytest.mark.parametrize("target", [None, 2, [0, 1, 2, 3, 4, 0]])
def test_gradcam_equals_captum_layergradcam_upsampled(target):
    from captum.attr import LayerAttribution, LayerGradCam

    m = _model(c=3)
    x = torch.randn(6, 3, 32, 32)
    ours = cnnlens.explain(m, x, "gradcam", target=target)
    m.eval()
    layer = dict(m.named_modules())[ours.layer]
    assert isinstance(layer, nn.Conv2d) and ours.layer == "cnn.12"  # the last conv, found automatically
    t = ours.targets if target is None else torch.as_tensor(target).expand(6) if isinstance(target, int) \
        else torch.as_tensor(target)
    attr = LayerGradCam(m, layer).attribute(x, target=t, relu_attributions=True)
    ref = LayerAttribution.interpolate(attr, (32, 32), interpolate_mode="bilinear").squeeze(1)
    torch.testing.assert_close(ours.maps, ref, atol=1e-5, rtol=1e-5)


class _Hand(nn.Module):
    """1x3x3 input -> conv 2x2 (1 -> 2 channels, no bias) -> ReLU -> global sum -> linear (2 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
            self.fc.weight[:] = torch.tensor([[2.0, 1.0], [-1.0, 3.0]])

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).sum((2, 3)))


def test_saliency_and_gradcam_by_hand():
    x = torch.tensor([[[[1.0, 2.0, 0.0], [3.0, 1.0, 1.0], [0.0, 2.0, 4.0]]]])
    m = _Hand()
    # conv channel 0 (x[i,j] - x[i+1,j+1]): [[0, 1], [1, -3]] -> ReLU [[0,1],[1,0]], sum 2
    # conv channel 1 (0.5 * 2x2 window sum): [[3.5, 2], [3, 4]] -> sum 12.5
    # logits: class0 = 2*2 + 12.5 = 16.5 ; class1 = -2 + 37.5 = 35.5 -> predicted class 1
    e = cnnlens.explain(m, x, "saliency")
    assert e.targets.tolist() == [1]
    # d y1 / dx = -1 * d(ch0)/dx + 3 * d(ch1)/dx ; ch0 active at windows (0,1) and (1,0)
    g = torch.zeros(3, 3)
    for (i, j) in [(0, 1), (1, 0)]:
        g[i, j] += -1.0
        g[i + 1, j + 1] -= -1.0
    g += 3 * 0.5 * torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32)
    torch.testing.assert_close(e.maps[0], g.abs())
    # Grad-CAM on conv for class 1: dy1/dA_0 = -1 where ReLU passes (2 of 4 cells) -> w0 = -0.5
    # dy1/dA_1 = 3 everywhere -> w1 = 3 ; cam = ReLU(-0.5*A0 + 3*A1) on the 2x2 map, A = pre-ReLU conv output
    a0 = torch.tensor([[0.0, 1.0], [1.0, -3.0]])
    a1 = torch.tensor([[3.5, 2.0], [3.0, 4.0]])
    cam = (-0.5 * a0 + 3 * a1).clamp_min(0)
    e = cnnlens.explain(m, x, "gradcam", layer="conv")
    ref = F.interpolate(cam[None, None], size=(3, 3), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(e.maps[0], ref)
    assert e.layer == "conv"


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_model_comes_back_untouched(method):
    m = _model()
    m.train()
    m.fc[1].weight.requires_grad_(False)  # a caller's partially frozen model
    before = {k: v.clone() for k, v in m.state_dict().items()}
    flags = [mod.training for mod in m.modules()]
    grads = [p.requires_grad for p in m.parameters()]
    cnnlens.explain(m, torch.randn(3, 1, 32, 32), method)
    assert [mod.training for mod in m.modules()] == flags
    assert [p.requires_grad for p in m.parameters()] == grads
    assert all(len(mod._forward_hooks) == 0 and len(mod._backward_hooks) == 0 for mod in m.modules())
    assert all(p.grad is None for p in m.parameters())
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats not updated


def test_model_restored_when_the_method_raises():
    m = _model()
    m.train()
    with pytest.raises(ValueError, match="out of range"):
        cnnlens.explain(m, torch.randn(2, 1, 32, 32), "gradcam", target=99)
    assert m.training and all(p.requires_grad for p in m.parameters())
    assert all(len(mod._forward_hooks) == 0 for mod in m.modules())
    with pytest.raises(RuntimeError):
        with model_guard(m):
            raise RuntimeError("boom")
    assert m.training


def test_bad_inputs_get_clear_errors():
    m = _model()
    with pytest.raises(ValueError, match=r"layer 'cnn.99' does not exist.*valid layer names: .*cnn.0"):
        cnnlens.explain(m, torch.randn(1, 1, 32, 32), "gradcam", layer="cnn.99")
    with pytest.raises(ValueError, match="add a batch dimension"):
        cnnlens.explain(m, torch.randn(1, 32, 32), "saliency")
    with pytest.raises(ValueError, match="NaN"):
        cnnlens.explain(m, torch.full((1, 1, 32, 32), float("nan")), "saliency")
    with pytest.raises(ValueError, match="one class per image"):
        cnnlens.explain(m, torch.randn(3, 1, 32, 32), "saliency", target=[1, 2])
    with pytest.raises(ValueError, match="target='label' needs labels"):
        cnnlens.explain(m, torch.randn(2, 1, 32, 32), "saliency", target="label")


def test_target_label_and_chunking_agree():
    m = _model()
    x = torch.randn(7, 1, 32, 32)
    a = cnnlens.explain(m, x, "gradcam", target="label", labels=[0, 1, 2, 3, 4, 0, 1])
    b = cnnlens.explain(m, x, "gradcam", target="label", labels=[0, 1, 2, 3, 4, 0, 1], chunk_size=3)
    assert a.targets.tolist() == [0, 1, 2, 3, 4, 0, 1]
    torch.testing.assert_close(a.maps, b.maps)
    torch.testing.assert_close(a.probs, torch.softmax(m.eval()(x), 1), atol=1e-6, rtol=1e-5)


def test_layer_by_leaf_index_is_the_layer_by_name():
    from cnnlens.nn import leaf_layers

    m = _model(size=16)
    x = torch.randn(2, 1, 16, 16)
    names = [n for n, _ in leaf_layers(m)]
    i = names.index("cnn.4")  # a conv layer, reached by its position among the leaves
    by_name = cnnlens.explain(m, x, "gradcam", layer="cnn.4")
    for spec in (i, str(i), i - len(names)):
        e = cnnlens.explain(m, x, "gradcam", layer=spec)
        assert e.layer == "cnn.4"
        torch.testing.assert_close(e.maps, by_name.maps)
    n = len(names)
    with pytest.raises(ValueError, match=rf"layer index {n} is out of range: .* has {n} leaf"):
        cnnlens.explain(m, x, "gradcam", layer=len(names))


class _Tied(nn.Module):
    """A tied weight (one Parameter in two modules), a frozen bias, a buffer, one submodule in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.b.weight = self.a.weight  # tied
        self.b.bias.requires_grad_(False)
        self.register_buffer("scale", torch.tensor(2.0))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        h = self.conv(x).relu().mean((2, 3)) * self.scale
        return self.b(self.drop(self.a(h)))


@pytest.mark.parametrize("how", ["explain", "explain_many", "error"])
def test_one_walk_guard_restores_tied_frozen_grads_and_modes(how):
    from cnnlens.explain import explain_many
    from cnnlens.nn import model_state

    torch.manual_seed(0)
    m = _Tied().train()
    m.drop.eval()  # a caller's mixed modes
    m(torch.randn(2, 1, 8, 8)).sum().backward()  # the caller's own .grad on every trainable parameter
    grads = {n: p.grad for n, p in m.named_parameters()}
    st = model_state(m)
    # the tied weight counted once; the frozen bias not at all; devices from parameters and the buffer
    assert len(st.params) == len([p for p in m.parameters() if p.requires_grad]) == 4
    assert st.devices == {torch.device("cpu")}
    assert set(st.training) == {mod for mod in m.modules() if mod.training} and m.drop not in st.training
    x = torch.randn(3, 1, 8, 8)
    if how == "explain":
        cnnlens.explain(m, x, "smoothgrad", n_samples=2)
    elif how == "explain_many":
        explain_many(m, x, ["saliency", "gradient_x_input"])
    else:
        with pytest.raises(ValueError, match="out of range"):
            cnnlens.explain(m, x, "integrated_gradients", target=7, steps=2)
    assert [mod.training for mod in m.modules()] == [True, True, True, True, False]
    assert [n for n, p in m.named_parameters() if not p.requires_grad] == ["b.bias"]
    assert all(p.grad is grads[n] for n, p in m.named_parameters())  # the same tensors, not copies
    assert m.b.bias.grad is None
