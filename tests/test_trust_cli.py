"""`cnnlens trust RUN` on a real run directory written by `cnnlens.train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cnnlens

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_trust_cli_writes_scores_and_prints_the_table(digits_run) -> None:
    run = cnnlens.load_run(digits_run)
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "250"}
    cmd = [
        sys.executable,
        "-m",
        "cnnlens",
        "trust",
        str(run.path),
        "--methods",
        "gradcam",
        "--fast",
        "--n-images",
        "6",
        "--steps",
        "8",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads((run.path / "trust" / "scores.json").read_text())
    assert list(data["methods"]) == ["gradcam", "control_random", "control_edge"]
    assert data["n_images"] == 6 and "localization" not in data["tests"]  # digits has no masks
    assert data["options"]["steps"] == 8 and data["options"]["cascade"] is False  # --fast, flags override
    for m, entry in data["methods"].items():
        assert entry["reading"] in res.stdout  # one reading line per method
    assert "scores.json" in res.stdout
    bad = subprocess.run(
        [*cmd[:5], "--methods", "nope"], capture_output=True, text=True, env=env, timeout=300
    )
    assert bad.returncode == 2 and "nope" in bad.stderr and "gradcam" in bad.stderr
