"""The whole pipeline, through the real CLI and the Python API, on the bundled digits."""

from __future__ import annotations

import csv
import json
import re

import pytest

import torch
from conftest import cli

import cnnlens
from cnnlens.train import HISTORY_COLUMNS


def test_demo_writes_every_artifact(demo_run):
    out, proc = demo_run
    for rel in ("config.yaml", "model.safetensors", "model.json", "history.csv", "checkpoints/best.ckpt",
                "checkpoints/last.ckpt", "eval/metrics.json", "eval/predictions.csv", "eval/confusion.csv",
                "explain/saliency.npy", "explain/gradcam.npy", "explain/explanations.json", "explain/grid.png",
                "report/index.html", "report/training_curves.png", "report/confusion_counts.png",
                "report/explanations.png", "explore/explore.json", "explore/pixels.npy", "explore/gradcam.npy"):
        assert (out / rel).is_file(), rel
    # the pipeline draws one confused-pairs figure per method it explained the pairs with
    confused = json.loads((out / "explain/confused/confused.json").read_text())
    assert confused["methods"] and all(
        (out / "explain/confused" / f"{e['true'].removesuffix('_true.npy')}.png").is_file()
        for e in confused["methods"].values())
    assert "explore" in json.loads((out / "timings.json").read_text())  # the explorer's maps, timed
    # Lightning's promotional tips and banners do not reach the user
    text = proc.stdout + proc.stderr
    for noise in ("Tip", "litmodels", "GPU available", "TPU available", "LOCAL_RANK", "does not have many workers"):
        assert noise not in text, noise


def test_history_has_one_row_per_epoch(demo_run):
    out, _ = demo_run
    with open(out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == HISTORY_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert float(r["seconds"]) > 0
        assert 0 <= float(r["train_acc"]) <= 1 and 0 <= float(r["val_acc"]) <= 1
        assert float(r["lr"]) == 1e-3


def test_metrics_json_agrees_with_predictions_and_sklearn(demo_run):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    out, _ = demo_run
    m = json.loads((out / "eval/metrics.json").read_text())
    with open(out / "eval/predictions.csv") as fh:
        preds = list(csv.DictReader(fh))
    y = [r["label"] for r in preds]
    p = [r["pred"] for r in preds]
    classes = m["classes"]
    assert m["n"] == len(preds) == 270
    assert abs(m["accuracy"] - sum(a == b for a, b in zip(y, p)) / len(y)) < 1e-9
    assert m["confusion"] == confusion_matrix(y, p, labels=classes).tolist()
    pr, rc, f1, sup = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    for i, row in enumerate(m["per_class"]):
        assert abs(row["precision"] - pr[i]) < 1e-9 and abs(row["recall"] - rc[i]) < 1e-9
        assert abs(row["f1"] - f1[i]) < 1e-9 and row["support"] == sup[i]
    for row in m["confusion_normalized"]:
        assert abs(sum(row) - 1) < 1e-4
    # most-confused pairs are the largest off-diagonal cells
    off = sorted((m["confusion"][i][j] for i in range(10) for j in range(10) if i != j), reverse=True)
    assert [q["count"] for q in m["most_confused"]] == [v for v in off if v > 0][:len(m["most_confused"])]


def test_load_run_reproduces_the_evaluated_predictions(demo_run):
    out, _ = demo_run
    run = cnnlens.load_run(out)
    assert run.classes == [str(i) for i in range(10)]
    assert not run.model.training
    res = cnnlens.evaluate(run.model, run.dataset, "test", mean=run.mean, std=run.std)
    m = json.loads((out / "eval/metrics.json").read_text())
    assert res.confusion.tolist() == m["confusion"]


def test_report_page_references_files_that_exist(demo_run):
    out, _ = demo_run
    html = (out / "report/index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= 4
    for s in srcs:
        assert not s.startswith(("http", "/")), s  # relative: opens from disk, no server, no network
        assert (out / "report" / s).stat().st_size > 1000
    for section in ('id="training"', 'id="failures"', 'id="looks"'):
        assert section in html
    # no inline script: at most the explorer's own files beside the page (issue #21)
    assert re.findall(r"<script[^>]*>", html) in (
        [], ['<script src="explore/data.js">', '<script src="explore/explore.js">'])


@pytest.mark.slow
def test_python_api_train_and_resume_match_uninterrupted(tmp_path):
    """Stopped after epoch 1 and resumed to 2 == an uninterrupted 2-epoch run (same seed, CPU)."""
    from cnnlens.config import RunConfig

    cfg = RunConfig().replace(data={"image_size": 16})  # resuming does not depend on the image size
    full = cnnlens.train(data="digits", model="compact", epochs=2, out=tmp_path / "full", seed=3, config=cfg)
    cnnlens.train(data="digits", model="compact", epochs=1, out=tmp_path / "part", seed=3, config=cfg)
    resumed = cnnlens.train(data="digits", model="compact", epochs=2, out=tmp_path / "part", seed=3, resume=True,
                            config=cfg)
    assert resumed.input_shape == (1, 16, 16)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    for a, b in zip(full.history, resumed.history):
        for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert a[k] == b[k], (k, a[k], b[k])
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_existing_run_is_not_overwritten_silently(demo_run, tmp_path):
    out, _ = demo_run
    p = cli("train", "--data", "digits", "--model", "compact", "--epochs", "1", "--out", str(out), check=False)
    assert p.returncode == 2
    assert "already holds a run" in p.stderr and "--resume" in p.stderr


def test_cli_explain_and_report_on_existing_run(demo_run):
    out, _ = demo_run
    cli("explain", str(out), "--methods", "gradcam,saliency", "--images", "0,5,9")
    idx = json.loads((out / "explain/explanations.json").read_text())
    assert idx["indices"] == [0, 5, 9]
    assert set(idx["methods"]) == {"gradcam", "saliency"}
    cli("report", str(out))
    assert (out / "report/index.html").is_file()


def test_every_command_has_help_with_an_example(capsys):
    from cnnlens.cli import build_parser, main

    _, runners = build_parser()
    assert len(runners) >= 15
    for name in runners:
        assert main([name, "--help"]) == 0  # argparse's exit, returned by main()
        out = capsys.readouterr().out
        assert "example:" in out and "cnnlens " + name in out, name


def test_correct_per_class_takes_the_first_right_images_of_each_class_in_split_order():
    from cnnlens.evaluate import EvalResult
    from cnnlens.pipeline import correct_per_class

    #            position: 0   1   2   3   4   5   6   7
    labels = torch.tensor([2, 0, 2, 1, 0, 2, 0, 1])
    preds = torch.tensor([2, 1, 2, 1, 0, 2, 0, 0])  # wrong at positions 1 and 7
    indices = torch.tensor([40, 41, 42, 43, 44, 45, 46, 47])  # dataset indices of the split
    res = EvalResult("test", indices, labels, preds, torch.zeros(8, 3), torch.zeros(3, 3, dtype=torch.long),
                     ["a", "b", "c"])
    # class 0: right at 4, 6; class 1: right at 3; class 2: right at 0, 2, 5
    assert correct_per_class(res, 1) == [44, 43, 40]
    assert correct_per_class(res, 2) == [44, 46, 43, 40, 42]
    with pytest.raises(ValueError, match="per_class must be >= 1"):
        correct_per_class(res, 0)
