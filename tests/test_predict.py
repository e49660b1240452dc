"""cnnlens predict: submission files on tiny course-form (FER2013 ``id,feature``) and Food-11
(``testing/`` JPEGs) test sets built here in their real formats; ensembles, TTA, bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cnnlens
from cnnlens.config import RunConfig
from cnnlens.data.fer2013 import FER_CLASSES
from cnnlens.data.food11 import FOOD11_CLASSES
from cnnlens.predict import check_compatible, eval_name, predict, skipped_path, write_predictions

from conftest import cli

pytestmark = pytest.mark.slow  # every test here takes runs trained by the module's fixtures

TEST_IDS = ["17", "3", "250", "42", "8", "100"]  # deliberately not sorted: the file's order must be kept
FOOD_TEST = ["0001.jpg", "0002.jpg", "0010.jpg", "0003.jpg", "0020.jpg"]


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLENS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _faces(seed: int, n: int) -> np.ndarray:
    """``uint8 [n, 2304]`` smooth random 48x48 faces (a bright blob whose place depends on the image)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 1, 6, 6, generator=g) * 255
    x = F.interpolate(small, size=(48, 48), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).reshape(n, -1).numpy()


def _write_pixel_csv(path, first_col, header, px):
    rows = [header] + [f"{a},{' '.join(map(str, p.tolist()))}" for a, p in zip(first_col, px)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Course form: train.csv (label,feature; 4 faces per class) and test.csv (id,feature)."""
    d = tmp_path_factory.mktemp("course")
    labels = [k for k in range(7) for _ in range(4)]
    _write_pixel_csv(d / "train.csv", labels, "label,feature", _faces(0, len(labels)))
    test_px = _faces(1, len(TEST_IDS))
    _write_pixel_csv(d / "test.csv", TEST_IDS, "id,feature", test_px)
    return d, test_px


def _train(spec: str, out, seed: int, **data):
    cfg = RunConfig().replace(data={"val_fraction": 0.25, **data})
    return cnnlens.train(data=spec, model="compact", epochs=1, seed=seed, batch_size=16, out=out, config=cfg)


@pytest.fixture(scope="module")
def fer_runs(course, tmp_path_factory):
    d, _ = course
    base = tmp_path_factory.mktemp("fer-runs")
    return [_train(f"fer2013:{d / 'train.csv'}", base / f"s{s}", seed=s) for s in (0, 1)]


def _jpeg(path, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(3, 4, 4, generator=g) * 255
    a = F.interpolate(small[None], size=(16, 16), mode="bilinear", align_corners=False)[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()).save(path, quality=95)


@pytest.fixture(scope="module")
def food(tmp_path_factory):
    """Food-11 form: training/ and validation/ of <label>_<i>.jpg, unlabeled testing/ of <n>.jpg."""
    root = tmp_path_factory.mktemp("food") / "food-11"
    k = 0
    for split, per in (("training", 2), ("validation", 1)):
        for lab in range(11):
            for i in range(per):
                _jpeg(root / split / f"{lab}_{i}.jpg", k)
                k += 1
    for j, name in enumerate(FOOD_TEST):
        _jpeg(root / "testing" / name, 1000 + j)
    return root


@pytest.fixture(scope="module")
def food_run(food, tmp_path_factory):
    return _train(f"food11:{food}", tmp_path_factory.mktemp("food-run") / "r", seed=0, image_size=16)


def _read(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _ref_probs(run, images_uint8: torch.Tensor) -> torch.Tensor:
    """The plain forward pass: softmax(model((x/255 - mean) / std)), no cnnlens code involved."""
    x = images_uint8.float() / 255
    m = torch.tensor(run.mean).view(1, -1, 1, 1)
    s = torch.tensor(run.std).view(1, -1, 1, 1)
    with torch.no_grad():
        return F.softmax(run.model((x - m) / s), 1)


def _faces_tensor(px: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(px).view(-1, 1, 48, 48)


def test_course_submission_keeps_ids_order_and_rows(course, fer_runs, tmp_path):
    d, test_px = course
    run = fer_runs[0]
    run.model.train()  # the caller's mode must come back
    out = tmp_path / "sub" / "predictions.csv"
    pred = predict(run, f"fer2013:{d / 'test.csv'}", out=out, probs=True, batch_size=4)
    assert run.model.training and all(m.training for m in run.model.modules())
    assert all(p.requires_grad for p in run.model.parameters())
    run.model.eval()
    header, rows = _read(out)
    assert header == ["id", "label", *FER_CLASSES]
    assert [r[0] for r in rows] == TEST_IDS and len(rows) == len(TEST_IDS)
    probs = np.array([[float(v) for v in r[2:]] for r in rows])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert [int(r[1]) for r in rows] == probs.argmax(1).tolist()  # label = class index (course form)
    ref = _ref_probs(run, _faces_tensor(test_px))
    assert np.allclose(probs, ref.numpy(), atol=1e-5)
    assert torch.allclose(pred.probs, ref, atol=1e-6)
    assert pred.accuracy is None and not (run.path / "eval").exists()  # unlabeled: no accuracy
    # the in-memory result writes the same file; names instead of indices on request
    write_predictions(pred, tmp_path / "again.csv", probs=True)
    assert (tmp_path / "again.csv").read_text() == out.read_text()
    write_predictions(pred, tmp_path / "names.csv", labels="name")
    _, named = _read(tmp_path / "names.csv")
    assert [r[1] for r in named] == [FER_CLASSES[int(r[1])] for r in rows]
    assert not skipped_path(out).exists()  # nothing was asked to be skipped


def test_food11_testing_submission(food, food_run, tmp_path):
    out = tmp_path / "food.csv"
    pred = predict(food_run, f"food11:{food}", out=out, probs=True, batch_size=2)
    header, rows = _read(out)
    assert header == ["file", "label", *FOOD11_CLASSES]
    # the folder's own order: file names in natural order, one row per image
    assert [r[0] for r in rows] == sorted(FOOD_TEST, key=lambda s: int(s.split(".")[0])) == pred.ids
    images = []
    for name in pred.ids:
        with Image.open(food / "testing" / name) as im:
            images.append(torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
    ref = _ref_probs(food_run, torch.stack(images))
    probs = np.array([[float(v) for v in r[2:]] for r in rows])
    assert np.allclose(probs, ref.numpy(), atol=1e-5) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert [int(r[1]) for r in rows] == ref.argmax(1).tolist()
    # a competition's own column names
    write_predictions(pred, tmp_path / "kaggle.csv", columns=("Id", "Category"))
    assert _read(tmp_path / "kaggle.csv") == (["Id", "Category"], [r[:2] for r in rows])
    with pytest.raises(ValueError, match="columns must be two names"):
        predict(food_run, f"food11:{food}", columns=("Id",))


def test_ensemble_is_the_mean_of_probabilities_and_reports_accuracy(course, fer_runs, tmp_path):
    d, test_px = course
    a, b = fer_runs
    out = tmp_path / "ens.csv"
    pred = predict([a.path, b.path], f"fer2013:{d}", out=out, probs=True, batch_size=4)
    x = _faces_tensor(test_px)
    want = (_ref_probs(a, x) + _ref_probs(b, x)) / 2
    assert torch.allclose(pred.probs, want, atol=1e-6)
    _, rows = _read(out)
    assert [r[0] for r in rows] == TEST_IDS
    assert [int(r[1]) for r in rows] == want.argmax(1).tolist()
    # on the labeled val split: the ensemble's and each member's accuracy, written into each run
    val = predict([a, b], f"fer2013:{d}", split="val", batch_size=4)
    ds = cnnlens.load_dataset(f"fer2013:{d}", val_fraction=0.25)
    xv, yv = ds.split("val")
    pa, pb = _ref_probs(a, xv), _ref_probs(b, xv)
    acc = lambda p: float((p.argmax(1) == yv).float().mean())  # noqa: E731
    assert val.labels.tolist() == yv.tolist()
    assert val.accuracy == pytest.approx(acc((pa + pb) / 2))
    assert val.member_accuracy == pytest.approx([acc(pa), acc(pb)])
    for r in (a, b):
        j = json.loads((r.path / "eval" / eval_name(val)).read_text())
        assert "ensemble" in eval_name(val) and j["ensemble"] is True
        assert j["accuracy"] == pytest.approx(acc((pa + pb) / 2)) and j["n"] == len(yv)
        assert [m["accuracy"] for m in j["runs"]] == pytest.approx([acc(pa), acc(pb)])
    single = predict(a, f"fer2013:{d}", split="val", tta="flip")
    j = json.loads((a.path / "eval" / "predict-val-flip.json").read_text())
    assert j["accuracy"] == pytest.approx(single.accuracy) and j["ensemble"] is False


def test_tta_views_are_averaged_batch_by_batch(course, fer_runs):
    d, test_px = course
    run = fer_runs[0]
    x = _faces_tensor(test_px)
    flip = predict(run, f"fer2013:{d}", tta="flip", batch_size=4)
    want = (_ref_probs(run, x) + _ref_probs(run, torch.flip(x, dims=[3]))) / 2
    assert torch.allclose(flip.probs, want, atol=1e-6)
    # ten-crop by hand: corners and centre of a 42x42 crop (0.875 of 48), resized back, and mirrors
    views = []
    for t, left in ((0, 0), (0, 6), (6, 0), (6, 6), (3, 3)):
        c = F.interpolate(x[:, :, t:t + 42, left:left + 42].float(), size=(48, 48), mode="bilinear",
                          align_corners=False).round().clamp(0, 255).to(torch.uint8)
        views += [c, torch.flip(c, dims=[3])]
    want10 = sum(_ref_probs(run, v) for v in views) / 10
    ten = predict(run, f"fer2013:{d}", tta="tencrop", batch_size=4)
    assert torch.allclose(ten.probs, want10, atol=1e-6)
    assert np.allclose(ten.probs.sum(1).numpy(), 1, atol=1e-6)


def test_mismatched_runs_are_refused(fer_runs, food_run, course):
    a, b = fer_runs
    with pytest.raises(ValueError, match=r"share their classes.*7 classes in .*s0 and 11 in .*only in the "
                                         r"first: Angry"):
        predict([a, food_run], f"fer2013:{course[0]}")
    shuffled = dataclasses.replace(b, classes=list(reversed(b.classes)))
    with pytest.raises(ValueError, match="same classes in a different order"):
        check_compatible([a, shuffled])
    other = dataclasses.replace(b, meta={**b.meta, "input_shape": [1, 32, 32]})
    with pytest.raises(ValueError, match=r"input shape; .*s0 takes 1x48x48 images but .*s1 takes 1x32x32"):
        check_compatible([a, other])
    with pytest.raises(ValueError, match=r"are 1x48x48 but .* takes 3x16x16"):
        predict(food_run, cnnlens.load_dataset(f"fer2013:{course[0]}"))


def test_bad_rows_are_named_or_listed_never_dropped(course, fer_runs, tmp_path):
    d, test_px = course
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.csv").write_text((d / "train.csv").read_text())
    lines = (d / "test.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(" ", 5)[0]            # id 250: 5 pixels short (file line 4)
    lines[5] = "," + lines[5].split(",", 1)[1]       # id 8: missing (file line 6)
    (bad / "test.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "p.csv"
    with pytest.raises(ValueError, match=r"test.csv line 4: .*2299 values.*--skip-bad-rows"):
        predict(fer_runs[0], f"fer2013:{bad / 'test.csv'}", out=out)
    assert not out.exists()
    pred = predict(fer_runs[0], f"fer2013:{bad / 'test.csv'}", out=out, skip_bad_rows=True)
    _, rows = _read(out)
    kept = [i for i in TEST_IDS if i not in ("250", "8")]
    assert [r[0] for r in rows] == kept == pred.ids
    header, skipped = _read(skipped_path(out))
    assert header == ["where", "line", "id", "reason"]
    assert [(s[0], s[1], s[2]) for s in skipped] == [("test.csv", "4", "250"), ("test.csv", "6", "")]
    assert "2299" in skipped[0][3] and "empty" in skipped[1][3]
    assert len(rows) + len(skipped) == len(TEST_IDS)


def test_food11_bad_test_image_named_or_listed(food, food_run, tmp_path):
    root = tmp_path / "food-bad"
    for p in food.rglob("*.jpg"):
        q = root / p.relative_to(food)
        q.parent.mkdir(parents=True, exist_ok=True)
        q.write_bytes(p.read_bytes())
    data = (root / "testing" / "0003.jpg").read_bytes()
    (root / "testing" / "0003.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (root / "training" / "4_1.jpg").write_text("not a jpeg")  # a training file: not a test input
    out = tmp_path / "f.csv"
    with pytest.raises(ValueError, match=r"0003.jpg|4_1.jpg"):
        predict(food_run, f"food11:{root}", out=out)
    assert not out.exists()
    pred = predict(food_run, f"food11:{root}", out=out, skip_bad_rows=True)
    _, rows = _read(out)
    assert [r[0] for r in rows] == pred.ids == ["0001.jpg", "0002.jpg", "0010.jpg", "0020.jpg"]
    _, skipped = _read(skipped_path(out))
    assert [(s[0], s[2]) for s in skipped] == [(os.path.join("testing", "0003.jpg"), "0003.jpg")]


def test_cli_predict_ensemble_on_val_and_skip_list(course, fer_runs, tmp_path):
    d, _ = course
    a, b = fer_runs
    out = tmp_path / "val.csv"
    p = cli("predict", str(a.path), str(b.path), "--data", f"fer2013:{d}", "--split", "val",
            "--out", str(out), "--tta", "flip", "--label", "name")
    lib = predict([a, b], f"fer2013:{d}", split="val", tta="flip", write_eval=False)
    assert f"{100 * lib.accuracy:.2f}%" in p.stdout and "ensemble" in p.stdout
    _, rows = _read(out)
    assert [r[0] for r in rows] == lib.ids and [r[1] for r in rows] == [FER_CLASSES[k] for k in lib.preds]
    j = json.loads((a.path / "eval" / eval_name(lib)).read_text())
    assert j["tta"] == "flip" and j["accuracy"] == pytest.approx(lib.accuracy)
    # the CLI refuses a bad test file with the line, and writes nothing
    bad = tmp_path / "bad"
    bad.mkdir()
    lines = (d / "test.csv").read_text().splitlines()
    lines[2] = lines[2] + " 7"  # id 3: one pixel too many (line 3)
    (bad / "test.csv").write_text("\n".join(lines) + "\n")
    p = cli("predict", str(a.path), "--data", f"fer2013:{bad / 'test.csv'}", "--out", str(tmp_path / "t.csv"),
            check=False)
    assert p.returncode == 2 and "test.csv line 3" in p.stderr and not (tmp_path / "t.csv").exists()
    p = cli("predict", str(a.path), "--data", f"fer2013:{bad / 'test.csv'}", "--out", str(tmp_path / "t.csv"),
            "--skip-bad-rows")
    assert "skipped 1 input" in p.stdout and len(_read(tmp_path / "t.csv")[1]) == len(TEST_IDS) - 1
    assert _read(tmp_path / "t.skipped.csv")[1][0][:3] == ["test.csv", "3", "3"]
