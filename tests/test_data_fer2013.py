"""FER2013 loader: both CSV forms, written here in their exact real formats, and every bad input."""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pytest
import torch

from cnnlens.data import load_dataset
from cnnlens.data.fer2013 import FER_CLASSES, load_fer2013, read_pixel_csv

USAGES = ["Training", "PublicTest", "PrivateTest"]


def _pixels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 2304)).astype(np.uint8)


def write_kaggle(path, px, labels, usages, *, quote=False, eol="\n"):
    rows = ["emotion,pixels,Usage"]
    for p, lab, u in zip(px, labels, usages):
        field = " ".join(map(str, p.tolist()))
        rows.append(f'{lab},"{field}",{u}' if quote else f"{lab},{field},{u}")
    path.write_bytes((eol.join(rows) + eol).encode())
    return path


def write_course(path, px, first, header):
    rows = [header] + [f"{a},{' '.join(map(str, p.tolist()))}" for a, p in zip(first, px)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def kaggle(tmp_path):
    rng = np.random.default_rng(0)
    n = 30
    px = _pixels(rng, n)
    labels = np.arange(n) % 7
    usages = [USAGES[i % 3] for i in range(n)]
    return write_kaggle(tmp_path / "fer2013.csv", px, labels, usages), px, labels, usages


def test_kaggle_form_values_labels_splits_ids(kaggle):
    path, px, labels, usages = kaggle
    ds = load_fer2013(str(path))
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (30, 1, 48, 48)
    assert np.array_equal(ds.images.reshape(30, -1).numpy(), px)
    assert ds.labels.tolist() == labels.tolist()
    assert ds.classes == ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    want = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    for split, usage in want.items():
        assert ds.splits[split].tolist() == [i for i, u in enumerate(usages) if u == usage]
    assert ds.ids == [str(i + 2) for i in range(30)]  # file line numbers (header is line 1)
    train = px[[i for i, u in enumerate(usages) if u == "Training"]].astype(np.float64) / 255
    assert ds.mean[0] == pytest.approx(train.mean(), abs=1e-9)
    assert ds.std[0] == pytest.approx(train.std(), abs=1e-9)
    assert ds.skipped == []


def test_quoted_field_crlf_and_slow_path_spellings_parse_the_same(tmp_path, kaggle):
    _, px, labels, usages = kaggle
    a = load_fer2013(str(write_kaggle(tmp_path / "q.csv", px, labels, usages, quote=True, eol="\r\n")))
    assert np.array_equal(a.images.reshape(30, -1).numpy(), px)
    # leading zeros and double spaces are valid integers: only the slow path accepts them
    text = (tmp_path / "q.csv").read_text().replace(f'"{px[3, 0]} ', f'"000{px[3, 0]}  ', 1)
    (tmp_path / "z.csv").write_text(text)
    b = load_fer2013(str(tmp_path / "z.csv"))
    assert np.array_equal(b.images.reshape(30, -1).numpy(), px)


@pytest.mark.slow
def test_many_chunks_with_a_bad_row_skipped(tmp_path):
    """More rows than one parse chunk, in two threads: every good row exact, the bad one listed."""
    rng = np.random.default_rng(1)
    n = 2100
    px = _pixels(rng, n)
    labels = rng.integers(0, 7, n)
    path = write_kaggle(tmp_path / "big.csv", px, labels, ["Training"] * n)
    lines = path.read_text().split("\n")
    lines[1500] = lines[1500].replace(",Training", " 7,Training")  # 2305 values on file line 1501
    path.write_text("\n".join(lines))
    ds = load_fer2013(str(path), skip_bad_rows=True)
    keep = [i for i in range(n) if i != 1499]
    assert np.array_equal(ds.images.reshape(len(keep), -1).numpy(), px[keep])
    assert ds.labels.tolist() == labels[keep].tolist()
    assert ds.skipped == ["big.csv line 1501: pixels has 2305 values; FER2013 needs 2304 (48x48)"]


def _bad_row(kaggle, tmp_path, transform):
    path, px, labels, usages = kaggle
    lines = path.read_text().split("\n")
    lines[4] = transform(lines[4])  # file line 5
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines))
    return bad


@pytest.mark.parametrize("transform, reason", [
    (lambda s: s.rsplit(" ", 1)[0] + "," + s.rsplit(",", 1)[1], "pixels has 2303 values"),
    (lambda s: re.sub(r",(\d+) ", r",\1.5 ", s, count=1), "pixel 1 is '"),
    (lambda s: re.sub(r" (\d+) ", " -3 ", s, count=1), "pixel 2 is '-3', not an integer"),
    (lambda s: re.sub(r" (\d+) ", " 256 ", s, count=1), "pixel 2 is 256, outside 0..255"),
    (lambda s: "7" + s[1:], "emotion is '7'; it must be a class index 0..6"),
    (lambda s: "x" + s[1:], "emotion is 'x'"),
    (lambda s: s.rsplit(",", 1)[0] + ",Train", "Usage is 'Train'"),
    (lambda s: s.rsplit(",", 1)[0], "has 2 fields; the header has 3"),
])
def test_bad_row_names_file_line_and_fix_then_skips(kaggle, tmp_path, transform, reason):
    bad = _bad_row(kaggle, tmp_path, transform)
    before = hashlib.sha256(bad.read_bytes()).hexdigest(), os.stat(bad).st_mtime_ns
    with pytest.raises(ValueError) as e:
        load_fer2013(str(bad))
    msg = str(e.value)
    assert str(bad) in msg and "line 5:" in msg and reason in msg and "--skip-bad-rows" in msg
    ds = load_fer2013(str(bad), skip_bad_rows=True)
    _, px, labels, _ = kaggle
    keep = [i for i in range(30) if i != 3]
    assert len(ds) == 29 and np.array_equal(ds.images.reshape(29, -1).numpy(), px[keep])
    assert ds.labels.tolist() == labels[keep].tolist()
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith("bad.csv line 5: ") and reason in ds.skipped[0]
    assert "5" not in ds.ids and ds.ids[3] == "6"
    # loading never modified the file
    assert (hashlib.sha256(bad.read_bytes()).hexdigest(), os.stat(bad).st_mtime_ns) == before


