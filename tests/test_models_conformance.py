"""Every model cnnlens can build: logits [B, K] for 1 and 3 channels at several sizes, finite, and
explainable by saliency and Grad-CAM with the model handed back untouched."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.models import MODELS, create_model

K = 5
SIZES = [(16, 16), (30, 22)]

USER_NET = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))
'''


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("user")
    (d / "net.py").write_text(USER_NET)
    for c in (1, 3):
        net = create_model(f"{d / 'net.py'}:Net", trust_code=True, in_channels=c, num_classes=K,
                           input_size=16).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(torch.jit.script(net), str(d / f"net{c}.pt"))
    return d


NAMES = [*MODELS.names(), "torchvision:resnet18", "user-file", "torchscript"]


def _name(name: str, d, c: int) -> str:
    if name == "user-file":
        return f"{d / 'net.py'}:Net"
    if name == "torchscript":
        return str(d / f"net{c}.pt")
    return name


def _state(model: nn.Module):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
            [p.detach().clone() for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
             for m in model.modules()])


def _assert_untouched(model: nn.Module, before) -> None:
    modes, grads, values, hooks = _state(model)
    assert modes == before[0], "training flags changed"
    assert grads == before[1], "requires_grad changed"
    assert all(torch.equal(a, b) for a, b in zip(values, before[2])), "parameters changed"
    assert hooks == before[3], "hooks left behind"
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("c", [1, 3])
def test_model_conformance(name, c, user_files):
    for h, w in SIZES:
        model = create_model(_name(name, user_files, c), trust_code=True, in_channels=c, num_classes=K,
                             input_size=(h, w))
        model.train()
        params = list(model.parameters())
        params[0].requires_grad_(False)  # a caller's frozen layer must stay frozen
        x = torch.randn(3, c, h, w, generator=torch.Generator().manual_seed(h + c))
        out = model(x)
        assert out.shape == (3, K) and torch.isfinite(out).all()
        before = _state(model)
        sal = cnnlens.explain(model, x, "saliency")
        assert sal.maps.shape == (3, h, w) and torch.isfinite(sal.maps).all() and sal.maps.abs().sum() > 0
        assert sal.targets.shape == (3,) and torch.allclose(sal.probs.sum(1), torch.ones(3))
        _assert_untouched(model, before)
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        if has_conv:
            cam = cnnlens.explain(model, x, "gradcam")
            assert cam.maps.shape == (3, h, w) and torch.isfinite(cam.maps).all() and (cam.maps >= 0).all()
        elif name == "torchscript":  # no Python hooks on TorchScript layers: a clear refusal
            with pytest.raises(ValueError, match="TorchScript model"):
                cnnlens.explain(model, x, "gradcam")
        else:  # the MLP has no conv layer for Grad-CAM: a clear refusal naming the fix
            with pytest.raises(ValueError, match="no Conv2d layer"):
                cnnlens.explain(model, x, "gradcam")
        _assert_untouched(model, before)


def test_saliency_of_a_built_model_matches_autograd():
    """The maps are |d logit_t / d x| maxed over channels (the saliency contract), for the wide CNN."""
    model = create_model("wide", in_channels=3, num_classes=K, input_size=16).eval()
    x = torch.randn(2, 3, 16, 16)
    exp = cnnlens.explain(model, x, "saliency")
    xr = x.clone().requires_grad_(True)
    logits = model(xr)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    assert torch.allclose(exp.maps, xr.grad.abs().amax(1), atol=1e-6)
