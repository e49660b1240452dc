"""`cnnlens filters | featuremaps | dream` on the session's demo run, checked against plain hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import cli, layer_output
from PIL import Image

import cnnlens


def test_cli_filters_writes_images_that_reach_the_numbers_it_reports(demo_run):
    out, _ = demo_run
    cli("filters", str(out), "--layer", "cnn.4", "--channels", "0-2,5", "--steps", "48", "--examples", "2")
    d = out / "featureviz"
    info = json.loads((d / "filters_cnn.5.json").read_text())
    assert info["layer"] == "cnn.5" and info["channels"] == [0, 1, 2, 5]
    imgs = np.load(d / "filters_cnn.5.npy")
    run = cnnlens.load_run(out)
    c, h, w = run.input_shape
    assert imgs.dtype == np.uint8 and imgs.shape == (4, c, h, w)
    with Image.open(d / "filters_cnn.5.png") as im:
        assert im.format == "PNG"
    m = torch.tensor(run.mean).view(1, -1, 1, 1)
    s = torch.tensor(run.std).view(1, -1, 1, 1)
    x = (torch.from_numpy(imgs).float() / 255 - m) / s
    act = layer_output(run.model, "cnn.5", x).mean((2, 3))[torch.arange(4), torch.tensor([0, 1, 2, 5])]
    np.testing.assert_allclose(info["activation"], act.numpy(), atol=1e-4)
    ds = run.dataset
    idx = ds.indices("train")
    real = layer_output(run.model, "cnn.5", (ds.images[idx].float() / 255 - m) / s).mean((2, 3))[:, [0, 1, 2, 5]]
    np.testing.assert_allclose(info["dataset_max"], real.amax(0).numpy(), atol=1e-4)
    assert [e[0] for e in info["examples"]["indices"]] == idx[real.argmax(0)].tolist()


def test_cli_featuremaps_and_dream(demo_run, tmp_path):
    out, _ = demo_run
    cli("featuremaps", str(out), "--layer", "cnn.0", "--image", "3")
    d = out / "featureviz"
    maps = np.load(d / "featuremaps_cnn.1_3.npy")
    run = cnnlens.load_run(out)
    x = run.dataset.images[3:4].float() / 255
    x = (x - torch.tensor(run.mean).view(1, -1, 1, 1)) / torch.tensor(run.std).view(1, -1, 1, 1)
    np.testing.assert_allclose(maps, layer_output(run.model, "cnn.1", x)[0].numpy(), atol=1e-5)
    # the report's knobs, layer by index (leaf 8 = cnn.8, read after its BatchNorm cnn.9)
    cli(
        "dream",
        str(out),
        "--image",
        "5",
        "--layer",
        "8",
        "--channel",
        "3",
        "--lr",
        "12",
        "--weight-decay",
        "1e-4",
        "--steps",
        "10",
        "--every",
        "10",
        "--octaves",
        "2",
    )
    info = json.loads((d / "dream_cnn.9_3.json").read_text())
    assert info["snapshot_steps"] == [0, 10, 20]
    assert info["octave_objective"][1] >= info["octave_objective"][0] > info["initial_objective"]
    with Image.open(d / "dream_cnn.9_3.gif") as im:
        assert im.n_frames == 3
    # an image file (RGB, another size) is converted to the model's grey input size
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
        tmp_path / "in.png"
    )
    cli(
        "dream",
        str(out),
        "--image",
        str(tmp_path / "in.png"),
        "--layer",
        "cnn.4",
        "--steps",
        "4",
        "--every",
        "2",
        "--octaves",
        "1",
    )
    with Image.open(d / "dream_cnn.5_all_final.png") as im:
        assert im.mode == "L" and im.size == (run.input_shape[2], run.input_shape[1])


def test_cli_featureviz_errors_name_the_fix(demo_run):
    out, _ = demo_run
    p = cli("filters", str(out), "--layer", "nope", check=False)
    assert p.returncode == 2 and "valid layer names" in p.stderr and "cnn.0" in p.stderr
    from cnnlens.featureviz.runs import featuremaps_run

    with pytest.raises(ValueError, match="out of range"):
        featuremaps_run(cnnlens.load_run(out), "cnn.0", 999999)
