"""The course's own FER2013 files, end to end through the real CLI: ``train.csv`` (label,feature)
with an unlabeled ``test.csv`` (id,feature), and ``train.csv`` alone. Every stage that needs labels
uses the labeled hold-out (val) and says so; the unlabeled test split gets a submission file."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli

TEST_IDS = ["17", "3", "250", "42", "8", "99"]  # not in order: the file's order is the submission's


def _faces(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """48x48 grey images, ``uint8 [n, 2304]``: class k is a flat grey of 25 + 32k with a bright band at
    row 6k, plus noise, so that one or two epochs learn something."""
    n = len(labels)
    img = np.empty((n, 48, 48), np.float64)
    for i, k in enumerate(labels):
        img[i] = 25 + 32 * k + rng.normal(0, 8, (48, 48))
        img[i, 6 * k:6 * k + 6] += 60
    return img.clip(0, 255).round().astype(np.uint8).reshape(n, -1)


def _write(path: Path, header: str, first: list[str], px: np.ndarray) -> Path:
    lines = [header] + [f"{a},{' '.join(map(str, p.tolist()))}" for a, p in zip(first, px)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def course_files(folder: Path, with_test: bool = True, seed: int = 0) -> tuple[Path, np.ndarray | None]:
    """Write ``folder/train.csv`` (8 faces per class) and, optionally, ``folder/test.csv`` (6 rows with
    the ids of TEST_IDS). Returns (train.csv, the test pixels ``uint8 [6, 2304]`` or None)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(7), 8)
    rng.shuffle(labels)
    train = _write(folder / "train.csv", "label,feature", [str(v) for v in labels], _faces(rng, labels))
    if not with_test:
        return train, None
    test_px = _faces(rng, np.array([3, 0, 6, 1, 5, 2]))
    _write(folder / "test.csv", "id,feature", TEST_IDS, test_px)
    return train, test_px


RUN_ARGS = ("--model", "compact", "--epochs", "2", "--batch-size", "16", "--val-fraction", "0.25",
            "--seed", "0", "--size", "fast", "--force")


def _own_predictions(run: Path, px: np.ndarray) -> list[int]:
    """The run's model on raw test pixels, normalized by hand with the mean/std in model.json."""
    from cnnlens.train import load_run

    r = load_run(run)
    meta = json.loads((run / "model.json").read_text())
    x = torch.from_numpy(px).float().view(-1, 1, 48, 48) / 255
    x = (x - meta["mean"][0]) / meta["std"][0]
    r.model.eval()
    with torch.no_grad():
        return r.model(x).argmax(1).tolist()


@pytest.mark.slow
def test_run_on_course_train_and_unlabeled_test_csv(tmp_path):
    train, test_px = course_files(tmp_path / "data")
    run = tmp_path / "run"
    p = cli("run", "--data", f"fer2013:{train}", "--out", str(run), *RUN_ARGS)
    log = p.stdout + p.stderr
    assert "the test split is unlabeled (6 images)" in log and "'val'" in log
    assert "val accuracy" in log and "test accuracy" not in log

    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["n"] == 14  # 25% of 8 per class, 7 classes
    trust = json.loads((run / "trust" / "scores.json").read_text())
    assert trust["options"]["split"] == "val"
    index = json.loads((run / "explain" / "explanations.json").read_text())
    assert set(index["splits"]) == {"val"} and index["selection"] == "correct"

    # the submission: one row per test.csv row, in its order, ids as written, the model's own predictions
    sub = run / "submission.csv"
    assert f"submission file (unlabeled test split): {sub}" in p.stdout
    with open(sub, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "label"]
    assert [r[0] for r in rows[1:]] == TEST_IDS
    assert [int(r[1]) for r in rows[1:]] == _own_predictions(run, test_px)

    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    acc = sum(r["support"] * r["recall"] for r in metrics["per_class"]) / metrics["n"]
    assert f"Validation accuracy is {100 * acc:.1f}% on 14 val images" in html
    assert "measured on the labeled val split: the test split is unlabeled (6 images)" in html
    assert "submission.csv</code> (6 rows, columns <code>id,label</code>" in html
    assert "trust" in html and "scored on 8 val images" in html
    assert "test image" not in html.lower()  # nothing claims to be about the unlabeled test split


@pytest.mark.slow
def test_run_on_course_train_csv_alone(tmp_path):
    train, _ = course_files(tmp_path / "data", with_test=False, seed=1)
    run = tmp_path / "run"
    p = cli("run", "--data", f"fer2013:{train}", "--out", str(run), "--skip", "confused,lime,featureviz",
            *RUN_ARGS)
    assert "the dataset has no test split" in p.stderr
    assert not (run / "submission.csv").exists()
    assert json.loads((run / "eval" / "metrics.json").read_text())["split"] == "val"
    html = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "measured on the labeled val split: the dataset has no test split" in html
    assert "on 14 val images" in html and "Predictions for the unlabeled test split" not in html
    # the standalone commands that need labels take val too, and say so
    e = cli("explain", str(run), "--methods", "saliency")
    assert re.search(r"explained \d+ val image\(s\)", e.stdout)
    assert set(json.loads((run / "explain" / "explanations.json").read_text())["splits"]) == {"val"}
    t = cli("trust", str(run), "--fast", "--n-images", "4", "--methods", "saliency")
    assert "trust: 4 val images" in t.stdout
    assert json.loads((run / "trust" / "scores.json").read_text())["options"]["split"] == "val"
    bad = cli("trust", str(run), "--split", "test", check=False)
    assert bad.returncode == 2 and "has no split 'test'" in bad.stderr


def test_an_unlabeled_split_asked_for_is_refused_naming_the_fix(tmp_path):
    """`evaluate --split test` on a course run: exit 2 naming the split, why, and the labeled one."""
    from cnnlens.data import load_dataset
    from cnnlens.data.splits import label_split

    train, _ = course_files(tmp_path / "data")
    ds = load_dataset(f"fer2013:{train}", val_fraction=0.25)
    assert label_split(ds) == "val"
    with pytest.raises(ValueError, match=r"--split test: the test split is unlabeled \(6 images\).*"
                                         r"choose a labeled split \(train, val\).*cnnlens predict"):
        label_split(ds, "test")
    alone, _ = course_files(tmp_path / "alone", with_test=False)
    ds0 = load_dataset(f"fer2013:{alone}", val_fraction=0.0)
    with pytest.raises(ValueError, match=r"no test split and there is no labeled 'val' split.*--val-fraction"):
        label_split(ds0)
