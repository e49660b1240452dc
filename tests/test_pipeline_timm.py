"""`cnnlens run` on transformer and modern CNN models from timm (#20): train -> evaluate -> explain ->
feature visualization -> trust -> report completes, and the report says what it used and what it
left out. Small configurations of each family (few blocks, narrow), tiny data, one epoch. Map quality
on transformers is the explanation side's (the default-layer tests); here: the pipeline and the page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli

pytest.importorskip("timm")


def _folders(root: Path, per_split: dict[str, int], digits=(0, 1, 2)) -> Path:
    from PIL import Image

    from cnnlens.data import load_dataset

    ds = load_dataset("digits")
    for d in digits:
        idx = (ds.labels == d).nonzero().flatten().tolist()
        start = 0
        for split, n in per_split.items():
            folder = root / split / f"d{d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in idx[start:start + n]:
                Image.fromarray(ds.images[i, 0].numpy()).save(folder / f"{i}.png")
            start += n
    return root


@pytest.mark.slow
@pytest.mark.parametrize("model, options, transformer", [
    ("timm:vit_tiny_patch16_224", ["depth=2"], True),
    ("timm:swin_tiny_patch4_window7_224",
     ["depths=[1, 1]", "num_heads=[1, 2]", "embed_dim=24", "window_size=4"], True),
    ("timm:convnext_atto", ["depths=[1, 1, 1, 1]", "dims=[8, 16, 32, 64]"], False),
])
def test_run_on_timm_models_writes_the_report(tmp_path, model, options, transformer):
    data = _folders(tmp_path / "data", {"train": 16, "val": 6, "test": 4})
    out = tmp_path / "run"
    args = ["run", "--data", f"folder:{data}", "--model", model, "--epochs", "1", "--batch-size", "16",
            "--size", "fast", "--methods", "saliency,gradcam", "--out", str(out)]
    for o in options:
        args += ["--model-option", o]
    cli(*args)
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"]["name"] == model and meta["normalization"] == "dataset"
    for f in ("eval/metrics.json", "explain", "featureviz/featureviz.json", "trust/scores.json",
              "report/index.html"):
        assert (out / f).exists(), f
    page = (out / "report" / "index.html").read_text()
    assert "train-split statistics" in page  # the normalization used, in words
    fv = json.loads((out / "featureviz" / "featureviz.json").read_text())
    notes = " ".join(fv.get("notes", []))
    if transformer:  # its blocks are not Conv2d: the report says the blocks are not visualized, and why
        assert fv["layers"] == ["patch_embed.proj"]
        assert "attention blocks" in notes and "not visualized" in notes
        assert "attention blocks" in page
    else:  # a CNN: its first and last convolutions
        assert len(fv["layers"]) == 2 and "attention blocks" not in notes
    if fv["dream"] is None:  # Deep Dream's smaller octaves cannot run on this model: said plainly
        assert "Deep Dream is left out" in notes and "Deep Dream is left out" in page
    else:
        assert "Deep Dream progression" in page
