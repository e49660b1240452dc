"""Spreadsheet formula injection: text cells starting with = + - @ tab CR get a leading ' in every
CSV cnnlens writes; numbers (and text that is exactly a number) are left alone."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from robust_runs import run_cli

from cnnlens.io import csv_cell, write_csv

FORMULAS = ['=HYPERLINK("http://evil.example","click")', "@SUM(1+1)", "+1+cmd|' /C calc'!A0",
            "-2+3", "\tTab", "\rCR"]


def test_write_csv_quotes_formula_text_and_leaves_numbers(tmp_path):
    out = write_csv(tmp_path / "t.csv", ["name", "=x", "value"],
                    [[f, -1.5, "-1.5"] for f in FORMULAS] + [["plain", -2, "+3"], ["-0.5e-3", 0, "-inf"]])
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["name", "'=x", "value"]
    assert [r[0] for r in rows[1:len(FORMULAS) + 1]] == ["'" + f for f in FORMULAS]
    assert all(r[1:] == ["-1.5", "-1.5"] for r in rows[1:len(FORMULAS) + 1])  # numbers stay numbers
    assert rows[-2] == ["plain", "-2", "+3"]
    assert rows[-1] == ["-0.5e-3", "0", "-inf"]
    # only the first character matters; a formula sign later in the text is harmless
    assert csv_cell("a=b") == "a=b" and csv_cell("") == "" and csv_cell(None) is None and csv_cell(-3) == -3


@pytest.mark.slow
def test_class_and_file_names_are_quoted_in_predictions_confusion_and_submission(tmp_path):
    classes = ['=HYPERLINK("evil.example","x")', "@SUM(1+1)", "+cmd", "-5", "plain"]
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(10):
            a = rng.integers(0, 60, (16, 16)).astype(np.uint8)
            a[:, 3 * k:3 * k + 3] = 220
            Image.fromarray(a).save(root / name / (f"=f{i}.png" if i % 2 else f"{i}.png"))
    run = tmp_path / "run"
    env = {"CNNLENS_CACHE": str(tmp_path / "cache")}
    for cmd in (["train", "--data", f"folder:{root}", "--epochs", "1", "--batch-size", "8", "--out", str(run)],
                ["evaluate", str(run)],
                ["predict", str(run), "--label", "name", "--probs", "--out", str(tmp_path / "sub.csv")]):
        p = run_cli(*cmd, extra_env=env)
        assert p.returncode == 0, p.stderr

    def read(path):
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.reader(fh))

    safe = {c: ("'" + c if c[0] in "=@+" else c) for c in classes}  # "-5" is a number: unchanged
    order = json.loads((run / "model.json").read_text())["classes"]  # the run's class order
    assert sorted(order) == sorted(classes)
    classes = order
    conf = read(run / "eval" / "confusion.csv")
    assert conf[0][1:] == [safe[c] for c in classes]
    assert [r[0] for r in conf[1:]] == [safe[c] for c in classes]
    assert all(v.isdigit() for r in conf[1:] for v in r[1:])  # counts untouched
    pred = read(run / "eval" / "predictions.csv")
    cells = {v for r in pred[1:] for v in r}
    assert not any(v[:1] in "=@+" for v in cells)
    assert {safe[c] for c in classes} & cells  # class names appear, made safe
    sub = read(tmp_path / "sub.csv")
    assert sub[0][2:] == [safe[c] for c in classes]  # one probability column per class
    ids = [r[0] for r in sub[1:]]
    assert any(i.startswith("'=HYPERLINK") for i in ids) and any(i.startswith("'-5/") for i in ids)
    assert not any(i[:1] in "=@+-" for i in ids)  # file ids (class/file) made safe too
    assert all(r[1] in safe.values() for r in sub[1:])
    for r in sub[1:]:
        probs = [float(v) for v in r[2:]]  # numeric columns are plain numbers
        assert abs(sum(probs) - 1) < 1e-4
