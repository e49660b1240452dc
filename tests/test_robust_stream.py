"""Streaming explanation: stopped and resumed == one shot; settings guarded; memory does not grow with N."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from cnnlens.explain import explain_many, explain_stream, read_stream
from cnnlens.explain.batch import normalize_images

from robust_runs import env

MEAN, STD = [0.4], [0.3]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3))


class Stop(Exception):
    pass


def test_stopped_then_resumed_equals_one_shot(tmp_path):
    model = _model()
    images = torch.randint(0, 256, (70, 1, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 3, (70,))
    idx = torch.arange(3, 70, 2)  # a "split": every other image from 3 on (34 images, 5 chunks of 8)
    methods = ["saliency", "gradcam", "integrated_gradients"]
    seen: list[int] = []

    def stop_after_two(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise Stop

    kw = dict(target="label", labels=labels, indices=idx, chunk_size=8, method_options={
        "integrated_gradients": {"steps": 8}})
    with pytest.raises(Stop):
        explain_stream(model, images, MEAN, STD, methods, tmp_path / "s", progress=stop_after_two, **kw)
    assert read_stream(tmp_path / "s").manifest["chunks_done"] == 2
    # a chunk written but not yet recorded (a kill between the shards and the manifest) is redone
    (tmp_path / "s" / "saliency" / "00002.npy").write_bytes(b"garbage")
    calls: list[int] = []
    res = explain_stream(model, images, MEAN, STD, methods, tmp_path / "s",
                         progress=lambda d, t: calls.append(d), **kw)
    assert calls[0] == 16 and calls[-1] == 34  # resumed after the two finished chunks
    assert res.complete and res.manifest["chunks"] == 5
    ref = explain_many(model, normalize_images(images[idx], MEAN, STD), methods, target="label",
                       labels=labels[idx], method_options={"integrated_gradients": {"steps": 8}})
    for m in methods:
        got = res.load(m)
        assert got.shape == (34, 8, 8)
        np.testing.assert_array_equal(got, ref[m].maps.numpy())
    np.testing.assert_array_equal(res.load("targets"), labels[idx].numpy())
    np.testing.assert_array_equal(res.load("indices"), idx.numpy())
    np.testing.assert_allclose(res.load("probs"), ref["saliency"].probs.numpy(), rtol=0, atol=0)
    gaps = json.loads((tmp_path / "s" / "integrated_gradients" / "00000.json").read_text())
    assert len(next(iter(gaps.values()))) == 8  # per-image scalar extras, one list per chunk


def test_resume_with_other_settings_is_refused_and_restart_works(tmp_path):
    model = _model()
    images = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8)
    explain_stream(model, images, MEAN, STD, ["saliency"], tmp_path / "s", chunk_size=8)
    with pytest.raises(ValueError, match="different settings.*model"):
        other = _model()
        with torch.no_grad():
            other[0].weight.add_(1.0)
        explain_stream(other, images, MEAN, STD, ["saliency"], tmp_path / "s", chunk_size=8)
    with pytest.raises(ValueError, match="different settings.*chunk_size"):
        explain_stream(model, images, MEAN, STD, ["saliency"], tmp_path / "s", chunk_size=4)
    res = explain_stream(model, images, MEAN, STD, ["gradcam"], tmp_path / "s", chunk_size=4, overwrite=True)
    assert res.complete and sorted(p.name for p in (tmp_path / "s").iterdir()) == \
        ["gradcam", "indices", "manifest.json", "probs", "targets"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        explain_stream(model, images, MEAN, STD, ["saliency"], tmp_path / "other")


PEAK = textwrap.dedent("""
    import json, sys, torch
    from torch import nn
    from cnnlens.explain import explain_images, explain_stream

    def status(key):  # kB, from this process's own memory map (ru_maxrss would include the parent's
        for line in open("/proc/self/status"):  # RSS at fork time: pytest's, hundreds of MB)
            if line.startswith(key + ":"):
                return int(line.split()[1])

    n, mode, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 3))
    images = torch.randint(0, 256, (n, 1, 64, 64), dtype=torch.uint8)
    # one small run first: lazy imports and allocator warm-up are not what is measured
    run = explain_stream if mode == "stream" else explain_images
    run(model, images[:300], [0.5], [0.25], ["saliency"], *([out + "-warm"] if mode == "stream" else []),
        chunk_size=250)
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
    before = status("VmRSS")
    if mode == "stream":
        explain_stream(model, images, [0.5], [0.25], ["saliency"], out, chunk_size=250)
    else:
        explain_images(model, images, [0.5], [0.25], ["saliency"], chunk_size=250)
    print(json.dumps({"growth_mb": (status("VmHWM") - before) / 1024}))
""")


def _growth(n: int, mode: str, out) -> float:
    """Peak-RSS growth (MB) of explaining n images. glibc's dynamic mmap threshold lets freed large blocks
    fragment the heap (RSS then creeps by a few MB whatever holds memory); a fixed threshold measures
    what the code itself keeps."""
    p = subprocess.run([sys.executable, "-c", PEAK, str(n), mode, str(out)],
                       env={**env(), "MALLOC_MMAP_THRESHOLD_": "131072"}, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])["growth_mb"]


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """5,000 images of 64x64: holding all maps would take 82 MB (plus 82 MB of normalized input)."""
    small = _growth(500, "stream", tmp_path / "a")
    large = _growth(5000, "stream", tmp_path / "b")
    held = _growth(5000, "all", tmp_path / "c")  # the one-shot path, as a check that the measure sees it
    assert held > large + 80, (large, held)
    assert large < small + 4, (small, large)  # one chunk's working set, whatever N
