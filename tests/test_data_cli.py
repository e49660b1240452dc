"""`cnnlens data inspect` on a real (tiny) Kaggle-form CSV, and the sample grid figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlens.cli import main
from cnnlens.data.fer2013 import FER_CLASSES, load_fer2013
from cnnlens.data.samples import pick_samples
from cnnlens.report.fig_data import sample_grid

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _csv(path: Path, labels, usages, bad_line: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    for lab, u in zip(labels, usages):
        rows.append(f"{lab},{' '.join(map(str, rng.integers(0, 256, 2304).tolist()))},{u}")
    if bad_line is not None:
        rows[bad_line - 1] = rows[bad_line - 1].replace(",", ",300 ", 1)
    path.write_text("\n".join(rows) + "\n")
    return path


LABELS = [0, 3, 3, 6, 3, 0, 6, 6, 2, 3]
USAGES = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 2


@pytest.mark.slow
def test_inspect_prints_counts_skips_and_writes_grid(tmp_path):
    csv = _csv(tmp_path / "fer.csv", LABELS, USAGES, bad_line=5)  # line 5 = data row 4 (label 6, Training)
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "40"}
    r = subprocess.run([sys.executable, "-m", "cnnlens", "data", "inspect", str(csv), "--skip-bad-rows",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # counts written out by hand from LABELS/USAGES minus the skipped row 4
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.splitlines() if line.startswith("│")}
    assert rows["3 Happy"] == ["3", "0", "1", "4"]
    assert rows["6 Neutral"] == ["0", "2", "0", "2"]
    assert rows["0 Angry"] == ["2", "0", "0", "2"]
    assert rows["all"] == ["5", "2", "2", "9"]
    assert "skipped 1:" in out and "fer.csv line 5: pixels has 2305 values; FER2013 needs 2304" in out
    png = tmp_path / "out" / "samples.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


def test_inspect_error_names_line_and_fix(tmp_path, capsys):
    """The whole message on one line whatever the path's length (#23: it was hard-wrapped at 80
    columns, so `line 5` could come out as `line\\n5`)."""
    deep = tmp_path / ("long folder " * 8) / ("x" * 90)
    deep.mkdir(parents=True)
    for folder in (tmp_path, deep):
        csv = _csv(folder / "fer.csv", LABELS, USAGES, bad_line=5)
        assert main(["data", "inspect", f"fer2013:{csv}", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"error: {csv} line 5: pixels has 2305 values") and "--skip-bad-rows" in err, err
    assert not (tmp_path / "o").exists()


def test_pick_samples_and_grid(tmp_path):
    ds = load_fer2013(str(_csv(tmp_path / "fer.csv", LABELS, USAGES)))
    rows = pick_samples(ds, per_class=2, seed=1)
    assert [t for t, _ in rows] == [FER_CLASSES[k] for k in (0, 2, 3, 6)]
    for title, idx in rows:
        assert len(idx) == min(2, LABELS.count(FER_CLASSES.index(title)))
        assert all(ds.labels[i] == FER_CLASSES.index(title) for i in idx)
    assert rows == pick_samples(ds, per_class=2, seed=1)
    train_rows = pick_samples(ds, per_class=8, split="train")
    assert sorted(i for _, idx in train_rows for i in idx) == ds.splits["train"].tolist()
    p = sample_grid(ds, tmp_path / "g" / "grid.png", per_class=3)
    assert Image.open(p).format == "PNG"
    assert torch.equal(ds.images, load_fer2013(str(tmp_path / "fer.csv")).images)
