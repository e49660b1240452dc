"""torchvision architectures, user models (FILE.py:Class, TorchScript) and safe weight loading."""

from __future__ import annotations

import textwrap
import warnings

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file
from torch import nn

from cnnlens.models import count_params, create_model
from cnnlens.models.weights import load_weights, read_state_dict, save_weights


class Custom:
    """A class that only arbitrary unpickling can rebuild."""

    def __init__(self) -> None:
        self.note = "trust me"


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point() and t.ndim > 1:  # fan-in scaled, so activations stay O(1)
                t.copy_(torch.randn(t.shape, generator=g) / (t[0].numel() ** 0.5))
            elif t.is_floating_point():  # biases, BN affine and running statistics
                t.copy_(1.0 + 0.1 * torch.randn(t.shape, generator=g))
    return model


def _same_outputs(a: nn.Module, b: nn.Module, shape: tuple[int, ...]) -> bool:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-5)


# ---- torchvision ---------------------------------------------------------------------------------

def test_torchvision_resnet18_adapted_to_channels_and_classes():
    m = create_model("torchvision:resnet18", in_channels=1, num_classes=7, input_size=32)
    assert isinstance(m, tvm.ResNet)
    assert m.conv1.in_channels == 1 and m.conv1.weight.shape == (64, 1, 7, 7)
    assert m.fc.out_features == 7
    # the only parameters that differ from torchvision's own 7-class resnet18 are the stem's RGB kernels
    native = tvm.resnet18(weights=None, num_classes=7)
    assert count_params(m) == count_params(native) - 64 * 3 * 7 * 7 + 64 * 1 * 7 * 7
    with torch.no_grad():
        assert m.eval()(torch.randn(3, 1, 32, 32)).shape == (3, 7)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_torchvision_weights_of_the_adapted_model(tmp_path, suffix):
    src = _randomize(create_model("torchvision:resnet18", in_channels=1, num_classes=5, input_size=32))
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_weights(src, path)
    else:
        torch.save(src.state_dict(), path)
    got = create_model("torchvision:resnet18", in_channels=1, num_classes=5, input_size=32, weights=str(path))
    assert _same_outputs(src, got, (2, 1, 32, 32))


