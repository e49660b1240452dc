"""The explorer's data (issue #21): the quantization rule, the images and classes chosen, the maps
stored, the explore stage through the real CLI, and the trust stage's per-image numbers."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlens
import cnnlens.errors
from cnnlens.data import load_dataset
from cnnlens.evaluate import evaluate
from cnnlens.explain.explore import ExploreConfig, explore_maps, targets_for
from cnnlens.rundir import ExploreMaps, TrustScores, dequantize, quantize
from conftest import cli

# ---- quantization: hand values -------------------------------------------------------------------


def test_quantize_and_dequantize_match_hand_values() -> None:
    m = np.array([[[-2.0, 0.0, 1.0, 2.0]], [[0.0, 0.0, 0.0, 0.0]], [[0.5, -0.25, 0.0, 0.1]]])
    q, scales = quantize(m)
    assert scales == [2.0, 0.0, 0.5]
    # q = round(127.5 * (1 + m / scale)): 127.5*(1-1)=0, 127.5 -> 128 (round half to even), 191.25 -> 191
    assert q[0, 0].tolist() == [0, 128, 191, 255]
    assert q[1, 0].tolist() == [128, 128, 128, 128]  # an all-zero map (scale 0)
    assert q[2, 0].tolist() == [255, 64, 128, 153]  # 63.75 -> 64, 153.0
    back = dequantize(q, scales)
    assert back[0, 0].tolist() == pytest.approx([-2.0, 2 * (128 / 127.5 - 1), 2 * (191 / 127.5 - 1), 2.0])
    assert back[1].tolist() == [[0.0, 0.0, 0.0, 0.0]]
    for e, s in enumerate(scales):
        assert np.abs(back[e] - m[e]).max() <= s / 255 + 1e-7


def test_quantize_refuses_non_finite_maps() -> None:
    with pytest.raises(cnnlens.errors.CnnlensError, match="non-finite"):
        quantize(np.array([[[0.0, np.nan]]]))


# ---- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw, flag", [({"wrong_cap": -1}, "--explore-wrong"), ({"correct_per_class": -2},
                                      "--explore-correct"), ({"top_k": -1}, "--explore-top"),
                                      ({"methods": ("nosuch",)}, "--explore-methods"),
                                      ({"methods": ("lime",)}, "--explore-methods")])
def test_bad_settings_name_the_flag(kw: dict, flag: str) -> None:
    with pytest.raises(cnnlens.errors.CnnlensError, match=flag):
        ExploreConfig(**kw)


def test_targets_are_true_predicted_and_top_k_without_repeats() -> None:
    p = torch.tensor([0.1, 0.5, 0.05, 0.3, 0.05])
    assert targets_for(p, 4, 1, 3) == [4, 1, 3, 0]
    assert targets_for(p, 1, 1, 3) == [1, 3, 0]
    assert targets_for(p, 2, 1, 0) == [2, 1]


# ---- methods that do not apply are left out with a note ------------------------------------------


class FunctionalReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_guided_methods_on_a_functional_relu_model_and_cam_without_conv_are_left_out(digits) -> None:
    torch.manual_seed(0)
    model = FunctionalReLU()
    res = evaluate(model, digits, "test")
    cfg = ExploreConfig(wrong_cap=2, correct_per_class=0, top_k=0, methods=("saliency", "guided_backprop"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = explore_maps(model, digits, res, cfg)
    assert list(data.maps) == ["saliency"]
    assert len(data.notes) == 1 and "guided_backprop" in data.notes[0]
    assert "functional" in data.notes[0].lower()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and model.training
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 10))
    cfg = ExploreConfig(wrong_cap=1, correct_per_class=0, top_k=0, methods=("saliency", "gradcam"))
    data = explore_maps(mlp, digits, evaluate(mlp, digits, "test"), cfg)
    assert list(data.maps) == ["saliency"] and "gradcam" in data.notes[0]


# ---- a tiny trained digits run -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch tiny compact model on digits (most test images wrong), evaluated (eval/predictions.csv)."""
    from cnnlens.pipeline import evaluate_run

    out = tmp_path_factory.mktemp("explore") / "run"
    r = cnnlens.train("digits", "compact", out=out, epochs=1, batch_size=256, seed=0,
                      model_options={"widths": [4, 8], "fc": [16]}, accelerator="cpu")
    evaluate_run(r)
    return out


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "eval" / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_selection_and_maps_on_a_trained_run(tiny: Path, tmp_path: Path) -> None:
    from cnnlens.stages.explore import explore_run

    run_dir = tmp_path / "run"
    shutil.copytree(tiny, run_dir)
    run = cnnlens.load_run(run_dir)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    cfg = ExploreConfig(wrong_cap=7, correct_per_class=2, top_k=2,
                        methods=("saliency", "gradcam", "guided_gradcam"))
    rec = explore_run(run, None, cfg)
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    loaded = ExploreMaps.load(run_dir)
    rows = _rows(run_dir)
    classes = loaded.classes
    conf = {int(r["index"]): float(r[f"p_{r['pred']}"]) for r in rows}
    wrong = [int(r["index"]) for r in rows if r["label"] != r["pred"]]
    assert len(wrong) > cfg.wrong_cap  # the cap matters on this run
    wrong_sorted = sorted(wrong, key=lambda i: -conf[i])
    shown = [im["index"] for im in loaded.images if im["why"] == "wrong"]
    assert set(shown) <= set(wrong) and len(shown) == cfg.wrong_cap
    # the most confident mistakes (the CSV rounds to 6 decimals: compare confidences, not order)
    assert min(conf[i] for i in shown) >= conf[wrong_sorted[cfg.wrong_cap]] - 1e-6
    sel = loaded.selection
    assert sel["n_wrong"] == len(wrong) and sel["n_wrong_shown"] == 7
    assert sel["n_wrong_left_out"] == len(wrong) - 7
    assert set(sel["wrong_left_out_first"]) <= set(wrong) - set(shown)
    assert len(sel["wrong_left_out_first"]) == min(20, len(wrong) - 7)
    # correct ones: per class at most 2, the most confident of that class, truly correct
    for k, name in enumerate(classes):
        ok = [int(r["index"]) for r in rows if r["label"] == r["pred"] == name]
        mine = [im["index"] for im in loaded.images if im["why"] == "correct" and im["true"] == k]
        assert len(mine) == min(2, len(ok)) == sel["correct_shown"][name]
        if mine and len(ok) > 2:
            assert min(conf[i] for i in mine) >= sorted((conf[i] for i in ok), reverse=True)[1] - 1e-6
    # each image's fields and classes: true, predicted and top-2 of the CSV's probabilities
    by_index = {int(r["index"]): r for r in rows}
    for slot, im in enumerate(loaded.images):
        r = by_index[im["index"]]
        assert classes[im["true"]] == r["label"] and classes[im["pred"]] == r["pred"]
        p = [float(r[f"p_{c}"]) for c in classes]
        assert im["confidence"] == pytest.approx(p[im["pred"]], abs=1e-6)
        assert im["loss"] == pytest.approx(-math.log(p[im["true"]]), rel=1e-3, abs=1e-4)
        top = sorted(range(len(p)), key=lambda c: -p[c])[:2]
        got = [t for s, t in loaded.entries if s == slot]
        assert set(got) == {im["true"], im["pred"], *top} and len(got) == len(set(got))
        assert im["id"] == r["id"]
    assert loaded.pixels.shape[0] == len(loaded.images)
    assert np.array_equal(loaded.pixels, run.dataset.images[[im["index"] for im in loaded.images]].numpy())
    # a stored map, dequantized, is cnnlens.explain's map for that image and class
    x_all = run.dataset.normalize(torch.as_tensor(loaded.pixels))
    for m in cfg.methods:
        for e in (0, len(loaded.entries) // 2, len(loaded.entries) - 1):
            slot, t = loaded.entries[e]
            ref = cnnlens.explain(run.model, x_all[slot:slot + 1], m, target=t).maps[0].numpy()
            scale = loaded.methods[m]["scale"][e]
            assert scale == pytest.approx(float(np.abs(ref).max()), rel=1e-4, abs=1e-7)
            assert np.abs(loaded.map(m, e) - ref).max() <= scale / 255 + 1e-5 * max(scale, 1e-6)
    assert loaded.methods["gradcam"]["family"] == "cam" and loaded.methods["saliency"]["family"] == "gradient"
    assert rec.seconds > 0 and "explore" in json.loads((run_dir / "timings.json").read_text())


@pytest.mark.slow
def test_cnnlens_explore_through_the_cli(tiny: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny, run_dir)
    p = cli("explore", str(run_dir), "--explore-wrong", "3", "--explore-correct", "1", "--explore-top", "1",
            "--explore-methods", "saliency,gradcam")
    data = json.loads((run_dir / "explore" / "explore.json").read_text())
    assert list(data["methods"]) == ["saliency", "gradcam"]
    assert sum(im["why"] == "wrong" for im in data["images"]) == 3
    assert data["selection"]["config"]["top_k"] == 1
    assert "explore" in json.loads((run_dir / "timings.json").read_text())
    assert "wrote" in p.stdout and "maps" in p.stderr + p.stdout  # the plan and the cost are logged
    for args, flag in ((["--explore-wrong", "-1"], "--explore-wrong"),
                       (["--explore-methods", "saliency,nosuch"], "--explore-methods"),
                       (["--explore-methods", "lime"], "--explore-methods")):
        bad = cli("explore", str(run_dir), *args, check=False)
        assert bad.returncode == 2 and "error:" in bad.stderr and flag in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_analyze_runs_explore_and_no_explore_skips_it(tiny: Path, tmp_path: Path) -> None:
    from cnnlens.pipeline import STAGES, analyze, evaluate_run, SIZES

    others = tuple(s for s in STAGES if s != "explore")
    for explore, expected in ((False, False), (ExploreConfig(wrong_cap=1, correct_per_class=0, top_k=0,
                                                             methods=("saliency",)), True)):
        run_dir = tmp_path / f"run{int(expected)}"
        shutil.copytree(tiny, run_dir)
        run = cnnlens.load_run(run_dir)
        skip = others if not expected else tuple(s for s in others if s != "explain")
        done = analyze(run, evaluate_run(run), SIZES["fast"], skip=skip, explore=explore)
        assert ("explore" in done) is expected
        assert (run_dir / "explore" / "explore.json").exists() is expected
    # the images the explain stage shows are explorable: every one is among the explorer's images
    from cnnlens.rundir import ExplainMaps

    shown = ExplainMaps.load(run_dir).indices
    rec = ExploreMaps.load(run_dir)
    mine = {im["index"]: im["why"] for im in rec.images}
    assert shown and set(shown) <= set(mine)
    assert rec.selection["n_explained_added"] == sum(w == "explained" for w in mine.values()) > 0


@pytest.mark.slow
def test_cnnlens_run_no_explore_leaves_the_stage_out(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cli("run", "--data", "digits", "--model", "compact", "--epochs", "1", "--size", "fast", "--out", str(out),
        "--skip", "explain,confused,lime,featureviz,trust", "--no-explore")
    assert (out / "report" / "index.html").exists() and not (out / "explore").exists()
    assert "explore" not in json.loads((out / "stages.json").read_text())["stages"]


# ---- per-image trust numbers ---------------------------------------------------------------------


def test_trust_keeps_per_image_scores_and_curves(digits, tmp_path: Path) -> None:
    from cnnlens.metrics import run_trust
    from cnnlens.metrics.faithfulness import auc

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 10))
    rep = run_trust(model, digits, ["saliency", "gradcam"], n_images=4, steps=4, cascade=False)
    TrustScores.from_report(rep).save(tmp_path)
    rec = TrustScores.load(tmp_path)
    pi = rec.per_image
    assert pi["split"] == "test" and pi["indices"] == rec.options["images"] and len(pi["indices"]) == 4
    assert set(pi["methods"]) == set(rec.methods)
    for m, d in pi["methods"].items():
        dc, ic = torch.tensor(d["curves"]["deletion"]), torch.tensor(d["curves"]["insertion"])
        assert dc.shape == ic.shape == (4, 5)
        assert d["scores"]["deletion_auc"] == pytest.approx(auc(dc).tolist(), abs=1e-12)
        assert d["scores"]["insertion_auc"] == pytest.approx(auc(ic).tolist(), abs=1e-12)
        for key, vals in d["scores"].items():
            mean = rec.methods[m]["scores"][key]["mean"]
            assert float(np.nanmean(vals)) == pytest.approx(mean, abs=1e-12) or (math.isnan(mean))


def test_maps_do_not_depend_on_the_block_size(digits, monkeypatch) -> None:
    from cnnlens.explain import explore as ex

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 10))
    res = evaluate(model, digits, "test")
    cfg = ExploreConfig(wrong_cap=4, correct_per_class=1, top_k=2, methods=("saliency", "gradcam"))
    whole = explore_maps(model, digits, res, cfg)
    monkeypatch.setattr(ex, "BLOCK", 3)
    seen: list[tuple[int, int]] = []
    blocks = explore_maps(model, digits, res, cfg, progress=lambda d, t: seen.append((d, t)))
    n = len(whole.entries)
    assert n > 3 and blocks.entries == whole.entries and seen[-1] == (n, n)
    for m in cfg.methods:
        np.testing.assert_allclose(blocks.maps[m], whole.maps[m], atol=1e-6)
