"""Unknown names list the valid ones, in the library and on the command line."""

from __future__ import annotations

import re

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
    with pytest.raises(ValueError, match=r"unknown explanation method 'gradcamm' "
                       r"\(did you mean 'gradcam'.*\); "
                       r"valid explanation method names: ") as e:
        cnnlens.explain(m, torch.zeros(1, 1, 16, 16), "gradcamm")
    valid = str(e.value).split("names: ")[1].split(", ")
    assert set(cnnlens.methods()) <= set(valid)


@pytest.mark.slow
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


@pytest.mark.slow
def test_typos_get_did_you_mean_in_the_cli_and_the_library(tmp_path):
    import torch

    from cnnlens.errors import CnnlensError
    from cnnlens.metrics import TRUST_METRICS
    from cnnlens.registry import did_you_mean

    # model and dataset names at the command line
    p = cli("train", "--data", "digits", "--model", "compcat", "--out", str(tmp_path / "r"), check=False)
    assert p.returncode == 2 and "unknown model 'compcat' (did you mean 'compact'?)" in p.stderr
    p = cli("data", "inspect", "digts", "--out", str(tmp_path / "d"), check=False)
    assert p.returncode == 2 and "(did you mean 'digits'?)" in p.stderr
    # explanation methods and layers
    m = cnnlens.create_model("compact", 1, 3, 16)
    x = torch.zeros(1, 1, 16, 16)
    with pytest.raises(CnnlensError, match=r"'saliancy' \(did you mean 'saliency'\?\)"):
        cnnlens.explain(m, x, "saliancy")
    with pytest.raises(CnnlensError, match=r"layer 'cnn.12x' does not exist in \w+ \(did you mean 'cnn.12'"):
        cnnlens.explain(m, x, "gradcam", layer="cnn.12x")
    # trust metrics: the same registry message
    name = TRUST_METRICS.names()[0]
    with pytest.raises(CnnlensError, match=re.escape(f"(did you mean {name!r}")):
        TRUST_METRICS.get(name[:-1] + "x")
    # nothing close: no suggestion, still the valid names
    assert did_you_mean("zzzz", ["saliency", "gradcam"]) == ""
    with pytest.raises(CnnlensError) as e:
        cnnlens.create_model("zzzz")
    assert "did you mean" not in str(e.value) and "valid model names:" in str(e.value)
def test_unknown_loader_option_lists_the_loaders_options(tmp_path):
    from cnnlens.errors import CnnlensError

    with pytest.raises(CnnlensError, match=r"^dataset 'digits' has no option 'fractons'; "
                                           r"its options: image_size, seed, fractions$"):
        cnnlens.load_dataset("digits", fractons=(0.5, 0.25, 0.25))
    with pytest.raises(CnnlensError, match=r"^dataset 'planted' has no option 'size'; "
                                           r"its options: n, image_size, seed, fractions$"):
        cnnlens.load_dataset("planted", size=32)
    # checked before the file is read: the path need not exist
    with pytest.raises(CnnlensError, match=r"^dataset 'fer2013' has no option 'cache'; "
                                           r"its options: seed, val_fraction, skip_bad_rows, image_size$"):
        cnnlens.load_dataset(f"fer2013:{tmp_path / 'none.csv'}", cache=False)


def test_general_options_go_only_to_loaders_that_use_them(caplog):
    ref = cnnlens.load_dataset("planted", n=60, seed=1)
    # what a run's config and the CLI pass to every loader, at their "nothing asked" values: no note
    with caplog.at_level("WARNING", logger="cnnlens"):
        ds = cnnlens.load_dataset("planted", n=60, seed=1, val_fraction=0.1, skip_bad_rows=False,
                                  channels=1, progress=lambda done, total: None)
    assert not caplog.records
    assert (ds.images == ref.images).all() and {k: v.tolist() for k, v in ds.splits.items()} == {
        k: v.tolist() for k, v in ref.splits.items()}
    # a value the loader cannot honour is said, not silently dropped
    with caplog.at_level("WARNING", logger="cnnlens"):
        cnnlens.load_dataset("planted", n=60, seed=1, val_fraction=0.3)
    assert [r.getMessage() for r in caplog.records] == [
        "dataset 'planted' does not use val_fraction (ignored: 0.3); "
        "its options: n, image_size, seed, fractions"]
