"""Hand-set weights, axioms, guided-method safety, targets/layers, explain_many, the Captum bridge.

The hand-computed and axiom tests run on the ``device`` fixture's devices (``CNNLENS_TEST_DEVICE``,
tests/conftest.py); the values they compare with are computed on the CPU."""

from __future__ import annotations

import sys

import pytest
import torch
from explain_models import (
    FunctionalReLU,
    MixedActs,
    TinyResNet,
    gray_compact,
    planted_data,
    resnet,
    trained_gray_compact,
)
from torch import nn

import cnnlens
from cnnlens.explain import explain_many

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ---- hand-set weights -----------------------------------------------------------------------------

def hand_model() -> nn.Module:
    """x [1,1,3,3] -> conv1x1 (weights +1, -1) -> ReLU -> global mean -> Linear V (no biases)."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    conv.weight.data = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
    fc = nn.Linear(2, 2, bias=False)
    fc.weight.data = torch.tensor([[2.0, 1.0], [-1.0, 3.0]])
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)


XX = torch.tensor([[1.0, -2.0, 3.0], [0.0, 2.0, -1.0], [4.0, -3.0, 1.0]]).view(1, 1, 3, 3)


def test_saliency_by_hand(device):
    # y_t = sum_k V_tk mean_ij ReLU(a_k x_ij)  =>  dy_t/dx_ij = sum_k V_tk a_k 1[a_k x_ij > 0] / 9
    # target 0: x>0 -> 2*1/9, x<0 -> 1*(-1)/9, x=0 -> 0;  saliency = |.|
    m, X = hand_model().to(device), XX.to(device)
    s0 = cnnlens.explain(m, X, "saliency", target=0).maps[0].cpu()
    torch.testing.assert_close(s0, torch.tensor([[2, 1, 2], [0, 2, 1], [2, 1, 2]]) / 9.0)
    # target 1: x>0 -> -1*1/9, x<0 -> 3*(-1)/9
    s1 = cnnlens.explain(m, X, "saliency", target=1).maps[0].cpu()
    torch.testing.assert_close(s1, torch.tensor([[1, 3, 1], [0, 1, 3], [1, 3, 1]]) / 9.0)
    # gradient x input, target 0: x * dy/dx
    g = cnnlens.explain(m, X, "gradient_x_input", target=0).maps[0].cpu()
    torch.testing.assert_close(g, torch.tensor([[2, 2, 6], [0, 4, 1], [8, 3, 2]]) / 9.0)


def test_gradcam_by_hand(device):
    # layer = the conv: A_1 = x, A_2 = -x; dy_t/dA_kij = V_tk 1[A_kij > 0] / 9
    # w_k = mean_ij(.) = V_tk * (#positives of A_k) / 81; x has 5 positives, 3 negatives
    # target 0: w = (2*5, 1*3)/81 -> cam = ReLU(10/81 x - 3/81 x) = 7/81 ReLU(x)
    m, X = hand_model().to(device), XX.to(device)
    e = cnnlens.explain(m, X, "gradcam", target=0)
    assert e.layer == "0"
    torch.testing.assert_close(e.maps[0].cpu(), torch.tensor([[1, 0, 3], [0, 2, 0], [4, 0, 1]]) * 7 / 81.0)
    # target 1: w = (-1*5, 3*3)/81 -> cam = ReLU(-5/81 x - 9/81 x) = 14/81 ReLU(-x)
    e = cnnlens.explain(m, X, "gradcam", target=1)
    torch.testing.assert_close(e.maps[0].cpu(), torch.tensor([[0, 2, 0], [0, 0, 1], [0, 3, 0]]) * 14 / 81.0)
    assert not e.extras["zero_maps"].any()


@pytest.mark.parametrize("method", ["gradcam", "gradcam_pp", "xgradcam", "layercam", "eigencam", "scorecam"])
def test_all_zero_cam_is_reported_not_divided(method):
    e = cnnlens.explain(hand_model(), torch.zeros(2, 1, 3, 3), method, target=0)
    assert e.extras["zero_maps"].tolist() == [True, True]
    assert torch.isfinite(e.maps).all() and (e.maps == 0).all()
    assert torch.isfinite(cnnlens.normalize_maps(e.maps)).all()


# ---- axioms ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_ig_completeness_under_one_percent_at_64_steps(device):
    # a model trained (briefly) on planted squares, explaining its predictions: f(x) - f(x') is
    # several logits, and the default 64-step Gauss-Legendre rule closes the gap to < 1%
    model = trained_gray_compact(steps=24).to(device)
    x, y = planted_data(6, seed=5)
    x = x.to(device)
    for baseline in ("zeros", "blur"):
        e = cnnlens.explain(model, x, "integrated_gradients", baseline=baseline)
        assert e.extras["steps"] == 64
        delta = e.extras["delta"]
        assert (delta.abs() > 0.5).all()  # a gap relative to a meaningful difference
        total = e.maps.flatten(1).sum(1)
        gap = (total - delta).abs() / delta.abs()
        torch.testing.assert_close(e.extras["completeness_gap"], gap)
        assert (gap < 0.01).all(), (baseline, gap)


def test_ig_per_image_baselines_follow_their_images_across_chunks(device):
    import captum.attr as captum_attr

    torch.manual_seed(3)
    model = resnet().eval().to(device)
    x = torch.randn(5, 3, 20, 20).to(device)
    base = (torch.randn(5, 3, 20, 20) * 0.1).to(device)
    t = [0, 1, 2, 3, 0]
    ref = captum_attr.IntegratedGradients(model).attribute(x, baselines=base, target=t, n_steps=8).sum(1)
    for chunk in (2, 5):
        e = cnnlens.explain(model, x, "integrated_gradients", target=t, baseline=base, steps=8, chunk_size=chunk)
        torch.testing.assert_close(e.maps, ref, rtol=1e-4, atol=1e-5)
    many = explain_many(model, x, ["integrated_gradients"], target=t, baseline=base, steps=8, chunk_size=2)
    torch.testing.assert_close(many["integrated_gradients"].maps, ref, rtol=1e-4, atol=1e-5)


def test_ig_on_linear_model_is_exact(device):
    # f(x) = w.x: IG = (x - x') * w exactly, for any quadrature
    lin = nn.Sequential(nn.Conv2d(2, 3, 5, padding=2), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)).to(device)
    x = torch.randn(2, 2, 6, 6).to(device)
    gxi = cnnlens.explain(lin, x, "gradient_x_input", target=1).maps
    for q in ("gausslegendre", "riemann_trapezoid", "riemann_left"):
        ig = cnnlens.explain(lin, x, "integrated_gradients", target=1, steps=3, quadrature=q)
        torch.testing.assert_close(ig.maps, gxi, rtol=1e-4, atol=1e-5)
        assert ig.extras["completeness_gap"].max() < 1e-4


def test_noise_tunnel_axioms(device):
    lin = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 5 * 5, 3)).to(device)
    x = torch.randn(3, 1, 5, 5).to(device)
    sal = cnnlens.explain(lin, x, "saliency").maps
    # a linear model has the same gradient everywhere: noise changes nothing
    sg = cnnlens.explain(lin, x, "smoothgrad", n_samples=7, stdev=0.5)
    torch.testing.assert_close(sg.maps, sal)
    var = cnnlens.explain(lin, x, "saliency", nt_samples=5, nt_stdev=0.5, nt_type="vargrad").maps
    assert var.abs().max() < 1e-6
    # zero noise on a non-linear model: the noise tunnel is the method itself
    model = resnet().eval().to(device)
    xr = torch.randn(2, 3, 20, 20).to(device)
    for m in ("gradient_x_input", "guided_backprop"):
        plain = cnnlens.explain(model, xr, m).maps
        nt = cnnlens.explain(model, xr, m, nt_samples=3, nt_stdev=0.0, batch_size=4).maps
        torch.testing.assert_close(nt, plain, rtol=1e-5, atol=1e-6)
    # real noise on a non-linear model changes the map, and the seed makes it repeatable
    a = cnnlens.explain(model, xr, "smoothgrad", n_samples=4, seed=1).maps
    b = cnnlens.explain(model, xr, "smoothgrad", n_samples=4, seed=1).maps
    c = cnnlens.explain(model, xr, "smoothgrad", n_samples=4, seed=2).maps
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4
    assert (a - cnnlens.explain(model, xr, "saliency").maps).abs().max() > 1e-4


def test_smoothgrad_is_mean_of_saliency_on_noisy_copies(device):
    model = gray_compact().eval().to(device)
    x = torch.randn(2, 1, 16, 16).to(device)
    t = torch.tensor([0, 2], device=device)
    n, stdev = 5, 0.2
    sg = cnnlens.explain(model, x, "smoothgrad", target=t, n_samples=n, stdev=stdev, seed=7, reduce="sum")
    # the same noise, drawn the documented way: N(0, 1) [n, B, C, H, W] from a generator on x's device
    # seeded with seed, times stdev * (max - min) per image
    g = torch.Generator(device=device).manual_seed(7)
    noise = torch.randn((n, *x.shape), generator=g, device=device)
    sigma = stdev * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    ref = torch.zeros_like(x)
    for i in range(n):
        xi = (x + noise[i] * sigma.view(-1, 1, 1, 1)).requires_grad_(True)
        y = model(xi).gather(1, t[:, None]).sum()
        ref += torch.autograd.grad(y, xi)[0].abs()
    torch.testing.assert_close(sg.maps, (ref / n).sum(1), rtol=1e-5, atol=1e-6)


# ---- guided methods -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet", "guided_gradcam"])
def test_guided_methods_refuse_functional_relu(method):
    model = FunctionalReLU()
    model.train()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"relu.*functionally"):
        cnnlens.explain(model, x, method)
    # the model came back untouched after the error
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    # forcing gives a result and says what could not be guided
    e = cnnlens.explain(model, x, method, force=True)
    assert e.extras["unguided"] == {"relu": 1}
    assert torch.isfinite(e.maps).all()


def test_guided_refuses_model_without_activation_modules():
    lin = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(ValueError, match="no activation module"):
        cnnlens.explain(lin, torch.randn(1, 1, 6, 6), "guided_backprop")


def test_guided_backprop_differs_from_gradient_and_is_positive_through_relus():
    # one ReLU between input and logit: guided = grad where grad > 0 path; deconv = ReLU(grad at output)
    conv = nn.Conv2d(1, 1, 1, bias=False)
    conv.weight.data.fill_(1.0)
    fc = nn.Linear(4, 2, bias=False)
    fc.weight.data = torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.0, 0.0, 0.0, 0.0]])
    m = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), fc)
    x = torch.tensor([1.0, 1.0, -1.0, -1.0]).view(1, 1, 2, 2)
    # plain gradient: w * 1[x>0] = [1,-2,0,0]; guided: ReLU of it = [1,0,0,0]; deconv: ReLU(w) = [1,0,3,0]
    gb = cnnlens.explain(m, x, "guided_backprop", target=0).maps[0].flatten()
    dc = cnnlens.explain(m, x, "deconvnet", target=0).maps[0].flatten()
    torch.testing.assert_close(gb, torch.tensor([1.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(dc, torch.tensor([1.0, 0.0, 3.0, 0.0]))


def test_guided_with_reused_relu_module_equals_distinct_modules():
    model = resnet().eval()
    shared = resnet().eval()
    for blk in (shared.layer1, shared.layer2):
        blk.relu2 = blk.relu1  # one module applied twice per block, as torchvision's BasicBlock does
    x = torch.randn(2, 3, 20, 20)
    for m in ("guided_backprop", "deconvnet"):
        torch.testing.assert_close(cnnlens.explain(shared, x, m).maps, cnnlens.explain(model, x, m).maps)


def test_guided_handles_leaky_prelu_silu():
    model = MixedActs().eval()
    x = torch.randn(2, 3, 10, 10)
    gb = cnnlens.explain(model, x, "guided_backprop").maps
    plain = cnnlens.explain(model, x, "gradient_x_input").maps
    assert torch.isfinite(gb).all() and (gb - plain).abs().max() > 1e-6


# ---- targets and layers -------------------------------------------------------------------------------

def test_targets_and_layers():
    model = resnet().eval()
    x = torch.randn(4, 3, 20, 20)
    with torch.no_grad():
        pred = model(x).argmax(1)
    e = cnnlens.explain(model, x, "gradcam")
    # the default: the last conv (layer2.conv2) sits before the residual add; its block's output
    # has the same size, so the block is used (what pytorch-grad-cam's examples pass for a ResNet)
    assert e.targets.tolist() == pred.tolist() and e.layer == "layer2"
    labels = torch.tensor([1, 0, 4, 2])
    e = cnnlens.explain(model, x, "gradcam", target="label", labels=labels)
    assert e.targets.tolist() == labels.tolist()
    per = cnnlens.explain(model, x, "gradcam", target=[1, 0, 4, 2])
    torch.testing.assert_close(per.maps, e.maps)
    e3 = cnnlens.explain(model, x, "gradcam", target=3, layer=model.layer1)
    assert e3.targets.tolist() == [3] * 4 and e3.layer == "layer1"
    e4 = cnnlens.explain(model, x, "gradcam", target=3, layer="layer1")
    torch.testing.assert_close(e3.maps, e4.maps)
    with pytest.raises(ValueError, match="labels"):
        cnnlens.explain(model, x, "saliency", target="label")
    with pytest.raises(ValueError, match="valid layer names"):
        cnnlens.explain(model, x, "gradcam", layer="nope")
    with pytest.raises(TypeError, match="unknown option"):
        cnnlens.explain(model, x, "integrated_gradients", stpes=3)
    with pytest.raises(ValueError, match="quadrature must be"):
        cnnlens.explain(model, x, "integrated_gradients", quadrature="simpson")


@pytest.mark.slow
def test_chunking_does_not_change_results():
    model = resnet().eval()
    x = torch.randn(5, 3, 20, 20)
    for m, opts in [("integrated_gradients", {"steps": 8}), ("scorecam", {}), ("guided_gradcam", {}),
                    ("smoothgrad", {"n_samples": 3, "stdev": 0.0})]:
        full = cnnlens.explain(model, x, m, **opts)
        small = cnnlens.explain(model, x, m, chunk_size=2, batch_size=3, **opts)
        torch.testing.assert_close(small.maps, full.maps, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(small.targets, full.targets)


# ---- explain_many -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_explain_many_equals_separate_calls():
    model = resnet().eval()
    x = torch.randn(3, 3, 20, 20)
    methods = ["saliency", "gradcam", "gradient_x_input", "layercam", "eigencam", "integrated_gradients",
               "guided_gradcam", "scorecam"]
    many = explain_many(model, x, methods, target=[0, 1, 2], method_options={"integrated_gradients": {"steps": 8}})
    assert list(many) == methods
    for m in methods:
        opts = {"steps": 8} if m == "integrated_gradients" else {}
        one = cnnlens.explain(model, x, m, target=[0, 1, 2], **opts)
        torch.testing.assert_close(many[m].maps, one.maps, rtol=1e-5, atol=1e-7)
        assert many[m].targets.tolist() == [0, 1, 2] and many[m].layer == one.layer
        torch.testing.assert_close(many[m].probs, one.probs)


@pytest.mark.slow
def test_explain_many_shares_one_forward_backward():
    model = resnet().eval()
    x = torch.randn(4, 3, 20, 20)
    calls = {"fwd": 0, "bwd": 0}
    h1 = model.register_forward_pre_hook(lambda *a: calls.__setitem__("fwd", calls["fwd"] + 1))
    h2 = model.stem[0].register_full_backward_hook(lambda *a: calls.__setitem__("bwd", calls["bwd"] + 1))
    try:
        # the first call on a model probes once (one image, no grad) whether it takes channels-last
        # inputs; count the passes after it
        cnnlens.explain(model, x[:1], "eigencam")
        calls.update(fwd=0, bwd=0)
        explain_many(model, x, ["saliency", "gradcam", "gradient_x_input", "xgradcam"], chunk_size=4)
        assert calls == {"fwd": 1, "bwd": 1}
        calls.update(fwd=0, bwd=0)
        for m in ["saliency", "gradcam", "gradient_x_input"]:
            cnnlens.explain(model, x, m, chunk_size=4)
        assert calls["fwd"] == 3
    finally:
        h1.remove()
        h2.remove()


def test_explain_many_options():
    model = resnet().eval()
    x = torch.randn(2, 3, 20, 20)
    # an option only some methods take goes to those; a noise tunnel on saliency stops it sharing
    r = explain_many(model, x, ["saliency", "gradcam"], nt_samples=2, nt_stdev=0.0)
    torch.testing.assert_close(r["saliency"].maps, cnnlens.explain(model, x, "saliency").maps)
    assert r["saliency"].extras["nt_samples"] == 2
    with pytest.raises(TypeError, match="accepted by none"):
        explain_many(model, x, ["saliency", "gradcam"], stpes=3)
    with pytest.raises(ValueError, match="twice"):
        explain_many(model, x, ["saliency", "saliency"])


# ---- Captum bridge ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_captum_bridge(device):
    captum_attr = pytest.importorskip("captum.attr")
    model = resnet().eval().to(device)
    x = torch.randn(2, 3, 20, 20).to(device)
    e = cnnlens.explain(model, x, "captum:InputXGradient", target=1)
    torch.testing.assert_close(e.maps, cnnlens.explain(model, x, "gradient_x_input", target=1).maps)
    assert e.signed and e.layer is None
    # a layer class gets the resolved layer; its [B,1,h,w] map is upsampled bilinearly
    lg = cnnlens.explain(model, x, "captum:LayerGradCam", target=1, relu_attributions=True)
    assert lg.layer == "layer2"
    gc = cnnlens.explain(model, x, "gradcam", target=1)
    torch.testing.assert_close(lg.maps, gc.maps, rtol=1e-5, atol=1e-6)
    # a class that requires baselines gets zeros; DeepLift sums to f(x) - f(0) (its completeness)
    dl = cnnlens.explain(model, x, "captum:DeepLift", target=1)
    with torch.no_grad():
        diff = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(dl.maps.flatten(1).sum(1), diff, rtol=1e-3, atol=1e-4)
    assert cnnlens.explain(model, x, "captum:GradientShap", target=1).maps.shape == (2, 20, 20)
    with pytest.raises(ValueError, match="not a Captum attribution class.*IntegratedGradients"):
        cnnlens.explain(model, x, "captum:NotAThing")
    assert captum_attr is not None


def test_captum_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ValueError, match="pip install captum"):
        cnnlens.explain(TinyResNet().eval(), torch.randn(1, 3, 8, 8), "captum:Saliency")


class ViewAfterConv(nn.Module):
    """A course-style CNN that flattens with ``x.view``: it cannot take channels-last activations."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).view(x.shape[0], -1))


