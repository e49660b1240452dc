"""#17 follow-up: `cnnlens run` on a model that applies ReLU as a function (F.relu, the common student
and third-party form) finishes: the guided methods, which would silently be (partly) a plain
gradient there, are left out of the default method lists with a note in the log, stages.json and
the report; asking for one by name still fails with the fix."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from cnnlens.explain.guided import GUIDED_METHODS, guided_unsupported
from conftest import cli

NET = '''
import torch
from torch import nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.view(x.size(0), -1))
'''


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


class Modules(Functional):
    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU()

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_probe_names_the_functional_activation_and_leaves_the_model_untouched():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    for net, functional in ((Functional(), True), (Modules(), False)):
        net.train()
        before = {k: v.clone() for k, v in net.state_dict().items()}
        why = guided_unsupported(net, x)
        assert (why is not None) == functional
        if functional:
            assert "relu (1x) functionally" in why
        assert net.training  # mode restored
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
        assert not net._forward_hooks and not net._forward_pre_hooks
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


@pytest.mark.slow
def test_run_on_a_functional_relu_model_leaves_guided_out_with_a_note(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    out = tmp_path / "run"
    p = cli("run", "--data", "digits", "--model", f"{tmp_path / 'net.py'}:Net", "--image-size", "16",
            "--epochs", "1", "--size", "fast", "--trust-code", "--out", str(out))
    assert "left out" in " ".join(p.stderr.split())
    stages = json.loads((out / "stages.json").read_text())
    assert "trust" in stages["stages"] and "explain" in stages["stages"]
    for key in ("methods", "confused_methods", "trust_methods"):
        assert not set(stages["sizes"][key]) & set(GUIDED_METHODS), key
    assert stages["sizes"]["methods"]  # the other methods still ran
    (note,) = stages["notes"]
    assert "guided_backprop" in note and "functionally" in note and "--force-guided" in note
    explained = json.loads((out / "explain" / "explanations.json").read_text())
    assert note in explained["notes"]
    assert not set(explained["methods"]) & set(GUIDED_METHODS)
    trust = json.loads((out / "trust" / "scores.json").read_text())
    assert not set(trust["methods"]) & set(GUIDED_METHODS)
    page = (out / "report" / "index.html").read_text()
    assert "left out" in page and "--force-guided" in page
    # asked for by name, a guided method still stops with the fix
    p = cli("explain", str(out), "--methods", "guided_backprop", "--trust-code", check=False)
    assert p.returncode == 2 and "--force-guided" in p.stderr