def test_several_bad_rows_are_all_counted(kaggle, tmp_path):
    path, *_ = kaggle
    lines = path.read_text().split("\n")
    for i in (2, 7, 9):
        lines[i] = "9" + lines[i][1:]
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"line 3: .*3 bad rows in all, on lines 3, 8, 10"):
        load_fer2013(str(path))
    assert len(load_fer2013(str(path), skip_bad_rows=True)) == 27


@pytest.mark.parametrize("content, match", [
    (b"", "the file is empty"),
    (b"\n  \n", "the file is empty"),
    (b"emotion,pixels,Usage\n", "has a header .* but no data rows"),
    (b"emotion,Usage\n0,Training\n", r"line 1 .* has no 'pixels' or 'feature' column"),
    (b"0,1 2 3,Training\n", "has no 'pixels' or 'feature' column.*add one"),
])
def test_structural_errors(tmp_path, content, match):
    p = tmp_path / "f.csv"
    p.write_bytes(content)
    with pytest.raises(ValueError, match=match) as e:
        load_fer2013(str(p))
    assert str(p) in str(e.value)


def test_missing_usage_column_is_named(tmp_path):
    p = tmp_path / "f.csv"
    px = _pixels(np.random.default_rng(0), 2)
    p.write_text("emotion,pixels\n" + "".join(f"0,{' '.join(map(str, r))}\n" for r in px.tolist()))
    with pytest.raises(ValueError, match=r"line 1: missing column 'Usage'.*emotion,pixels,Usage") as e:
        load_fer2013(str(p))
    assert str(p) in str(e.value)


@pytest.fixture
def course(tmp_path):
    rng = np.random.default_rng(2)
    n, m = 70, 9
    tr_px, te_px = _pixels(rng, n), _pixels(rng, m)
    labels = np.repeat(np.arange(7), 10)
    rng.shuffle(labels)
    ids = [str(100 + 3 * i) for i in range(m)][::-1]
    write_course(tmp_path / "train.csv", tr_px, labels, "label,feature")
    write_course(tmp_path / "test.csv", te_px, ids, "id,feature")
    return tmp_path, tr_px, te_px, labels, ids


@pytest.mark.parametrize("which", ["train.csv", "test.csv", "."])
def test_course_form_train_val_and_unlabeled_test(course, which):
    folder, tr_px, te_px, labels, ids = course
    ds = load_dataset(f"fer2013:{folder / which}", val_fraction=0.2, seed=3)
    assert len(ds) == 79
    assert np.array_equal(ds.images[:70].reshape(70, -1).numpy(), tr_px)
    assert np.array_equal(ds.images[70:].reshape(9, -1).numpy(), te_px)
    assert ds.labels[:70].tolist() == labels.tolist() and ds.labels[70:].tolist() == [-1] * 9
    assert ds.splits["test"].tolist() == list(range(70, 79))
    assert ds.ids[70:] == ids
    tr, va = ds.splits["train"], ds.splits["val"]
    assert sorted(tr.tolist() + va.tolist()) == list(range(70))
    assert ds.counts()["val"] == [2] * 7 and ds.counts()["train"] == [8] * 7  # stratified 20%
    again = load_dataset(f"fer2013:{folder / which}", val_fraction=0.2, seed=3)
    other = load_dataset(f"fer2013:{folder / which}", val_fraction=0.2, seed=4)
    assert torch.equal(again.splits["val"], va) and not torch.equal(other.splits["val"], va)
    m = tr_px[tr.numpy()].astype(np.float64) / 255
    assert ds.mean[0] == pytest.approx(m.mean(), abs=1e-9)


def test_course_test_file_alone_and_duplicate_ids(tmp_path):
    px = _pixels(np.random.default_rng(5), 3)
    p = write_course(tmp_path / "test.csv", px, ["a", "b", "a"], "id,feature")
    with pytest.raises(ValueError, match=r"test.csv line 4: id 'a' repeats the id on line 2"):
        load_fer2013(str(p))
    ds = load_fer2013(str(p), skip_bad_rows=True)
    assert ds.ids == ["a", "b"] and ds.labels.tolist() == [-1, -1] and list(ds.splits) == ["test"]


def test_bare_path_and_folder_are_detected(kaggle, course):
    path = kaggle[0]
    ds = load_dataset(str(path))
    assert ds.name == "fer2013" and len(ds) == 30
    folder = course[0]
    assert load_dataset(str(folder)).name == "fer2013"


def test_read_pixel_csv_reports_rows_not_raises(tmp_path):
    px = _pixels(np.random.default_rng(6), 3)
    p = tmp_path / "t.csv"
    p.write_text("label,feature\n" + "\n".join(f"1,{' '.join(map(str, r))}" for r in px.tolist())
                 + "\n1,1 2 3\n")
    t = read_pixel_csv(p)
    assert t.pixels.shape == (3, 2304) and t.lines.tolist() == [2, 3, 4]
    assert t.bad == [(5, "pixels has 3 values; FER2013 needs 2304 (48x48)")]
    assert FER_CLASSES[3] == "Happy"
