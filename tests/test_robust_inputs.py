"""The bad-input matrix: every public entry point (Python and CLI) fed its malformed inputs.

Each case must give a clear, specific error (the message is asserted), never a traceback from deep
inside torch. Python entry points raise ValueError/TypeError/FileNotFoundError; the CLI exits 2 with
one `error:` line and no traceback (``cnnlens.cli.main`` is called in-process: an exception escaping
it would be the bare traceback a user sees).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import cnnlens
from cnnlens.data.base import ImageDataset
from cnnlens.explain import explain_many, explain_stream
from cnnlens.models.weights import read_state_dict

from robust_runs import ERROR_LINE, make_run


class Tiny(nn.Module):
    """1 x 8 x 8 -> 3 logits, with named layers."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


class Spatial(Tiny):
    """Returns [B, 3, 1, 1] (forgot to flatten): not 2-D logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))[:, :, None, None]


BAD_PY = """
import torch
from torch import nn
class Bad(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, input_size=8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)
    def forward(self, x):
        return self.conv(x)  # [B, K, H, W]: not logits
"""


def _ds(channels: int = 1, n: int = 12) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    return ImageDataset(name="t", images=torch.randint(0, 256, (n, channels, 8, 8), dtype=torch.uint8, generator=g),
                        labels=torch.arange(n) % 3, classes=["a", "b", "c"],
                        splits={"test": torch.arange(n)}, mean=(0.5,) * channels, std=(0.25,) * channels)


def _x(c: int = 1, b: int = 2) -> torch.Tensor:
    return torch.randn(b, c, 8, 8, generator=torch.Generator().manual_seed(1))


def _nan() -> torch.Tensor:
    x = _x()
    x[1, 0, 3, 3] = float("nan")
    return x


def _inf() -> torch.Tensor:
    x = _x()
    x[0, 0, 0, 0] = float("inf")
    return x


def _bad_version(tmp: Path) -> Path:
    run = make_run(tmp / "oldrun")
    meta = json.loads((run / "model.json").read_text())
    meta["format_version"] = 99
    (run / "model.json").write_text(json.dumps(meta))
    return run


def _corrupt_weights(tmp: Path) -> Path:
    run = make_run(tmp / "corrupt")
    w = run / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    return run


def _stream(tmp: Path, **kw: Any) -> Any:
    images = kw.pop("images", torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8))
    return explain_stream(Tiny(), images, [0.5], [0.25], kw.pop("methods", ["saliency"]), tmp / "stream", **kw)


def _empty_folder(tmp: Path) -> str:
    (tmp / "empty").mkdir()
    return f"folder:{tmp / 'empty'}"


# (case id, what is malformed, call(tmp) -> anything, expected exception type, message regex)
PY_CASES: list[tuple[str, Callable[[Path], Any], type[Exception], str]] = [
    # wrong image shape or channel count for the model
    ("explain-3-channels", lambda t: cnnlens.explain(Tiny(), _x(3), "saliency"), ValueError,
     r"fails on input \(2, 3, 8, 8\).*expected input.*1 channels.*channel count and size"),
    ("explain_many-3-channels", lambda t: explain_many(Tiny(), _x(3), ["saliency", "gradcam"]), ValueError,
     r"fails on input \(2, 3, 8, 8\)"),
    ("explain-no-batch-dim", lambda t: cnnlens.explain(Tiny(), _x()[0], "saliency"), ValueError,
     r"\[B,C,H,W\].*add a batch dimension"),
    ("explain-uint8", lambda t: cnnlens.explain(Tiny(), torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "saliency"),
     ValueError, r"normalized float tensor"),
    ("evaluate-3-channels", lambda t: cnnlens.evaluate(Tiny(), _ds(3)), ValueError, r"fails on input \(\d+, 3, 8, 8\)"),
    ("stream-3-channels", lambda t: explain_stream(Tiny(), torch.zeros(4, 3, 8, 8, dtype=torch.uint8), [0.5] * 3,
                                                   [0.25] * 3, ["saliency"], t / "s"), ValueError,
     r"fails on input \(4, 3, 8, 8\)"),
    ("stream-mean-channels", lambda t: _stream(t, images=torch.zeros(4, 3, 8, 8, dtype=torch.uint8)), ValueError,
     r"mean and std need one value per channel \(3\)"),
    ("stream-float-images", lambda t: _stream(t, images=torch.zeros(4, 1, 8, 8)), ValueError,
     r"images must be uint8 \[N,C,H,W\]"),
    # NaN / inf pixels
    ("explain-nan", lambda t: cnnlens.explain(Tiny(), _nan(), "gradcam"), ValueError, r"NaN or infinite"),
    ("explain_many-inf", lambda t: explain_many(Tiny(), _inf(), ["saliency"]), ValueError, r"NaN or infinite"),
    # a model whose output is not 2-D logits
    ("explain-4d-output", lambda t: cnnlens.explain(Spatial(), _x(), "saliency"), ValueError,
     r"must return logits \[B, num_classes\].*returned \(2, 3, 1, 1\)"),
    ("evaluate-4d-output", lambda t: cnnlens.evaluate(Spatial(), _ds()), ValueError, r"must return logits"),
    ("create_model-4d-output", lambda t: (t / "bad.py").write_text(BAD_PY) and cnnlens.create_model(
        f"{t / 'bad.py'}:Bad", in_channels=1, num_classes=3, input_size=8, trust_code=True), ValueError,
     r"must return logits \[B, 3\].*returned \(2, 3, 8, 8\)"),
    # a target class out of range
    ("explain-target-3", lambda t: cnnlens.explain(Tiny(), _x(), "saliency", target=3), ValueError,
     r"target class 3 is out of range: the model has 3 classes \(0..2\)"),
    ("explain_many-target-list", lambda t: explain_many(Tiny(), _x(), ["gradcam"], target=[0, 7]), ValueError,
     r"target class 7 is out of range"),
    ("stream-target-negative", lambda t: _stream(t, target=-1), ValueError, r"target class -1 is out of range"),
    ("explain-target-word", lambda t: cnnlens.explain(Tiny(), _x(), "saliency", target="dog"), ValueError,
     r"target must be None, 'pred', 'label'"),
    # a layer name that does not exist: the error lists the valid names
    ("explain-layer", lambda t: cnnlens.explain(Tiny(), _x(), "gradcam", layer="features.9"), ValueError,
     r"layer 'features.9' does not exist in Tiny \(did you mean .*'features.0'.*\); valid layer names: features, "
     r"features.0, features.1, pool, head"),
    ("explain_many-layer", lambda t: explain_many(Tiny(), _x(), ["gradcam", "saliency"], layer="conv"),
     ValueError, r"valid layer names: features, features.0"),
    ("stream-layer", lambda t: _stream(t, methods=["gradcam"], layer="nope"), ValueError,
     r"layer 'nope' does not exist.*valid layer names"),
    # an empty dataset / no images
    ("explain-0-images", lambda t: cnnlens.explain(Tiny(), torch.zeros(0, 1, 8, 8), "saliency"), ValueError,
     r"holds no images"),
    ("stream-no-indices", lambda t: _stream(t, indices=[]), ValueError, r"nothing to explain"),
    ("load_dataset-empty-folder", lambda t: cnnlens.load_dataset(_empty_folder(t)), ValueError,
     r"has no class folders"),
    ("dataset-0-images", lambda t: ImageDataset(name="t", images=torch.zeros(0, 1, 8, 8, dtype=torch.uint8),
                                                labels=torch.zeros(0, dtype=torch.long), classes=["a"], splits={},
                                                mean=(0.5,), std=(0.2,)), ValueError, r"has no images"),
    ("train-empty-folder", lambda t: cnnlens.train(data=_empty_folder(t), out=t / "r"), ValueError,
     r"has no class folders"),
    # a run directory from an incompatible version
    ("load_run-version", lambda t: cnnlens.load_run(_bad_version(t)), ValueError,
     r"model.json has format_version 99; this cnnlens .* reads version 1"),
    ("build_report-version", lambda t: __import__("cnnlens.report.html", fromlist=["x"]).build_report(
        _bad_version(t)), ValueError, r"format_version 99"),
    # a corrupted safetensors file
    ("load_run-corrupt", lambda t: cnnlens.load_run(_corrupt_weights(t)), ValueError,
     r"model.safetensors is not a valid safetensors file .*damaged"),
    ("read_state_dict-corrupt", lambda t: read_state_dict(_corrupt_weights(t) / "model.safetensors"), ValueError,
     r"not a readable safetensors file"),
]


@pytest.mark.parametrize("call,exc,pattern", [c[1:] for c in PY_CASES], ids=[c[0] for c in PY_CASES])
def test_python_entry_point_rejects_bad_input(call, exc, pattern, tmp_path):
    with pytest.raises(exc, match=pattern) as ei:
        call(tmp_path)
    # our own error, raised by cnnlens code (not an exception escaping from deep inside torch)
    assert "cnnlens" in str(ei.traceback[-1].path), f"raised from {ei.traceback[-1].path}"


# ---- CLI --------------------------------------------------------------------------------------------

def _fer_csv(tmp: Path, bad: str | None, rows: int = 14) -> Path:
    rng = random.Random(0)
    lines = ["emotion,pixels,Usage"]
    for i in range(rows):
        px = [str(rng.randint(0, 255)) for _ in range(48 * 48)]
        if bad is not None and i == 5:
            px[100] = bad
        lines.append(f"{i % 7},{' '.join(px)},{('Training', 'PublicTest', 'PrivateTest')[i % 3]}")
    p = tmp / f"fer_{bad}.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def _header_only(tmp: Path) -> Path:
    p = tmp / "header.csv"
    p.write_text("emotion,pixels,Usage\n")
    return p


CLI_CASES: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    # the run's model takes 3 channels, its data now gives 1
    ("evaluate-data-changed", lambda t: ["evaluate", str(make_run(t / "rgb", in_channels=3))],
     ["digits now gives 1x16x16 images", "was trained on 3x16x16"]),
    ("explain-data-changed", lambda t: ["explain", str(make_run(t / "rgb", in_channels=3)), "--images", "0"],
     ["now gives 1x16x16 images"]),
    ("models-summary-input", lambda t: ["models", "summary", "compact", "--input", "1x8"],
     ["--input must look like CxHxW"]),
    ("data-inspect-nan", lambda t: ["data", "inspect", f"fer2013:{_fer_csv(t, 'nan')}"],
     ["line 7: pixel 101 is 'nan', not an integer"]),
    ("train-inf", lambda t: ["train", "--data", f"fer2013:{_fer_csv(t, 'inf')}", "--out", str(t / "r")],
     ["line 7: pixel 101 is 'inf'"]),
    ("models-summary-4d-output", lambda t: [(t / "bad.py").write_text(BAD_PY) and "models", "summary",
                                            f"{t / 'bad.py'}:Bad", "--input", "1x8x8", "--classes", "3",
                                            "--trust-code"],
     ["must return logits [B, 3]", "returned (2, 3, 8, 8)"]),
    ("explain-target", lambda t: ["explain", str(make_run(t / "r")), "--images", "0,1", "--target", "99"],
     ["target class 99 is out of range: the model has 10 classes (0..9)"]),
    ("explain-all-target", lambda t: ["explain", str(make_run(t / "r")), "--all", "--target", "10",
                                      "--out-dir", str(t / "s")],
     ["target class 10 is out of range"]),
    ("explain-image-index", lambda t: ["explain", str(make_run(t / "r")), "--images", "5000"],
     ["image index 5000 is out of range"]),
    ("explain-layer", lambda t: ["explain", str(make_run(t / "r")), "--methods", "gradcam", "--layer", "cnn.99",
                                 "--images", "0"],
     ["layer 'cnn.99' does not exist in CompactCNN (did you mean 'cnn.9", "valid layer names: cnn, cnn.0, cnn.1"]),
    ("explain-method", lambda t: ["explain", str(make_run(t / "r")), "--methods", "gradcam,nope", "--images", "0"],
     ["nope", "gradcam", "saliency"]),
    ("train-empty-folder", lambda t: ["train", "--data", _empty_folder(t), "--out", str(t / "r")],
     ["has no class folders"]),
    ("data-inspect-no-rows", lambda t: ["data", "inspect", f"fer2013:{_header_only(t)}"], ["but no data rows"]),
    ("evaluate-version", lambda t: ["evaluate", str(_bad_version(t))], ["format_version 99", "reads version 1"]),
    ("explain-version", lambda t: ["explain", str(_bad_version(t))], ["format_version 99"]),
    ("report-version", lambda t: ["report", str(_bad_version(t))], ["format_version 99"]),
    ("evaluate-corrupt", lambda t: ["evaluate", str(_corrupt_weights(t))],
     ["model.safetensors is not a valid safetensors file", "damaged"]),
    ("explain-all-corrupt", lambda t: ["explain", str(_corrupt_weights(t)), "--all"],
     ["is not a valid safetensors file"]),
    ("evaluate-not-a-run", lambda t: ["evaluate", str(t)], ["is not a cnnlens run: model.json is missing"]),
    ("train-devices", lambda t: ["train", "--data", "digits", "--devices", "two", "--out", str(t / "r")],
     ["--devices", "takes a positive number of devices or 'auto'; got 'two'"]),
    ("trust-devices", lambda t: ["trust", str(t / "r"), "--devices", "0"],
     ["--devices", "got '0'"]),
]


@pytest.mark.parametrize("argv,fragments", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_rejects_bad_input_with_exit_2_and_one_error_line(argv, fragments, tmp_path, capsys, monkeypatch):
    from cnnlens.cli import main

    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("CNNLENS_CACHE", str(tmp_path / "cache"))
    args = argv(tmp_path)
    capsys.readouterr()
    rc = main(args)  # an exception escaping main() is the traceback a user would see: the test fails
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1 and err.count("error:") == 1, err  # one line, never wrapped
    msg = errors[0]
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