@pytest.mark.slow
def test_torchvision_weights_of_the_original_3ch_1000_class_model(tmp_path):
    orig = _randomize(tvm.resnet18(weights=None))  # stands in for ImageNet weights on disk
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(orig.state_dict(), path)
    m = create_model("torchvision:resnet18", in_channels=1, num_classes=7, input_size=32, weights=str(path))
    assert torch.equal(m.conv1.weight, orig.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(m.layer3[1].conv2.weight, orig.layer3[1].conv2.weight)
    assert m.fc.weight.shape == (7, 512)
    # a gray image x through the adapted stem gives what (x, x, x) gives through the original
    x = torch.randn(2, 1, 32, 32)
    body = lambda net, inp: nn.Sequential(*list(net.children())[:-1]).eval()(inp)  # noqa: E731
    with torch.no_grad():
        assert torch.allclose(body(m, x), body(orig, x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_torchvision_weights_that_fit_nothing(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"conv1.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(ValueError, match="fits neither torchvision:resnet18"):
        create_model("torchvision:resnet18", in_channels=1, num_classes=7, input_size=32, weights=str(path))


def test_torchvision_unknown_name_and_too_small_input():
    with pytest.raises(ValueError, match="unknown torchvision classification model 'resnet19'.*resnet18"):
        create_model("torchvision:resnet19", in_channels=1, num_classes=7)
    with pytest.raises(ValueError, match="cannot take 1x16x16 input"):
        create_model("torchvision:alexnet", in_channels=1, num_classes=7, input_size=16)


# ---- weights -------------------------------------------------------------------------------------

def test_pickled_custom_class_is_refused(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "meta": Custom()}, path)
    with pytest.raises(ValueError, match=r"needs arbitrary unpickling.*Custom.*convert it once"):
        read_state_dict(path)
    whole = tmp_path / "whole_model.pth"
    torch.save(nn.Linear(2, 2), whole)  # a pickled module, not a state dict
    with pytest.raises(ValueError, match="arbitrary unpickling"):
        load_weights(nn.Linear(2, 2), whole)


def test_strict_loading_names_missing_unexpected_and_mismatched_keys(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    del sd["1.bias"]
    sd["2.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(5, 4)
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as e:
        load_weights(model, path)
    msg = str(e.value)
    assert "1.bias" in msg and "2.weight" in msg and "0.weight file [5, 4] vs model [3, 4]" in msg
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing changed
    rep = load_weights(model, path, strict=False)
    assert rep.loaded == ("0.bias", "1.weight") and rep.missing == ("1.bias",)
    assert rep.unexpected == ("2.weight",) and rep.mismatched == (("0.weight", (5, 4), (3, 4)),)
    assert torch.equal(model[1].weight, sd["1.weight"]) and torch.equal(model[0].weight, before["0.weight"])


def test_checkpoint_layouts_and_prefixes(tmp_path):
    src = _randomize(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    ckpt = {"epoch": 3, "state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}}
    torch.save(ckpt, tmp_path / "last.ckpt")
    dst = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    load_weights(dst, tmp_path / "last.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, tmp_path / "ddp.pth")
    dst2 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    load_weights(dst2, tmp_path / "ddp.pth")
    assert torch.equal(dst2[1].running_var, src[1].running_var)


def test_weights_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "nope.safetensors")
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match="suffix '.npz'"):
        read_state_dict(tmp_path / "w.npz")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        read_state_dict(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match="ending in .safetensors"):
        save_weights(nn.Linear(2, 2), tmp_path / "w.pt")


# ---- user models ---------------------------------------------------------------------------------

NET_PY = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))

class Fixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        return self.head(self.conv(x).amax((2, 3)))

helper = 3
'''


@pytest.fixture
def net_file(tmp_path):
    p = tmp_path / "my_net.py"
    p.write_text(textwrap.dedent(NET_PY))
    return p


def test_user_file_model(net_file):
    m = create_model(f"{net_file}:Net", trust_code=True, in_channels=3, num_classes=5, input_size=16, width=6)
    assert type(m).__name__ == "Net" and m.conv.in_channels == 3 and m.conv.out_channels == 6
    with torch.no_grad():
        assert m(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    fixed = create_model(f"{net_file}:Fixed", trust_code=True, in_channels=1, num_classes=4, input_size=10)
    assert count_params(fixed) == (9 * 4 + 4) + (4 * 4 + 4)


def test_user_file_model_errors(net_file, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        create_model(f"{tmp_path / 'other.py'}:Net", trust_code=True, in_channels=1, num_classes=3)
    with pytest.raises(ValueError, match=r"has no class 'Nett'.*Net, Fixed"):
        create_model(f"{net_file}:Nett", trust_code=True, in_channels=1, num_classes=3)
    with pytest.raises(TypeError, match="not an nn.Module"):
        create_model(f"{net_file}:helper", trust_code=True, in_channels=1, num_classes=3)
    with pytest.raises(ValueError, match=r"returned \(2, 4\) \(its __init__ takes no num_classes"):
        create_model(f"{net_file}:Fixed", trust_code=True, in_channels=1, num_classes=7, input_size=10)
    with pytest.raises(TypeError, match="does not accept depth"):
        create_model(f"{net_file}:Net", trust_code=True, in_channels=1, num_classes=3, depth=4)
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nclass Net(:\n")
    with pytest.raises(ValueError, match="importing model file .*broken.py failed: SyntaxError"):
        create_model(f"{broken}:Net", trust_code=True, in_channels=1, num_classes=3)


def test_user_file_model_with_weights(net_file, tmp_path):
    src = _randomize(create_model(f"{net_file}:Net", trust_code=True,
                                  in_channels=1, num_classes=3, input_size=12))
    save_weights(src, tmp_path / "net.safetensors")
    got = create_model(f"{net_file}:Net", trust_code=True, in_channels=1, num_classes=3, input_size=12,
                       weights=str(tmp_path / "net.safetensors"))
    assert _same_outputs(src, got, (2, 1, 12, 12))


def _script(model: nn.Module, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(model), str(path))


def test_torchscript_model(tmp_path, net_file):
    src = _randomize(create_model(f"{net_file}:Net", trust_code=True,
                                  in_channels=3, num_classes=4, input_size=12))
    _script(src.eval(), tmp_path / "net.pt")
    got = create_model(str(tmp_path / "net.pt"), trust_code=True, in_channels=3, num_classes=4, input_size=12)
    assert isinstance(got, torch.jit.ScriptModule)
    assert _same_outputs(src, got, (2, 3, 12, 12))
    with pytest.raises(ValueError, match=r"must return logits \[B, 6\]"):
        create_model(str(tmp_path / "net.pt"), trust_code=True, in_channels=3, num_classes=6, input_size=12)
    # a torch.save file is not TorchScript: say so, and how to use it
    torch.save(src.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="not a TorchScript file.*--weights"):
        create_model(str(tmp_path / "weights.pt"), trust_code=True, in_channels=3, num_classes=4)
    with pytest.raises(ValueError, match="does not exist"):
        create_model(str(tmp_path / "missing.pt"), trust_code=True, in_channels=3, num_classes=4)
