"""Training options, recipes, test-time augmentation, and the CNN-vs-DNN comparison."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import cli

import cnnlens
from cnnlens.config import RECIPES, RunConfig, load_config, recipe
from cnnlens.evaluate.tta import tta_views


@pytest.mark.slow
def test_step_schedule_and_sgd_nesterov_reach_the_history(tmp_path):
    small = RunConfig().replace(data={"image_size": 16})  # the schedule does not depend on the image size
    run = cnnlens.train(data="digits", model="compact", epochs=3, out=tmp_path / "r", optimizer="sgd",
                        nesterov=True, lr=0.05, scheduler="step", step_size=1, gamma=0.5, label_smoothing=0.1,
                        config=small)
    assert [r["lr"] for r in run.history] == pytest.approx([0.05, 0.025, 0.0125])
    cfg = json.loads(json.dumps(run.config.to_dict()))
    assert cfg["train"]["optimizer"] == "sgd" and cfg["train"]["nesterov"] is True
    saved = load_config(tmp_path / "r" / "config.yaml")
    assert saved.train.label_smoothing == 0.1 and saved.train.scheduler == "step"


@pytest.mark.slow
def test_early_stopping_stops_when_val_accuracy_stalls(tmp_path):
    # lr so small that nothing is learned and no BatchNorm statistics drift (mlp): val accuracy cannot
    # improve after epoch 1
    run = cnnlens.train(data="digits", model="mlp", epochs=6, out=tmp_path / "r", lr=1e-12, early_stopping=1)
    assert len(run.history) == 2
    assert run.meta["best_epoch"] == 1


def test_recipes_and_config_file_precedence(tmp_path):
    r = recipe("fer2013")
    assert r.train.optimizer == "sgd" and r.train.nesterov and r.train.scheduler == "plateau"
    assert r.model.name == "vgg"
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 7\n  lr: 0.5\n")
    c = load_config(f, base=r)
    assert (c.train.epochs, c.train.lr, c.train.optimizer) == (7, 0.5, "sgd")  # file over recipe
    assert set(RECIPES) == {"fer2013", "food11", "finetune"}
    f.write_text("train:\n  epoch: 7\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epoch'\].*valid keys:.*epochs"):
        load_config(f)
    with pytest.raises(ValueError, match="optimizer must be one of adam, adamw, sgd"):
        RunConfig().replace(train={"optimizer": "rmsprop"})


def test_tta_views():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    f = tta_views(x, "flip")
    assert len(f) == 2 and torch.equal(f[1], x.flip(3))
    t = tta_views(x, "tencrop", crop=0.75)
    assert len(t) == 10 and all(v.shape == x.shape for v in t)
    for a, b in zip(t[0::2], t[1::2]):
        assert torch.equal(b, a.flip(3))
    # a constant image looks the same in every view
    c = torch.full((1, 3, 8, 8), 7, dtype=torch.uint8)
    assert all(torch.equal(v, c) for v in tta_views(c, "tencrop"))
    with pytest.raises(ValueError, match="tta must be one of none, flip, tencrop"):
        tta_views(x, "rotate")


def test_flip_tta_averages_the_two_views():
    torch.manual_seed(0)
    m = cnnlens.create_model("compact", 1, 4, 16).eval()
    imgs = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    from cnnlens.data import normalize
    from cnnlens.evaluate import predict_probs

    mean, std = (0.5,), (0.25,)
    got = predict_probs(m, imgs, mean, std, tta="flip")
    with torch.no_grad():
        ref = (m(normalize(imgs, mean, std)).softmax(1) + m(normalize(imgs.flip(3), mean, std)).softmax(1)) / 2
    torch.testing.assert_close(got, ref)


@pytest.mark.slow
def test_compact_beats_its_parameter_matched_mlp(tmp_path):
    out = tmp_path / "cnn"
    # only the comparison is under test: the analysis stages run at their smallest or not at all
    p = cli("run", "--data", "digits", "--model", "compact", "--epochs", "3", "--baseline", "mlp",
            "--size", "fast", "--skip", "lime,featureviz,trust,confused", "--out", str(out))
    res = json.loads((out / "compare" / "compare.json").read_text())
    cnn, dnn = res["runs"]
    assert abs(dnn["params"] - cnn["params"]) / cnn["params"] < 0.01  # matched within 1%
    assert dnn["model"] == "mlp" and cnn["model"] == "compact"
    assert cnn["test_acc"] > dnn["test_acc"]
    html = (out / "compare" / "index.html").read_text()
    assert f"{100 * cnn['test_acc']:.2f}" in html and f"{100 * dnn['test_acc']:.2f}" in html
    assert "CNN (compact)" in p.stdout and "DNN (mlp)" in p.stdout
    # the baseline is a complete run itself and loads like any other
    base = cnnlens.load_run(out / "baseline")
    assert cnnlens.count_params(base.model) == dnn["params"]


@pytest.mark.slow
def test_tensorboard_graph_and_weights_file_not_needed_to_reload(tmp_path):
    from cnnlens.models import save_weights

    src = cnnlens.create_model("compact", 1, 10, 32)
    wfile = tmp_path / "init.safetensors"
    save_weights(src, wfile)
    run = cnnlens.train(data="digits", model="compact", epochs=1, out=tmp_path / "r", tensorboard=True,
                        model_options={"weights": str(wfile)})
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))
    wfile.unlink()  # the run must not depend on the file it started from
    again = cnnlens.load_run(tmp_path / "r")
    sa, sb = run.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
