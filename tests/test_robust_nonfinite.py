"""No silent NaN: training stops at the first non-finite loss (or skips it when asked), weights with
NaN are named on load, float options and config values refuse inf/nan."""

from __future__ import annotations

import argparse
import csv
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from robust_runs import assert_clean_cli_error, make_run, run_cli

import cnnlens
from cnnlens.cli import build_parser, main
from cnnlens.data.base import ImageDataset
from cnnlens.train.lightning_module import NonFiniteTraining
from cnnlens.train.safety import load_checkpoint

BATCHES = 4  # training batches per epoch in _tiny()


def _tiny() -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 2
    images = torch.randint(0, 100, (48, 1, 8, 8), generator=g, dtype=torch.uint8)
    images[labels == 1, :, :, :4] += 120  # learnable: class 1 is bright on the left
    return ImageDataset(name="tiny", images=images, labels=labels, classes=["a", "b"],
                        splits={"train": torch.arange(32), "val": torch.arange(32, 48)},
                        mean=(0.3,), std=(0.2,))


class NanOnCall(nn.Module):
    """A small classifier whose training-mode forward pass number ``bad`` returns NaN logits."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 2)
        self.bad, self.calls = bad, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls in self.bad:
                return out * float("nan")
        return out


def _history(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_training_stops_at_the_first_nonfinite_loss_and_keeps_the_last_good_epoch(tmp_path):
    out = tmp_path / "run"
    # epoch 2, step 3 gives a NaN loss
    with pytest.raises(NonFiniteTraining, match=r"training loss became nan at epoch 2, step 3") as ei:
        cnnlens.train(_tiny(), NanOnCall({BATCHES + 3}), out=out, epochs=3, batch_size=8, lr=0.05)
    msg = str(ei.value)
    assert f"{out / 'checkpoints' / 'last.ckpt'} (epoch 1)" in msg and "--skip-nonfinite" in msg
    assert (ei.value.epoch, ei.value.step) == (2, 3)
    ckpt = load_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 0  # epoch 1, 0-based
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not (out / "model.safetensors").exists()
    assert [r["epoch"] for r in _history(out / "history.csv")] == ["1"]
    assert not (out / ".cnnlens.lock").exists()


@pytest.mark.slow
def test_skip_nonfinite_skips_and_counts_the_batches(tmp_path, caplog):
    out = tmp_path / "run"
    model = NanOnCall({2, BATCHES + 1, BATCHES + 4})  # epoch 1 step 2; epoch 2 steps 1 and 4
    with caplog.at_level(logging.WARNING, logger="cnnlens"):
        run = cnnlens.train(_tiny(), model, out=out, epochs=3, batch_size=8, lr=0.05, skip_nonfinite=True)
    hist = _history(out / "history.csv")
    assert [r["skipped_nonfinite"] for r in hist] == ["1", "2", "0"]
    assert all(r["train_loss"] not in ("", "nan") for r in hist)  # skipped batches are not averaged in
    assert "epoch 1, step 2: the loss is nan; skipping the batch" in caplog.text
    assert "epoch 2: skipped 2 batch(es)" in caplog.text
    assert all(torch.isfinite(v).all() for v in load_file(out / "model.safetensors").values())
    assert run.config.train.skip_nonfinite is True


@pytest.mark.slow
def test_cli_train_with_a_diverging_lr_exits_naming_epoch_and_step(tmp_path):
    out = tmp_path / "run"
    p = run_cli("train", "--data", "digits", "--image-size", "16", "--epochs", "2", "--optimizer", "sgd",
                "--lr", "1e30", "--out", str(out))
    assert_clean_cli_error(p, "training stopped: the training loss became", "at epoch 1, step 2",
                           "No epoch had completed", "lower the learning rate (lr is 1e+30)")
    assert not (out / "model.safetensors").exists() and not (out / "checkpoints" / "last.ckpt").exists()
    # inf itself is refused before anything runs, naming the flag
    p = run_cli("train", "--data", "digits", "--lr", "inf", "--out", str(tmp_path / "other"))
    assert p.returncode == 2 and "argument --lr: takes a finite number; got 'inf'" in p.stderr
    assert not (tmp_path / "other").exists()


def _float_actions():
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for a in p._actions:
            if a.type is float or getattr(a.type, "__name__", "") == "_finite_float":
                yield name, a


@pytest.mark.slow
def test_every_float_option_refuses_inf_and_nan(capsys):
    acts = list(_float_actions())
    assert {("train", "--lr"), ("train", "--weight-decay"), ("dream", "--octave-scale")} <= {
        (n, a.option_strings[-1]) for n, a in acts}
    for name, a in acts:
        assert a.type is not float, f"{name} {a.option_strings}: plain float accepts inf and nan"
        for bad in ("inf", "-inf", "nan", "1e999"):
            args = [name, f"{a.option_strings[-1]}={bad}"]  # refused as it is read, before anything else
            assert main(args) == 2, args
            assert "takes a finite number" in capsys.readouterr().err


@pytest.mark.slow
def test_weights_with_nan_are_named_on_load_cli_and_python(tmp_path, caplog):
    run = make_run(tmp_path / "run")
    wf = run / "model.safetensors"
    sd = load_file(wf)
    names = sorted(k for k, v in sd.items() if v.is_floating_point())
    sd[names[0]][0] = float("nan")
    sd[names[1]].fill_(float("inf"))
    save_file(sd, wf)
    p = run_cli("evaluate", str(run))
    err = " ".join(p.stderr.split())
    assert f"{wf} holds NaN or infinite values in 2 tensor(s): {names[0]}, {names[1]}" in err, p.stderr
    # load_weights names them too
    from cnnlens.models import create_model
    from cnnlens.models.weights import load_weights

    net = create_model("compact", in_channels=1, num_classes=10, input_size=(16, 16))
    with caplog.at_level(logging.WARNING, logger="cnnlens"):
        load_weights(net, wf)
    assert f"holds NaN or infinite values in 2 tensor(s): {names[0]}, {names[1]}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cnnlens"):
        cnnlens.load_run(run)
    assert f"{wf} holds NaN" in caplog.text
