"""Food-11 and class-per-folder trees: real JPEG/PNG files in the real layouts, bad files, the cache."""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cnnlens.data.decode as decode_mod
from cnnlens.data import load_dataset
from cnnlens.data.cache import cache_dir
from cnnlens.data.folder import load_folder
from cnnlens.data.food11 import FOOD11_CLASSES, load_food11


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLENS_CACHE", str(tmp_path / "cache"))


def _img(seed: int, size=(16, 16), mode="RGB") -> np.ndarray:
    """A smooth random image (JPEG keeps it faithfully)."""
    g = torch.Generator().manual_seed(seed)
    c = 3 if mode == "RGB" else 1
    small = torch.rand(1, c, 4, 4, generator=g) * 255
    a = F.interpolate(small, size=(size[1], size[0]), mode="bilinear", align_corners=False)[0]
    a = a.round().clamp(0, 255).to(torch.uint8)
    return a.permute(1, 2, 0).numpy() if c == 3 else a[0].numpy()


def _save(path, arr, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def _pil_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


@pytest.fixture
def food(tmp_path):
    root = tmp_path / "food-11"
    k = 0
    for split, per in (("training", 2), ("validation", 1), ("evaluation", 1)):
        for lab in range(11):
            for i in range(per):
                _save(root / split / f"{lab}_{i}.jpg", _img(k), quality=95)
                k += 1
    return root


def _tree_state(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
                  for p in root.rglob("*") if p.is_file())


def test_food11_layout_labels_ids_pixels(food):
    before = _tree_state(food)
    ds = load_food11(str(food), image_size=16)
    assert ds.classes == FOOD11_CLASSES and len(ds.classes) == 11
    assert ds.images.shape == (44, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 22, "val": 11, "test": 11}
    assert ds.counts() == {"train": [2] * 11, "val": [1] * 11, "test": [1] * 11}
    for i in range(len(ds)):
        split = next(s for s, idx in ds.splits.items() if i in idx.tolist())
        folder = {"train": "training", "val": "validation", "test": "evaluation"}[split]
        f = food / folder / ds.ids[i]
        assert int(ds.ids[i].split("_")[0]) == ds.labels[i]
        assert np.array_equal(ds.images[i].numpy(), _pil_rgb(f))
    # natural order inside a split: 0_0, 0_1, 1_0, ...
    assert [ds.ids[i] for i in ds.splits["train"][:4].tolist()] == ["0_0.jpg", "0_1.jpg", "1_0.jpg", "1_1.jpg"]
    tr = ds.images[ds.splits["train"]].double() / 255
    assert ds.mean == pytest.approx(tuple(tr.mean(dim=(0, 2, 3)).tolist()), abs=1e-9)
    assert _tree_state(food) == before  # loading never touches the user's folder
    assert load_dataset(str(food), image_size=16).name == "food11"  # bare path


def test_food11_unlabeled_testing_and_val_cut_from_training(tmp_path):
    root = tmp_path / "f"
    for lab in range(11):
        for i in range(10):
            _save(root / "training" / f"{lab}_{i}.jpg", _img(lab * 10 + i))
    for i in range(3):
        _save(root / "testing" / f"{i:04d}.jpg", _img(500 + i))
    ds = load_food11(str(root), image_size=16, val_fraction=0.2, seed=1)
    assert ds.counts()["train"] == [8] * 11 and ds.counts()["val"] == [2] * 11
    test = ds.splits["test"]
    assert ds.labels[test].tolist() == [-1, -1, -1]
    assert [ds.ids[i] for i in test.tolist()] == ["0000.jpg", "0001.jpg", "0002.jpg"]
    assert sorted(torch.cat(list(ds.splits.values())).tolist()) == list(range(113))


def test_food11_resizes_to_128_by_default(tmp_path):
    root = tmp_path / "f"
    arr = _img(3, size=(40, 30))
    _save(root / "training" / "4_0.png", arr)
    ds = load_food11(str(root), val_fraction=0)
    assert ds.images.shape == (1, 3, 128, 128)
    ref = F.interpolate(torch.from_numpy(arr).permute(2, 0, 1)[None].float(), size=(128, 128),
                        mode="bilinear", align_corners=False)[0]
    assert (ds.images[0].float() - ref).abs().max() <= 2.0


def _bad_cases():
    def truncated(root):
        p = root / "training" / "3_0.jpg"
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p, "truncated"

    def not_image(root):
        p = root / "training" / "3_0.jpg"
        p.write_text("this is not a jpeg")
        return p, "not an image"

    def no_label(root):
        p = root / "training" / "photo.jpg"
        _save(p, _img(99))
        return p, "no '<label>_' prefix"

    def bad_label(root):
        p = root / "training" / "12_0.jpg"
        _save(p, _img(98))
        return p, "label 12 in the file name is outside 0..10"

    def stray(root):
        p = root / "training" / "notes.txt"
        p.write_text("hi")
        return p, "not an image file (extension '.txt')"

    return [truncated, not_image, no_label, bad_label, stray]


@pytest.mark.parametrize("make_bad", _bad_cases(), ids=lambda f: f.__name__)
def test_food11_bad_files_named_then_skipped(food, make_bad):
    bad, reason = make_bad(food)
    with pytest.raises(ValueError) as e:
        load_food11(str(food), image_size=16)
    assert str(bad) in str(e.value) and reason in str(e.value) and "--skip-bad-rows" in str(e.value)
    ds = load_food11(str(food), image_size=16, skip_bad_rows=True)
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith(f"training/{bad.name}: ") and reason in ds.skipped[0]
    n_train = 22 - (1 if bad.name == "3_0.jpg" else 0)
    assert len(ds.splits["train"]) == n_train and bad.name not in [ds.ids[i] for i in ds.splits["train"]]


def test_cache_second_load_reuses_pixels_and_sees_changes(food, monkeypatch, caplog):
    before = _tree_state(food)
    first = load_food11(str(food), image_size=16)
    files = list(cache_dir().glob("*.safetensors"))
    assert len(files) == 1
    calls = []
    real = decode_mod.decode_files
    monkeypatch.setattr(decode_mod, "decode_files", lambda *a, **k: calls.append(1) or real(*a, **k))
    second = load_food11(str(food), image_size=16)
    assert calls == [] and torch.equal(first.images, second.images) and first.ids == second.ids
    assert torch.equal(first.labels, second.labels)
    # another size is another cache entry's content: decoded again
    load_food11(str(food), image_size=8)
    assert calls == [1]
    # a changed file (new content and mtime) invalidates the cache; the old file is replaced
    _save(food / "training" / "5_0.jpg", _img(1234), quality=95)
    os.utime(food / "training" / "5_0.jpg", ns=(1, 1))
    third = load_food11(str(food), image_size=16)
    assert calls == [1, 1]
    i = third.ids.index("5_0.jpg")
    assert np.array_equal(third.images[i].numpy(), _pil_rgb(food / "training" / "5_0.jpg"))
    assert len(list(cache_dir().glob("food11-*.safetensors"))) == 1
    # a damaged cache file is ignored with a warning, never fatal
    cached = next(cache_dir().glob("food11-*.safetensors"))
    cached.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        fourth = load_food11(str(food), image_size=16)
    assert torch.equal(fourth.images, third.images) and "unreadable cache" in caplog.text
    # the cache went to $CNNLENS_CACHE, nothing new appeared in the user's folder
    assert {p for p, *_ in _tree_state(food)} == {p for p, *_ in before}


def test_cache_off_writes_nothing(food):
    load_food11(str(food), image_size=16, cache=False)
    assert not cache_dir().exists() or not list(cache_dir().iterdir())


# ---- folder:DIR ----------------------------------------------------------------------------

def test_folder_tree_grey_stratified_split(tmp_path):
    root = tmp_path / "shapes"
    for c, name in enumerate(["circle", "square", "triangle"]):
        for i in range(10):
            _save(root / name / f"img{i}.png", _img(c * 10 + i, mode="L"))
    ds = load_folder(str(root), val_fraction=0.2, test_fraction=0.1, seed=0)
    assert ds.classes == ["circle", "square", "triangle"] and ds.channels == 1
    assert ds.counts() == {"train": [7] * 3, "val": [2] * 3, "test": [1] * 3}
    for i in (0, 15, 29):
        with Image.open(root / ds.ids[i]) as im:
            assert np.array_equal(ds.images[i, 0].numpy(), np.asarray(im))
        assert ds.ids[i].split("/")[0] == ds.classes[ds.labels[i]]
    assert load_dataset(str(root)).name == "folder"


def test_folder_split_subfolders_unlabeled_test_and_mixed_modes(tmp_path):
    root = tmp_path / "d"
    _save(root / "train" / "cat" / "a.png", _img(1, mode="L"))
    _save(root / "train" / "dog" / "b.png", _img(2))
    _save(root / "val" / "cat" / "c.png", _img(3, mode="L"))
    _save(root / "val" / "dog" / "d.png", _img(4))
    _save(root / "test" / "x.png", _img(5))
    ds = load_folder(str(root))
    assert ds.channels == 3 and ds.classes == ["cat", "dog"]
    assert {k: v.tolist() for k, v in ds.splits.items()} == {"train": [0, 1], "val": [2, 3], "test": [4]}
    assert ds.labels.tolist() == [0, 1, 0, 1, -1] and ds.ids[4] == "test/x.png"
    grey = np.asarray(Image.open(root / "train" / "cat" / "a.png"))
    assert all(np.array_equal(ds.images[0, k].numpy(), grey) for k in range(3))


def test_folder_empty_class_stray_file_and_mixed_sizes(tmp_path, caplog):
    root = tmp_path / "d"
    for i in range(3):
        _save(root / "a" / f"{i}.png", _img(i, size=(20, 10)))
        _save(root / "b" / f"{i}.png", _img(10 + i, size=(12, 12)))
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty.*is an empty class folder; add its images or remove"):
        load_folder(str(root))
    ds = load_folder(str(root), skip_bad_rows=True, test_fraction=0, val_fraction=0)
    assert ds.classes == ["a", "b"] and ds.skipped == ["empty: is an empty class folder; add its images or remove the folder"]
    assert ds.images.shape == (6, 3, 128, 128)  # mixed sizes -> 128 by default
    (root / "empty").rmdir()
    (root / "readme.md").write_text("x")
    with pytest.raises(ValueError, match=r"readme.md: is outside the class folders"):
        load_folder(str(root))


@pytest.mark.parametrize("kind,takes", [
    ("folder", "a folder of class folders"),
    ("food11", "the folder holding training/ validation/ evaluation/"),
])
def test_spec_without_a_folder_says_what_it_takes(tmp_path, kind, takes):
    from cnnlens.errors import CnnlensError

    with pytest.raises(CnnlensError, match=rf"^{kind} needs a path: use SPEC '{kind}:DIR'"):
        load_dataset(kind)
    with pytest.raises(FileNotFoundError, match=f"is not a folder; {kind}:DIR takes {takes}$"):
        load_dataset(f"{kind}:{tmp_path / 'absent'}")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(CnnlensError, match=f"a.txt is not a folder; {kind}:DIR takes {takes}$"):
        load_dataset(f"{kind}:{tmp_path / 'a.txt'}")
