"""Silent data surprises become warnings or errors that name the fix (issue 17, item 7).

Real PNG files in tiny folders, read through the real CLI where a user meets them.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import cli
from PIL import Image

import cnnlens


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLENS_CACHE", str(tmp_path / "cache"))  # the CLI subprocesses inherit it


def _png(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return a


def _one_line(text: str) -> str:
    """rich wraps long log lines; join them back."""
    return re.sub(r"\s+", " ", text)


@pytest.mark.slow
def test_food11_class_without_training_images_is_a_warning_naming_class_split_and_file_name(tmp_path):
    root = tmp_path / "food"
    for label in range(11):
        _png(root / "validation" / f"{label}_0.png", 12, 12, label)
        if label != 3:  # no training image of class 3 (Egg)
            _png(root / "training" / f"{label}_0.png", 12, 12, 20 + label)
    p = cli("data", "inspect", f"food11:{root}", "--out", str(tmp_path / "inspect"))
    err = _one_line(p.stderr)
    assert "class 'Egg' has no image in the train split" in err
    assert "cannot learn or predict" in err
    assert "training/ as 3_<index>.jpg" in err
    # validation has every class: no warning about it
    assert "val split" not in err


@pytest.mark.slow
def test_folder_class_missing_from_a_given_split_names_its_folder(tmp_path):
    root = tmp_path / "pets"
    for c in ("cat", "dog", "fox"):
        for i in range(2):
            _png(root / "train" / c / f"{i}.png", 10, 10, i)
    for c in ("cat", "dog"):  # val/ has no fox
        _png(root / "val" / c / "0.png", 10, 10, 9)
    p = cli("data", "inspect", f"folder:{root}", "--out", str(tmp_path / "inspect"))
    err = _one_line(p.stderr)
    assert "class 'fox' has no image in the val split" in err
    assert f"add images to {root / 'val' / 'fox'}/" in err
    assert "train split" not in err


@pytest.mark.slow
def test_training_on_one_class_is_an_error(tmp_path):
    root = tmp_path / "one"
    for i in range(3):
        _png(root / "train" / "cat" / f"{i}.png", 10, 10, i)
    _png(root / "val" / "cat" / "0.png", 10, 10, 7)
    _png(root / "val" / "dog" / "0.png", 10, 10, 8)
    p = cli("train", "--data", f"folder:{root}", "--epochs", "1", "--out", str(tmp_path / "run"), check=False)
    assert p.returncode == 2, p.stderr
    err = _one_line(p.stderr)
    assert "holds images of 1 class(es) ('cat') of 2" in err and "add training images" in err
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "run" / "model.json").exists()


@pytest.mark.slow
def test_one_odd_size_keeps_the_common_size_and_names_the_odd_image(tmp_path, caplog):
    root = tmp_path / "odd"
    arrays = {}
    for c in ("cat", "dog"):
        for i in range(4):
            arrays[f"{c}/{i}.png"] = _png(root / c / f"{i}.png", 24, 24, hash((c, i)) % 1000)
    odd = _png(root / "dog" / "odd.png", 20, 30, 5)  # 30 wide, 20 high
    p = cli("data", "inspect", f"folder:{root}", "--out", str(tmp_path / "inspect"))
    assert "9 images 3x24x24" in p.stdout  # not upsampled to 128x128
    err = _one_line(p.stderr)
    assert "1 image(s) are resized to 24x24" in err
    assert "dog/odd.png (30x20)" in err and "--image-size N" in err
    # the pixels: the common-size images untouched, the odd one resized by Pillow's bilinear filter
    with caplog.at_level(logging.WARNING):
        ds = cnnlens.load_dataset(f"folder:{root}")  # from the cache the CLI filled: warns again
    assert any("dog/odd.png (30x20)" in r.getMessage() for r in caplog.records)
    ids = ds.ids
    for rel, a in arrays.items():
        assert np.array_equal(ds.images[ids.index(rel)].permute(1, 2, 0).numpy(), a)
    want = np.asarray(Image.fromarray(odd).resize((24, 24), Image.Resampling.BILINEAR))
    assert np.array_equal(ds.images[ids.index("dog/odd.png")].permute(1, 2, 0).numpy(), want)
    # an explicit size is taken as asked, with no warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ds16 = cnnlens.load_dataset(f"folder:{root}", image_size=16)
    assert ds16.size == (16, 16)
    assert not any("different sizes" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_small_folder_without_val_names_a_val_fraction_that_works(tmp_path):
    root = tmp_path / "small"
    for c in ("cat", "dog"):
        for i in range(4):
            _png(root / c / f"{i}.png", 16, 16, i + (10 if c == "dog" else 0))
    out = tmp_path / "run"
    p = cli("train", "--data", f"folder:{root}", "--epochs", "1", "--out", str(out), check=False)
    assert p.returncode == 2
    err = _one_line(p.stderr)
    assert "has no 'val' split" in err and "Traceback" not in p.stderr
    m = re.search(r"pass --val-fraction ([0-9.]+)", err)
    assert m, err
    share = float(m.group(1))
    # 4 images per class: the seeded split gives round(share * 4) of each to val (0.1 gave round(0.4) = 0)
    assert 0.1 < share < 0.5 and round(share * 4) >= 1
    # the suggested flag really works
    cli("train", "--data", f"folder:{root}", "--epochs", "1", "--val-fraction", m.group(1), "--out", str(out))
    assert (out / "model.json").exists()
