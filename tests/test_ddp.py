"""Data parallelism on the CPU: two gloo processes give the single-process results and one set of files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import SRC, cli

import cnnlens
from cnnlens.explain.distributed import merge_parts
from cnnlens.metrics import explain_maps, is_stochastic, run_trust, spearman, trust_dataset


def _history(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
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


@pytest.mark.slow
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


# ---- trust scoring over a split image set -------------------------------------------------------

TRUST_METHODS = ["saliency", "gradcam", "smoothgrad"]  # smoothgrad and control_random draw noise


def _same_trust(a: dict, b: dict) -> None:
    """Two scores.json: same images, methods, tests, verdicts; per-image values equal to 1e-5."""
    assert a["options"] == b["options"] and a["n_images"] == b["n_images"]
    assert list(a["methods"]) == list(b["methods"]) and a["tests"] == b["tests"]
    assert a["skipped"] == b["skipped"]
    assert abs(a["accuracy_on_images"] - b["accuracy_on_images"]) < 1e-12
    for m, ea in a["methods"].items():
        eb = b["methods"][m]
        assert list(ea["scores"]) == list(eb["scores"]), m
        for k, s in ea["scores"].items():
            np.testing.assert_allclose(s["values"], eb["scores"][k]["values"], atol=1e-5, rtol=0,
                                       err_msg=f"{m} {k}")
        assert ea["passed"] == eb["passed"], m
        for kind in ("randomization_cascading", "randomization_independent"):
            assert [ly for ly, _ in ea[kind]] == [ly for ly, _ in eb[kind]]
            for (_, da), (_, db) in zip(ea[kind], eb[kind]):
                for sim in da:
                    assert abs(da[sim] - db[sim]) < 1e-5, (m, kind, sim)


@pytest.mark.slow
def test_trust_scoring_on_two_processes_matches_one(tmp_path):
    # a real run directory (tiny compact CNN, one epoch on `planted`, which has masks: localization runs)
    run = cnnlens.train("planted", "compact", out=tmp_path / "run", epochs=1, batch_size=256, seed=0,
                        model_options={"widths": [4, 8], "fc": [16]}, accelerator="cpu")
    ds = run.dataset
    if tuple(ds.mean) != tuple(run.mean) or tuple(ds.std) != tuple(run.std):  # as `cnnlens trust` does
        from dataclasses import replace

        ds = replace(ds, mean=run.mean, std=run.std)
    kw = dict(n_images=7, steps=6)
    # reference: the in-process protocol, all images in one batch
    ref = run_trust(run.model, ds, TRUST_METHODS, out_dir=tmp_path / "ref", **kw)
    assert "localization" in ref.tests and ref.methods == [*TRUST_METHODS, "control_random", "control_edge"]
    # one process through Lightning, batches of 2 (the last one holds a single image)
    one = trust_dataset(run.model, ds, TRUST_METHODS, out_dir=tmp_path / "one", accelerator="cpu",
                        devices=1, batch_size=2, **kw)
    assert one is not None and one.passed == ref.passed
    # two gloo processes through the CLI: each rank scores a shard of 4 (one image repeated by the sampler)
    p = cli("trust", str(run.path), "--methods", ",".join(TRUST_METHODS), "--n-images", "7",
            "--steps", "6", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp")
    ref_json = json.loads((tmp_path / "ref" / "scores.json").read_text())
    # the Python call writes the numbers; the CLI also draws the figure (report side)
    assert sorted(f.name for f in (tmp_path / "one").iterdir()) == ["scores.json", "table.csv"]
    assert sorted(f.name for f in (run.path / "trust").iterdir()) == [
        "randomization.png", "scores.json", "table.csv"]
    for out in (tmp_path / "one", run.path / "trust"):
        _same_trust(ref_json, json.loads((out / "scores.json").read_text()))
    for m, entry in ref_json["methods"].items():  # rank 0 alone prints: each reading once
        assert p.stdout.count(f"{m}: ") == 1, p.stdout
    assert sorted(f.name for f in run.path.iterdir()) == sorted(
        ["checkpoints", "config.yaml", "history.csv", "model.json", "model.safetensors", "trust"]
    )  # nothing else written by either rank


@pytest.mark.slow
def test_trust_scores_do_not_depend_on_how_images_are_batched():
    torch.manual_seed(0)
    model = cnnlens.create_model("compact", 1, 4, 48, widths=(4, 8), fc=(16,))
    ds = cnnlens.load_dataset("planted", n=120)
    kw = dict(n_images=7, steps=6, method_options={"smoothgrad": {"n_samples": 3}})
    whole = run_trust(model, ds, TRUST_METHODS, **kw)
    parts = run_trust(model, ds, TRUST_METHODS, batch_size=3, **kw)  # batches of 3, 3, 1
    assert whole.methods == parts.methods and whole.passed == parts.passed
    for m in whole.methods:
        for k, s in whole.scores[m].items():
            torch.testing.assert_close(s.values, parts.scores[m][k].values, atol=1e-5, rtol=0)
        for (la, da), (lb, db) in zip(whole.cascading[m], parts.cascading[m]):
            assert la == lb and all(abs(da[s] - db[s]) < 1e-5 for s in da)
        # the per-image numbers kept for the report's explorer are gathered in image order too
        pw, pp = whole.per_image["methods"][m], parts.per_image["methods"][m]
        for kind in ("deletion", "insertion"):
            np.testing.assert_allclose(pp["curves"][kind], pw["curves"][kind], atol=1e-5, rtol=0)
        np.testing.assert_allclose(pp["scores"]["deletion_auc"], whole.scores[m]["deletion_auc"].values,
                                   atol=1e-5, rtol=0)
    assert parts.per_image["indices"] == whole.per_image["indices"] == whole.options["images"]
    # stochastic maps are a function of (seed, dataset index): a slice explains like the whole ...
    idx = ds.indices("test")[:5]
    x, y = ds.normalize(ds.images[idx]), ds.labels[idx]
    for method, opts in (("smoothgrad", {"n_samples": 3}), ("control_random", {})):
        full = explain_maps(model, x, method, y, idx, opts, seed=4, call=1)
        part = explain_maps(model, x[2:4], method, y[2:4], idx[2:4], opts, seed=4, call=1)
        torch.testing.assert_close(part, full[2:4], atol=1e-6, rtol=0)
        # ... while another index, or another seed, draws other noise
        other = explain_maps(model, x[:1], method, y[:1], idx[1:2], opts, seed=4, call=1)
        assert not torch.allclose(other, full[:1])
        reseeded = explain_maps(model, x[:1], method, y[:1], idx[:1], opts, seed=5, call=1)
        assert not torch.allclose(reseeded, full[:1])
    # the random control draws fresh noise on every call (its similarity floor); smoothgrad the same noise
    c1 = explain_maps(model, x, "control_random", y, idx, {}, seed=4, call=1)
    c2 = explain_maps(model, x, "control_random", y, idx, {}, seed=4, call=2)
    assert abs(float(spearman(c1, c2).mean())) < 0.1
    s2 = explain_maps(model, x, "smoothgrad", y, idx, {"n_samples": 3}, seed=4, call=2)
    s1 = explain_maps(model, x, "smoothgrad", y, idx, {"n_samples": 3}, seed=4, call=1)
    torch.testing.assert_close(s2, s1)
    assert is_stochastic("smoothgrad") and is_stochastic("control_random") and is_stochastic("lime")
    assert not is_stochastic("saliency") and is_stochastic("saliency", {"nt_samples": 4})
    assert not is_stochastic("gradcam") and not is_stochastic("control_edge")


def test_merge_parts_keeps_input_order_drops_repeats_and_fills_missing_names():
    parts = [
        {"idx": torch.tensor([0, 2, 4]), "a": torch.tensor([0.0, 2.0, 4.0]),
         "e": torch.ones(3, 2, dtype=torch.uint8)},
        {"idx": torch.tensor([1, 3, 0]), "a": torch.tensor([1.0, 3.0, 0.0]),
         "b": torch.tensor([1.0, 3.0, 0.0])},
    ]
    got = merge_parts(parts, 5)
    assert list(got) == ["a", "e", "b"]
    assert got["a"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    # image 0 is in both parts (a repeat): kept from the last one, which has "b" and no "e"
    assert got["e"].tolist() == [[0, 0], [0, 0], [1, 1], [0, 0], [1, 1]]
    b = got["b"].tolist()
    assert b[:2] == [0.0, 1.0] and b[3] == 3.0 and np.isnan(b[2]) and np.isnan(b[4])
    with pytest.raises(RuntimeError, match="missing"):
        merge_parts(parts, 6)
