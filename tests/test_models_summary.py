"""Layer tables (torchinfo-based, Keras-style), their files, the CLI, and TensorBoard export."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchinfo
from torch import nn

from cnnlens.models import create_model
from cnnlens.models.summary import ModelSummary, format_table, summarize
from cnnlens.models.tensorboard import export_graph

SRC = Path(__file__).resolve().parents[1] / "src"


def test_compact_table_shapes_params_and_macs_by_hand():
    m = create_model("compact", in_channels=3, num_classes=7, input_size=48)
    s = summarize(m, (3, 48, 48))
    rows = {r.name: r for r in s.rows}
    assert rows["cnn.0"].output_shape == (24, 48, 48) and rows["cnn.0"].params == 3 * 9 * 24 + 24
    assert rows["cnn.1"].params == 2 * 24 and rows["cnn.3"].output_shape == (24, 24, 24)
    assert rows["cnn.15"].output_shape == (96, 3, 3) and rows["fc.0"].output_shape == (864,)
    assert rows["fc.5"].output_shape == (7,) and rows["fc.5"].params == 96 * 7 + 7
    assert sum(r.params for r in s.rows) == s.total == 321_511
    assert (s.trainable, s.non_trainable) == (321_511, 0)
    assert s.buffers == 2 * (24 + 48 + 96 + 96)  # running mean + var of the four BatchNorm2d
    # MACs per image: output elements x (C_in * k * k) for convs, out x in for linears
    macs = (24 * 48 * 48 * 3 * 9 + 48 * 24 * 24 * 24 * 9 + 96 * 12 * 12 * 48 * 9 + 96 * 6 * 6 * 96 * 9
            + 192 * 864 + 96 * 192 + 7 * 96)
    assert s.macs == macs and rows["cnn.4"].macs == 48 * 24 * 24 * 24 * 9
    # torchinfo, counted its own way, agrees on the totals
    ti = torchinfo.summary(m, input_size=(2, 3, 48, 48), verbose=0, device="cpu")
    assert ti.total_params == s.total and ti.trainable_params == s.trainable


def test_frozen_layers_modes_and_hooks_are_kept():
    m = create_model("wide", in_channels=1, num_classes=7, input_size=48).train()
    m.cnn[0].weight.requires_grad_(False)
    m.cnn[1].requires_grad_(False)
    m.fc[2].eval()  # a BatchNorm1d the caller froze in eval mode
    modes = [x.training for x in m.modules()]
    s = summarize(m, (1, 48, 48))
    assert [x.training for x in m.modules()] == modes
    assert not m.cnn[0].weight.requires_grad and m.cnn[0].bias.requires_grad
    assert all(not x._forward_hooks and not x._forward_pre_hooks for x in m.modules())
    rows = {r.name: r for r in s.rows}
    assert rows["cnn.0"].trainable_params == 64 and not rows["cnn.0"].trainable  # bias only
    assert rows["cnn.1"].trainable_params == 0
    assert s.total == 6_015_879 and s.non_trainable == 25 * 64 + 2 * 64
    assert rows["fc.1"].output_shape == (512,) and rows["cnn.12"].output_shape == (512, 6, 6)
    assert rows["cnn.15"].output_shape == (512, 4, 4)  # 6x6 averaged down to the 4x4 the FC layer needs
    table = format_table(s)
    assert "(partly frozen)" in table and "(frozen)" in table
    assert "Non-trainable params: 1,728" in table and "Total params: 6,015,879" in table


def test_table_text_and_no_mislabelled_mult_adds():
    s = summarize(create_model("mlp", in_channels=1, num_classes=7, input_size=48, hidden="1800,1050"),
                  (1, 48, 48))
    t = format_table(s)
    assert t.splitlines()[2].startswith("Layer (type)") and "Output Shape" in t and "Param #" in t
    assert "net.1 (Linear)" in t and "(None, 1800)" in t and "4,149,000" in t  # 2304*1800 + 1800
    assert "Total params: 6,047,407" in t
    assert "mult-adds" not in t.lower() and "MEGABYTES" not in t
    assert f"Multiply-accumulates per image (Conv2d + Linear): {2304 * 1800 + 1800 * 1050 + 1050 * 7:,}" in t


class OwnParam(nn.Module):
    """A module holding a parameter of its own besides its children, and an unused layer."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)
        self.unused = nn.Linear(5, 5)

    def forward(self, x):
        return self.head(self.conv(x * self.scale[None, :, None, None]).mean((2, 3)))


def test_every_parameter_is_in_a_row():
    s = summarize(OwnParam(), (3, 8, 8))
    rows = {r.name: r for r in s.rows}
    assert rows["(model)"].params == 3 and rows["unused"].params == 30 and rows["unused"].output_shape is None
    assert sum(r.params for r in s.rows) == s.total == 3 + 112 + 10 + 30


def test_files_round_trip(tmp_path):
    s = summarize(create_model("compact", in_channels=1, num_classes=5, input_size=32), (1, 32, 32))
    s.to_json(tmp_path / "summary.json")
    s.to_csv(tmp_path / "summary.csv")
    back = ModelSummary.from_dict(json.loads((tmp_path / "summary.json").read_text()))
    assert back == s
    with open(tmp_path / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(s.rows) and rows[0]["output_shape"] == "24x32x32"
    assert sum(int(r["params"]) for r in rows) == s.total


def test_bad_input_shapes():
    m = create_model("compact", in_channels=1, num_classes=5, input_size=32)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        summarize(m, (1, 32))
    with pytest.raises(ValueError, match="cannot take input"):
        summarize(m, (3, 32, 32))  # wrong channel count


@pytest.mark.slow
def test_cli_models_summary(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "160"}
    r = subprocess.run([sys.executable, "-m", "cnnlens", "models", "summary", "wide", "--input", "1x48x48",
                        "--classes", "7", "--out", str(tmp_path / "s")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Total params: 6,015,879" in r.stdout and "cnn.0 (Conv2d)" in r.stdout
    assert "(None, 512, 4, 4)" in r.stdout
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["total"] == 6_015_879
    r = subprocess.run([sys.executable, "-m", "cnnlens", "models", "summary", "wide", "--input", "1x48"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "CxHxW" in r.stderr


def test_tensorboard_graph(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    m = create_model("compact", in_channels=1, num_classes=4, input_size=32).train()
    path = export_graph(m, (1, 32, 32), tmp_path / "tb")
    assert path.parent == tmp_path / "tb" and path.name.startswith("events.out.tfevents.")
    assert [p.name for p in (tmp_path / "tb").iterdir()] == [path.name]  # no temp folder left
    assert m.training and all(x.training for x in m.modules())
    ea = EventAccumulator(str(tmp_path / "tb"))
    ea.Reload()
    ops = [n.op for n in ea.Graph().node]
    assert ops.count("aten::_convolution") == 4 and ops.count("aten::linear") == 3


def test_tensorboard_missing_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        export_graph(nn.Linear(2, 2), (1, 1, 2), tmp_path)
