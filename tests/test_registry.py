"""Unknown names list the valid ones, in the library and on the command line."""

from __future__ import annotations

import pytest
from conftest import cli

import cnnlens


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'.*digits"):
        cnnlens.load_dataset("mnist")


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9'; valid model names: .*compact.*mlp"):
        cnnlens.create_model("resnet9")


def test_unknown_method_lists_valid_names():
    import torch

    m = cnnlens.create_model("compact", 1, 3, 16)
    with pytest.raises(ValueError, match=r"unknown explanation method 'gradcamm'; valid explanation method names: ") as e:
        cnnlens.explain(m, torch.zeros(1, 1, 16, 16), "gradcamm")
    valid = str(e.value).split("names: ")[1].split(", ")
    assert set(cnnlens.methods()) <= set(valid)


def test_cli_choices_come_from_registries_and_errors_are_clear(tmp_path, capsys):
    from cnnlens.cli import main

    p = cli("train", "--data", "nosuchdata", "--model", "compact", "--out", str(tmp_path / "r"), check=False)
    assert p.returncode == 2 and "valid dataset names: digits" in p.stderr
    assert "Traceback" not in p.stderr
    assert main(["train", "--data", "digits", "--model", "nosuchmodel", "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "valid model names:" in err and "compact" in err
    assert main(["methods", "list"]) == 0
    listing = capsys.readouterr().out
    for name in cnnlens.methods():
        assert name in listing
