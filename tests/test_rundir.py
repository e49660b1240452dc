"""Run-directory records: round trips against the stage's own output, missing and older files,
hand-computed region shares, captions from the records, and the demo comparison script."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlens.errors import CnnlensError
from cnnlens.evaluate import EvalResult
from cnnlens.explain import Explanation
from cnnlens.rundir import (AttributionRegions, Confusion, ConfusedMaps, EvalMetrics, ExplainMaps, LimeMaps,
                            MissingRecord, Predictions, StagesRecord, Timings, TrustScores, save_eval)

ROOT = Path(__file__).resolve().parents[1]


def _result() -> EvalResult:
    labels = torch.tensor([0, 1, 1, 2])
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    preds = probs.argmax(1)
    k = 3
    conf = torch.bincount(labels * k + preds, minlength=k * k).view(k, k)
    return EvalResult("test", torch.tensor([5, 6, 7, 8]), labels, preds, probs, conf, ["a", "b<c>", "d"])


def test_eval_records_hold_what_the_stage_computed(tmp_path):
    res = _result()
    save_eval(res, tmp_path, ids=[f"img{i}" for i in range(10)])
    on_disk = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(res.to_dict()))  # the same layout as before records
    m = EvalMetrics.load(tmp_path)
    assert m.accuracy == 0.75 and m.confusion == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    with open(tmp_path / "eval" / "predictions.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["index", "id", "label", "pred", "p_a", "p_b<c>", "p_d"]
    assert rows[3] == ["7", "img7", "b<c>", "a", "0.500000", "0.250000", "0.250000"]
    p = Predictions.load(tmp_path)
    assert p.ids == ["img5", "img6", "img7", "img8"] and p.probs[1] == [0.1, 0.8, 0.1]
    assert Confusion.load(tmp_path).counts == res.confusion.tolist()
    save_eval(res, tmp_path, tta="flip")  # test-time augmentation: its own folder
    assert EvalMetrics.load(tmp_path, folder="eval/tta-flip").n == 4


def test_a_missing_file_names_itself_and_the_command(tmp_path):
    with pytest.raises(MissingRecord, match=r"eval/metrics\.json is missing; `cnnlens evaluate .*` makes it"):
        EvalMetrics.load(tmp_path)
    with pytest.raises(CnnlensError, match=r"trust/scores\.json is missing; `cnnlens trust"):
        TrustScores.load(tmp_path)
    assert EvalMetrics.load_or_none(tmp_path) is None


def test_older_and_newer_files_load(tmp_path):
    d = _result().to_dict()
    del d["calibration"]  # an older writer: optional key absent -> default
    d["added_by_newer_cnnlens"] = {"x": 1}  # a newer writer: kept and written back
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(d))
    m = EvalMetrics.load(tmp_path)
    assert m.calibration is None and m.extra == {"added_by_newer_cnnlens": {"x": 1}}
    m.save(tmp_path)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["added_by_newer_cnnlens"] == {"x": 1}
    del d["accuracy"]  # a required key absent: named, with the command that rebuilds the file
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(d))
    with pytest.raises(CnnlensError, match=r"no 'accuracy' entry.*cnnlens evaluate"):
        EvalMetrics.load(tmp_path)


def _explanations(maps: torch.Tensor, labels: list[int]) -> ExplainMaps:
    n = maps.shape[0]
    probs = torch.full((n, 2), 0.5)
    e = Explanation(maps=maps, method="gradcam", targets=torch.tensor(labels), probs=probs, layer="cnn.4",
                    signed=False)
    return ExplainMaps.from_explanations({"gradcam": e}, list(range(10, 10 + n)), labels, ["a", "b"])


def test_region_shares_are_computed_by_the_stage_and_averaged_per_class(tmp_path):
    maps = torch.zeros(3, 12, 12)
    maps[0, 0, 0] = 2.0  # class a: all mass top-left
    maps[1, 11, 11] = 1.0  # class a: all mass bottom-right
    maps[2, 5, 6] = -4.0  # class b: |m| at the centre
    rec = _explanations(maps, [0, 0, 1])
    rec.save(tmp_path)
    reg = AttributionRegions.from_maps(ExplainMaps.load(tmp_path))
    reg.save(tmp_path)
    assert reg.primary == "gradcam" and reg.centre_box_area == 36 / 144
    a, b = reg.per_class
    assert (a["class"], a["n"], a["top"], a["bottom"], a["left"], a["right"], a["centre_box"]) == \
        ("a", 2, 0.5, 0.5, 0.5, 0.5, 0.0)
    assert (b["class"], b["n"], b["middle"], b["centre_col"], b["centre_box"]) == ("b", 1, 1.0, 1.0, 1.0)
    with open(tmp_path / "explain" / "attribution_regions.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][:4] == ["gradcam", "10", "a", "1.0000"] and len(rows) == 4


def test_confused_maps_store_the_predicted_class_share(tmp_path):
    true, pred = torch.zeros(2, 4, 4), torch.zeros(2, 4, 4)
    true[0, 0, 0], pred[0, 1, 1] = 1.0, -3.0  # share 3 / (1 + 3)
    pred[1, 2, 2] = 2.0  # share 1
    probs = torch.tensor([[0.3, 0.7], [0.4, 0.6]])
    ea = Explanation(true, "saliency", torch.tensor([0, 0]), probs, None, False)
    eb = Explanation(pred, "saliency", torch.tensor([1, 1]), probs, None, False)
    rec = ConfusedMaps(pairs=[], per_pair=2, indices=[3, 4], labels=[0, 0], predicted=[1, 1],
                       p_true=[0.3, 0.4], p_pred=[0.7, 0.6], classes=["a", "b"], methods={})
    rec.add("saliency", ea, eb)
    rec.save(tmp_path)
    back = ConfusedMaps.load(tmp_path)
    assert back.pred_share == {"saliency": [0.75, 1.0]}
    np.testing.assert_array_equal(back.maps_pred["saliency"], pred.numpy())
    assert back.probabilities().tolist() == [[pytest.approx(0.3), pytest.approx(0.7)],
                                             [pytest.approx(0.4), pytest.approx(0.6)]]


def test_lime_caption_takes_its_settings_from_the_record():
    from cnnlens.report.html import _lime_caption

    rec = LimeMaps(indices=[1], labels=[0], targets=[0], probs=[0.9], classes=["a"], n_samples=300, seed=7,
                   weights=[[0.1]], n_segments=[40], segmentation="quickshift",
                   settings={"kernel_width": 0.5, "alpha": 2.0, "baseline": "blur"})
    text = _lime_caption(rec)
    assert "40 quickshift superpixels" in text and "α = 2, kernel width 0.5" in text
    assert "300 random" in text and "seed 7" in text and "off = a blurred copy" in text
    assert "0.25" not in text and "slic" not in text


def _demo_like(root: Path, shift: float = 0.0) -> Path:
    (root / "eval").mkdir(parents=True)
    (root / "trust").mkdir()
    (root / "explain").mkdir()
    (root / "report").mkdir()
    (root / "eval" / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "n": 4}))
    (root / "trust" / "scores.json").write_text(json.dumps({"seconds": 3.0 + shift, "x": [1.0, 2.0]}))
    np.save(root / "explain" / "gradcam.npy", np.full((1, 2, 2), 1.0 + shift, dtype=np.float32))
    (root / "report" / "findings.json").write_text(json.dumps(
        {"timings": [{"text": f"took {1 + shift:.1f} s", "source": "timings.json"}]}))
    return root


def test_compare_demo_script_finds_a_difference_and_ignores_time(tmp_path):
    script = ROOT / "benchmarks" / "compare_demo.py"
    a, b, c = (_demo_like(tmp_path / "a"), _demo_like(tmp_path / "b", 1e-8), _demo_like(tmp_path / "c", 1e-3))
    same = subprocess.run([sys.executable, script, str(a), str(b)], capture_output=True, text=True)
    assert same.returncode == 0 and same.stdout.strip().endswith("SAME"), same.stdout
    diff = subprocess.run([sys.executable, script, str(a), str(c)], capture_output=True, text=True)
    assert diff.returncode == 1 and "explain/gradcam.npy: max |difference| 0.001" in diff.stdout, diff.stdout
    assert "trust/scores.json: equal (seconds left out)" in diff.stdout  # wall time is not behaviour


@pytest.mark.slow
def test_cnnlens_run_is_the_pipeline_as_a_python_call(tmp_path):
    import cnnlens

    events: list[str] = []
    run = cnnlens.run("digits", "compact", out=tmp_path / "r", epochs=1, seed=0, sizes="fast",
                      skip=("confused", "lime", "featureviz", "trust"), notify=lambda e, v: events.append(e))
    assert events == ["trained", "evaluated", "report"]
    assert isinstance(run, cnnlens.Run) and (run.path / "report" / "index.html").is_file()
    # the evaluation on disk is the returned model's, recomputed here
    res = cnnlens.evaluate(run.model, run.dataset, "test", mean=run.mean, std=run.std)
    assert EvalMetrics.load(run.path).accuracy == res.accuracy
    assert StagesRecord.load(run.path).stages == ["model summary", "data", "explain", "explore"]
    assert list(Timings.load(run.path).stages)[:2] == ["train", "evaluate"]
    assert "report" in Timings.load(run.path).stages
    with pytest.raises(CnnlensError, match="bogus.*featureviz"):  # before any training
        cnnlens.run("digits", "compact", out=tmp_path / "x", skip=("bogus",))
    assert not (tmp_path / "x").exists()
