"""What a user must not miss about maps is said in the log and on the report (issue 17, item 8):
zero CAM maps, a coarse CAM layer, and the way to force a guided method at the command line."""

from __future__ import annotations

import html
import re
import shutil
import textwrap

import pytest
import torch
from conftest import cli
from safetensors.torch import load_file, save_file

import cnnlens
from cnnlens.io import read_json


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_zero_and_coarse_cam_maps_are_logged_and_shown_in_the_report(demo_run, tmp_path):
    src, _ = demo_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    # hand-set weights: the BatchNorm after the last conv outputs -100 everywhere (gamma 0, beta -100),
    # so ReLU zeroes it and the pooled layer cnn.15 is all zeros: every CAM on it is zero everywhere
    w = load_file(str(run / "model.safetensors"))
    w["cnn.13.weight"] = torch.zeros_like(w["cnn.13.weight"])
    w["cnn.13.bias"] = torch.full_like(w["cnn.13.bias"], -100.0)
    save_file(w, str(run / "model.safetensors"), metadata={"format": "pt"})
    # the layer sizes, from plain hooks on the model
    model = cnnlens.load_run(run).model
    sizes = {}
    for name in ("cnn.8", "cnn.12", "cnn.15"):
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, o, name=name: sizes.__setitem__(name, tuple(o.shape[-2:])))
    with torch.no_grad():
        model(torch.zeros(1, 1, 32, 32))
    h, w_ = sizes["cnn.15"]
    assert max(h, w_) < 4 and min(sizes["cnn.12"]) >= 4  # the demo model at 32x32: 2x2 after the last pool

    p = cli("explain", str(run), "--methods", "scorecam,gradcam,saliency", "--images", "0,5,9",
            "--layer", "cnn.15")
    err = _one_line(p.stderr)
    for m in ("scorecam", "gradcam"):
        assert f"{m}: 3 of 3 maps are zero everywhere (images #0, #5, #9)" in err
    assert "saliency:" not in err  # not a CAM: no zero-map flag
    coarse = (f"gradcam and scorecam at layer 'cnn.15' give a coarse {h}×{w_} map (upsampled to 32×32)"
              if "gradcam and scorecam" in err else
              f"scorecam and gradcam at layer 'cnn.15' give a coarse {h}×{w_} map (upsampled to 32×32)")
    assert coarse in err
    hh, ww = sizes["cnn.12"]
    assert f"A finer layer is 'cnn.12' ({hh}×{ww}): pass --layer cnn.12" in err
    notes = read_json(run / "explain" / "explanations.json")["notes"]
    assert len(notes) == 3 and any(coarse in n for n in notes)

    cli("report", str(run))
    page = _one_line(html.unescape((run / "report" / "index.html").read_text()))
    for note in notes:
        assert "Note: " + _one_line(note) in page


def test_data_section_says_every_class_when_classes_tie():
    from cnnlens.report.findings import data_findings

    info = {"size": {"train": 12, "val": 6}, "shape": [3, 8, 8], "classes": ["Bread", "Egg"],
            "counts": {"train": [6, 6], "val": [6, 0]}}
    text = [f["text"] for f in data_findings(info)]
    assert "In the train split every class has 6 images: the classes are balanced." in text
    assert not any("largest" in t for t in text)
    assert "The val split has no image of Egg: its numbers do not cover it." in text
    # one class, and ties at either end
    one = [f["text"] for f in data_findings({**info, "classes": ["Bread"], "counts": {"train": [6]}})]
    assert "The train split has one class, Bread (6 images)." in one
    three = {**info, "classes": ["a", "b", "c"], "counts": {"train": [9, 9, 3]}}
    tie = [f["text"] for f in data_findings(three)]
    assert ("In the train split the largest classes are a and b (9 images each) and the smallest c "
            "(3 images): an imbalance of 3.00×.") in tie


def test_featuremap_caption_of_a_wide_layer_reads_well(demo_run):
    out, _ = demo_run
    model = cnnlens.load_run(out).model
    fv = read_json(out / "featureviz" / "featureviz.json")
    wide = [fm for fm in fv["featuremaps"] if fm["shape"][0] > 64]
    assert wide, "the demo shows the 96 maps of its last conv"
    fm = wide[0]
    got = {}
    model.get_submodule(fm["layer"]).register_forward_hook(lambda _m, _i, o: got.update(shape=list(o.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 1, 32, 32))
    k = got["shape"][1]
    assert got["shape"][1:] == fm["shape"] and k > 64
    page = _one_line(html.unescape((out / "report" / "index.html").read_text()))
    h, w = fm["shape"][1:]
    assert f"The first 64 of the {k} feature maps of {fm['layer']} ({h}×{w} pixels:" in page
    assert "(, " not in page


FUNCTIONAL = textwrap.dedent("""
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self, in_channels=1, num_classes=10, input_size=32):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 16 * 16, num_classes)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv(x)), 2)
            return self.fc(x.flatten(1))
""")


@pytest.mark.slow
def test_guided_backprop_on_functional_relu_names_the_cli_flag_that_forces_it(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(FUNCTIONAL)
    run = tmp_path / "run"
    cli("train", "--data", "digits", "--model", f"{net}:Net", "--epochs", "1", "--out", str(run), "--trust-code")
    p = cli("explain", str(run), "--methods", "guided_backprop,saliency", "--images", "0,1", "--trust-code",
            check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    err = _one_line(p.stderr)
    assert "applies relu (1x) functionally" in err
    assert "force=True in Python" in err and "--force-guided with cnnlens explain" in err
    p = cli("explain", str(run), "--methods", "guided_backprop,saliency", "--images", "0,1", "--force-guided",
            "--trust-code")
    assert "(forced)" in _one_line(p.stderr)
    meta = read_json(run / "explain" / "explanations.json")
    assert meta["methods"]["guided_backprop"]["extras"]["unguided"] == {"relu": 1}
    assert "unguided" not in meta["methods"]["saliency"]["extras"]
