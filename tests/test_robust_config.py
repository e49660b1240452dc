"""Config values of the wrong type: every field checked against its declared type, the error names
the file, the key, the value and the type expected; booleans are not numbers."""

from __future__ import annotations

import pytest
import yaml

from robust_runs import assert_clean_cli_error, make_run, run_cli

import cnnlens
from cnnlens.cli import main
from cnnlens.config import RunConfig, TrainConfig, load_config
from cnnlens.errors import CnnlensTypeError

CASES = [
    ("train:\n  epochs: ten\n", "train.epochs: expected an integer, got 'ten' (text)"),
    ("train:\n  epochs: true\n", "train.epochs: expected an integer, got true (a boolean); booleans are not numbers"),
    ("train:\n  batch_size: 3.5\n", "train.batch_size: expected an integer, got 3.5 (a number with a fraction)"),
    ("train:\n  lr: .inf\n", "train.lr: expected a finite number, got inf (not a finite number)"),
    ("train:\n  weight_decay: .nan\n", "train.weight_decay: expected a finite number, got nan"),
    ("train:\n  grad_clip: yes\n", "train.grad_clip: expected a finite number or null, got true (a boolean)"),
    ("train:\n  skip_nonfinite: 1\n", "train.skip_nonfinite: expected true or false, got 1 (an integer)"),
    ("train:\n  optimizer: 3\n", "train.optimizer: expected text, got 3 (an integer)"),
    ("data:\n  val_fraction: '10%'\n", "data.val_fraction: expected a finite number, got '10%' (text)"),
    ("data:\n  image_size: 32.0\n", "data.image_size: expected an integer or null, got 32.0"),
    ("model:\n  options: [1, 2]\n", "model.options: expected a mapping, got [1, 2] (a list)"),
    ("train: 5\n", "train: expected a mapping of keys to values; got 5 (an integer)"),
]


@pytest.mark.parametrize("body,want", CASES, ids=[c[1].split(":")[0] + str(i) for i, c in enumerate(CASES)])
def test_cli_train_config_of_the_wrong_type_names_file_key_value_and_type(body, want, tmp_path, capsys):
    cfg = tmp_path / "my config.yaml"
    cfg.write_text(body)
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--config", str(cfg), "--out", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: {cfg}: {want}" in err, err
    assert not out.exists()  # refused before anything was written
    with pytest.raises(CnnlensTypeError):
        load_config(cfg)


@pytest.mark.slow
def test_cli_subprocess_epochs_true_is_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: true\n")
    p = run_cli("train", "--data", "digits", "--config", str(cfg), "--out", str(tmp_path / "run"))
    assert_clean_cli_error(p, f"{cfg}: train.epochs: expected an integer, got true (a boolean)")


def test_values_that_fit_their_type_are_kept_and_saved_as_their_type(tmp_path):
    cfg = tmp_path / "c.yaml"
    # YAML 1.1 reads 1e-3 as text and 1 as an integer: both are numbers for a float field
    cfg.write_text("train:\n  lr: 1e-3\n  weight_decay: 1\n  devices: [0]\n  grad_clip: null\n")
    c = load_config(cfg)
    assert c.train.lr == 0.001 and type(c.train.lr) is float
    assert c.train.weight_decay == 1.0 and type(c.train.weight_decay) is float
    assert c.train.devices == [0] and c.train.grad_clip is None
    saved = yaml.safe_load(yaml.safe_dump(c.to_dict()))
    assert saved["train"]["lr"] == 0.001 and isinstance(saved["train"]["weight_decay"], float)


def test_python_api_checks_the_same_types(tmp_path):
    with pytest.raises(CnnlensTypeError, match=r"train.epochs: expected an integer, got true \(a boolean\)"):
        TrainConfig(epochs=True)
    with pytest.raises(CnnlensTypeError, match=r"train.lr: expected a finite number, got inf"):
        RunConfig().replace(train={"lr": float("inf")})
    with pytest.raises(CnnlensTypeError, match=r"train.batch_size: expected an integer, got 3.5"):
        cnnlens.train("digits", "compact", out=tmp_path / "r", batch_size=3.5)
    assert not (tmp_path / "r").exists()


def test_a_run_whose_config_yaml_was_edited_to_a_wrong_type_names_it(tmp_path):
    run = make_run(tmp_path / "run")
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("epochs: 10", "epochs: ten"))
    with pytest.raises(CnnlensTypeError, match=rf"{run / 'config.yaml'}: train.epochs: expected an integer, got 'ten'"):
        cnnlens.load_run(run)