@pytest.mark.slow
def test_channels_last_passes_equal_default_layout_and_fall_back_when_the_model_cannot_take_them():
    from cnnlens.explain import core

    torch.manual_seed(0)
    x = torch.randn(5, 3, 6, 6)
    flat = ViewAfterConv().eval()
    with pytest.raises(RuntimeError, match="view"):
        flat(x.clone(memory_format=torch.channels_last))
    assert core.use_channels_last(flat, x) is False  # probed, remembered, default layout kept
    for m in ["gradcam", "guided_gradcam", "integrated_gradients"]:
        got = cnnlens.explain(flat, x, m)
        assert torch.isfinite(got.maps).all() and got.maps.shape == (5, 6, 6)
    sal = cnnlens.explain(flat, x, "saliency")
    xg = x.clone().requires_grad_(True)
    g = torch.autograd.grad(flat(xg).gather(1, sal.targets[:, None]).sum(), xg)[0]
    torch.testing.assert_close(sal.maps, g.abs().amax(1))

    net = resnet().eval()
    xr = torch.randn(4, 3, 20, 20)
    assert core.use_channels_last(net, xr) is True
    for m in ["saliency", "gradient_x_input", "gradcam", "guided_backprop", "integrated_gradients"]:
        cl = cnnlens.explain(net, xr, m, **({"steps": 8} if m == "integrated_gradients" else {}))
        core._LAYOUT_OK[net] = False  # the same call in the default layout
        ref = cnnlens.explain(net, xr, m, **({"steps": 8} if m == "integrated_gradients" else {}))
        core._LAYOUT_OK[net] = True
        torch.testing.assert_close(cl.maps, ref.maps, rtol=1e-4, atol=1e-6)


