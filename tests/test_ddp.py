"""Data parallelism on the CPU: two gloo processes give the single-process results and one set of files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import torch
from conftest import SRC, cli

import cnnlens


def _history(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_ddp_training_on_two_cpu_processes_matches_one(tmp_path):
    # per-device batch 32 on 2 processes == batch 64 on one (the mlp has no BatchNorm, whose batch
    # statistics are per process on CPU; on GPUs cnnlens syncs them)
    one, two = tmp_path / "one", tmp_path / "two"
    cli("train", "--data", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "64",
        "--accelerator", "cpu", "--out", str(one))
    cli("train", "--data", "digits", "--model", "mlp", "--epochs", "2", "--batch-size", "32",
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--out", str(two))
    h1, h2 = _history(one / "history.csv"), _history(two / "history.csv")
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):
        for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert abs(float(a[k]) - float(b[k])) <= 1e-5 * max(1.0, abs(float(a[k]))), (k, a[k], b[k])
    w1, w2 = cnnlens.load_run(one).model.state_dict(), cnnlens.load_run(two).model.state_dict()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=1e-4)
    # one set of output files: exactly what a single-process run writes
    rel = lambda root: sorted(str(p.relative_to(root)) for p in root.rglob("*"))  # noqa: E731
    assert rel(one) == rel(two)


SCRIPT = r"""
import sys, torch, cnnlens
from cnnlens.explain.distributed import explain_dataset
torch.manual_seed(0)
model = cnnlens.create_model("compact", 1, 10, 32)
ds = cnnlens.load_dataset("digits")
imgs = ds.images[ds.splits["test"]][:37]
labels = ds.labels[ds.splits["test"]][:37]
devices = int(sys.argv[2])
explain_dataset(model, imgs, ds.mean, ds.std, ["saliency", "gradcam", "integrated_gradients"], sys.argv[1],
                target="label", labels=labels, accelerator="cpu", devices=devices,
                strategy="ddp" if devices > 1 else "auto", batch_size=8, steps=8)
"""


def test_explaining_a_dataset_on_two_processes_matches_one(tmp_path):
    script = tmp_path / "explain_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    for devices in (1, 2):
        p = subprocess.run([sys.executable, str(script), str(tmp_path / f"out{devices}"), str(devices)],
                           env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
    a, b = tmp_path / "out1", tmp_path / "out2"
    assert sorted(f.name for f in a.iterdir()) == sorted(f.name for f in b.iterdir())  # shards gathered, removed
    for f in ("saliency.npy", "gradcam.npy", "integrated_gradients.npy", "probs.npy"):
        x, y = np.load(a / f), np.load(b / f)
        assert x.shape[0] == 37
        np.testing.assert_allclose(x, y, atol=1e-5, rtol=1e-4)
    ds = cnnlens.load_dataset("digits")
    assert np.load(b / "targets.npy").tolist() == ds.labels[ds.splits["test"]][:37].tolist()