def test_default_cam_layer_is_the_last_conv_or_the_residual_block_around_it():
    from cnnlens.explain.core import default_layer

    from explain_models import Block

    x = torch.randn(2, 3, 16, 16)
    # plain CNN: the conv's parent pools, so the conv itself
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(6 * 4 * 4, 3)).eval()
    assert default_layer(plain, x)[0] == "3"

    class Net(nn.Module):  # torchvision-style nesting: layer2 = Sequential(Block, Block)
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.layer2 = nn.Sequential(Block(8, 8), Block(8, 8))
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.layer2(self.stem(x)).mean((2, 3)))

    net = Net().eval()
    name, mod = default_layer(net, x)
    assert name == "layer2.1" and mod is net.layer2[1]  # the innermost of layer2.1 / layer2 (same tensor)
    # the CAM on it equals Grad-CAM computed by hand on the block's output
    e = cnnlens.explain(net, x, "gradcam", target=0)
    assert e.layer == "layer2.1"
    store = {}
    h = net.layer2[1].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    out = net(x)
    h.remove()
    g = torch.autograd.grad(out[:, 0].sum(), store["a"])[0]
    cam = (g.mean((2, 3), keepdim=True) * store["a"]).sum(1).clamp_min(0)
    torch.testing.assert_close(e.maps, cam.detach(), rtol=1e-5, atol=1e-6)
    # an explicit layer is taken as given
    assert cnnlens.explain(net, x, "gradcam", layer="layer2.1.conv2").layer == "layer2.1.conv2"
