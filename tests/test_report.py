"""The report: findings against hand-computed values, escaping, redraw-only, on the session's demo run."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli

from cnnlens.io import read_json, write_json
from cnnlens.report import findings
from cnnlens.report.html import SECTIONS, build_report

EVIL = "<script>alert(1)</script>"
AMP = 'a&b"c'


# ---- findings on hand-made numbers ------------------------------------------------------------------


def test_region_mass_on_hand_set_maps():
    maps = np.zeros((3, 12, 12), dtype=np.float32)
    maps[0, 0, 0] = 2.0  # all mass top-left, outside the central box (rows/cols 3..8)
    maps[1] = 1.0  # uniform: a third per third, the box gets its area
    maps[2, 5, 6] = -4.0  # signed: |m| counts; centre pixel -> middle third, centre column, box
    r = findings.region_mass(maps)
    assert r[0]["top"] == 1 and r[0]["left"] == 1 and r[0]["middle"] == 0 and r[0]["centre_box"] == 0
    for k in ("top", "middle", "bottom", "left", "centre_col", "right"):
        assert r[1][k] == pytest.approx(1 / 3)
    assert r[1]["centre_box"] == pytest.approx(36 / 144) == r[1]["centre_box_area"]
    assert r[2]["middle"] == 1 and r[2]["centre_col"] == 1 and r[2]["centre_box"] == 1
    assert all(
        math.isnan(v) for k, v in findings.region_mass(np.zeros((1, 12, 12)))[0].items()
        if k != "centre_box_area"
    )


def test_looks_findings_name_the_region_with_the_most_mass():
    maps = np.zeros((2, 12, 12), dtype=np.float32)
    maps[0, 10, 1] = 1.0  # bottom-left corner
    maps[1, 5, 5] = 1.0  # centre
    rows = findings.region_mass(maps)
    out = findings.looks_findings("gradcam", [EVIL, "b"], [(0, rows[0]), (1, rows[1])], "src.csv")
    assert "100% of the gradcam attribution lies in the bottom third" in out[0]["text"]
    assert "100% in the left third" in out[0]["text"] and "outside the centre" in out[0]["text"]
    assert out[1]["text"].startswith("b: 100% of the gradcam attribution lies in the middle third")
    assert "inside the centre" in out[1]["text"] and out[1]["source"] == "src.csv"


def _metrics() -> dict:
    return {
        "split": "test",
        "n": 50,
        "accuracy": 0.8,
        "macro_f1": 0.79,
        "classes": ["a", "b"],
        "per_class": [
            {"class": "a", "precision": 0.75, "recall": 0.9, "f1": 0.8, "support": 20},
            {"class": "b", "precision": 0.9, "recall": 0.7, "f1": 0.78, "support": 30},
        ],
        "most_confused": [{"true": "b", "pred": "a", "count": 9, "rate": 0.3}],
        "top_losses": [{"index": 7, "true": "b", "pred": "a", "p_true": 0.01, "p_pred": 0.99, "loss": 4.6}],
        "calibration": {
            "ece": 0.1,
            "bins": [
                {"lo": 0, "hi": 0.5, "count": 10, "accuracy": 0.5, "confidence": 0.45},
                {"lo": 0.5, "hi": 1, "count": 40, "accuracy": 0.875, "confidence": 0.95},
            ],
        },
    }


def test_eval_findings_come_from_the_numbers():
    text = " ".join(f["text"] for f in findings.eval_findings(_metrics()))
    assert "Test accuracy is 80.0% on 50 test images (macro F1 0.790)" in text
    assert "Best recognized: a (recall 90.0%); worst: b (recall 70.0%, precision 90.0%)" in text
    assert "b taken for a (9 images, 30.0% of b)" in text
    # mean confidence (10*.45 + 40*.95)/50 = 0.85 against accuracy (10*.5 + 40*.875)/50 = 0.80
    assert "mean confidence 85.0% against accuracy 80.0% (over-confident by 5.00 percentage points)" in text
    assert "image #7: a b given 1.0% probability, predicted a at 99.0%" in text


def test_trust_findings_say_which_method_failed_which_test():
    def m(passed, control=False, rho=0.5):
        return {
            "control": control,
            "passed": passed,
            "reading": "",
            "scores": {
                "insertion_minus_deletion": {"mean": 0.2, "sem": 0.01},
                "randomization.spearman_abs": {"mean": rho, "sem": 0.01},
            },
        }

    s = {
        "n_images": 16,
        "tests": {
            "faithfulness": {"headline": ["insertion_minus_deletion"]},
            "randomization": {"headline": ["spearman_abs"]},
        },
        "methods": {
            "good": m({"faithfulness": True, "randomization": True}, rho=0.05),
            "bad": m({"faithfulness": True, "randomization": False}, rho=0.8),
            "control_edge": m({"faithfulness": None, "randomization": None}, control=True),
        },
        "skipped": [{"method": "slow", "reason": "cost"}],
    }
    text = [f["text"] for f in findings.trust_findings(s)]
    assert text[0].startswith("2 methods scored on 16 test images")
    assert "Passed every test: good." in text
    assert "Failed randomization: bad (randomization.spearman_abs: bad 0.800)." in text
    assert not any("Failed faithfulness" in t for t in text)
    assert any(t.startswith("slow could not be scored") for t in text)


# ---- the page, on copies of the session's demo run --------------------------------------------------


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "report"
    }


def test_demo_report_has_every_section_and_traceable_numbers(demo_run):
    out, _ = demo_run
    html = (out / "report" / "index.html").read_text()
    for key, _title in SECTIONS:
        if key == "explore" and not (out / "explore" / "explore.json").exists():
            assert "<code>explore/explore.json</code>" in html  # named as missing (issue #21)
        elif key != "compare":  # the demo trains no baseline
            assert f'<section id="{key}">' in html, key
    # every figure the page names exists beside it
    for src in re.findall(r'<img src="([^"]+)"', html):
        assert (out / "report" / src).is_file(), src
    # the ECE in the page is the one an independent computation gets from predictions.csv (15 bins)
    import csv

    with open(out / "eval" / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    classes = read_json(out / "model.json")["classes"]
    p = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    conf, correct = p.max(1), (np.array([r["label"] for r in rows]) == np.array(classes)[p.argmax(1)])
    edges = np.linspace(0, 1, 16)
    ece = 0.0
    for b in range(15):
        m = (conf > edges[b]) & (conf <= edges[b + 1]) if b else (conf >= 0) & (conf <= edges[1])
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    assert f"Expected calibration error {100 * ece:.2f}%" in html
    # the test accuracy stated equals the one in predictions.csv
    assert f"Test accuracy is {100 * correct.mean():.1f}%" in html
    # findings.json holds every sentence with its source
    fj = read_json(out / "report" / "findings.json")
    assert {"data", "model", "training", "failures", "looks", "trust", "filters"} <= set(fj)
    assert all(f["source"] for sec in fj.values() for f in sec)
    # the page says how long each stage took
    t = read_json(out / "timings.json")
    for stage in ("train", "evaluate", "explain", "lime", "featureviz", "trust"):
        assert stage in t and t[stage]["wall_s"] >= 0
        assert f'<td class="l">{stage}</td>' in html


def test_rerunning_report_only_redraws(demo_run, tmp_path):
    src, _ = demo_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    before = _files(run)
    page = run / "report" / "index.html"
    old = page.stat().st_mtime_ns
    cli("report", str(run))
    assert _files(run) == before  # nothing outside report/ was written: no training, no recomputation
    assert page.stat().st_mtime_ns > old


def test_report_lists_missing_files_and_cli_report_makes_only_the_cheap_ones(demo_run, tmp_path):
    src, _ = demo_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    shutil.rmtree(run / "data")
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "trust")
    (run / "explain" / "attribution_regions.json").unlink()
    before = _files(run)
    build_report(run)  # the page renders records: it computes nothing, and says what is missing
    assert _files(run) == before
    html = (run / "report" / "index.html").read_text()
    assert '<section id="data">' not in html and '<section id="model">' not in html
    for file, command in (("data/counts.json", "cnnlens report"), ("model/summary.json", "cnnlens report"),
                          ("trust/scores.json", "cnnlens trust"),
                          ("explain/attribution_regions.json", "cnnlens explain")):
        assert f"<code>{file}</code>; <code>{command} " in html, file
    cli("report", str(run))  # the command first writes the cheap records: counts, layer table, regions
    counts = read_json(run / "data" / "counts.json")
    from cnnlens.train import load_run

    ds = load_run(run).dataset
    for s, idx in ds.splits.items():  # independent count: bincount of the split's labels
        assert counts["counts"][s] == torch.bincount(ds.labels[idx], minlength=len(ds.classes)).tolist()
    assert read_json(run / "model" / "summary.json")["total"] == read_json(run / "model.json")["params"]
    assert (run / "explain" / "attribution_regions.json").is_file()
    html = (run / "report" / "index.html").read_text()
    assert '<section id="data">' in html and '<section id="model">' in html
    assert '<section id="trust">' not in html and not (run / "trust").exists()  # never recomputed


def _rename_classes(run: Path, names: dict[str, str]) -> None:
    """Rewrite class names in every saved file of a run (as if the dataset had named them so)."""

    def fix(v):
        if isinstance(v, str):
            return names.get(v, v)
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {
                k: (
                    fix(x)
                    if k
                    in (
                        "classes",
                        "class",
                        "true",
                        "pred",
                        "per_class",
                        "most_confused",
                        "top_losses",
                        "pairs",
                        "rows",
                    )
                    else x
                )
                for k, x in v.items()
            }
        return v

    for rel in (
        "model.json",
        "eval/metrics.json",
        "data/counts.json",
        "data/samples.json",
        "explain/explanations.json",
        "explain/lime/lime.json",
        "explain/confused/confused.json",
        "explain/attribution_regions.json",
    ):
        p = run / rel
        if p.exists():
            write_json(p, fix(read_json(p)))


def test_class_names_and_paths_are_escaped(demo_run, tmp_path):
    src, _ = demo_run
    run = tmp_path / "run <b>&amp;"
    shutil.copytree(src, run)
    _rename_classes(run, {"5": EVIL, "3": AMP})
    page = build_report(run)
    html = page.read_text()
    assert EVIL not in html and "<b>&amp;" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a&amp;b&#34;c" in html
    assert "run &lt;b&gt;&amp;amp;" in html
    # in a real browser: no script element made of the names, and the name reads as text
    from cnnlens.report.browser import Browser

    with Browser() as b:
        tab = b.open(page.resolve().as_uri())
        # the only scripts are the explorer's two files (no inline script: the names cannot become one)
        srcs = tab.evaluate("[...document.querySelectorAll('script')].map(s => s.getAttribute('src'))")
        assert srcs == ["explore/data.js", "explore/explore.js"]
        assert tab.evaluate("document.body.innerText.includes('<script>alert(1)</script>')")
        assert tab.evaluate("document.querySelectorAll('b').length") == len(re.findall(r"<b>", html))
        assert tab.console_errors == []


@pytest.mark.slow
def test_report_errors_name_the_fix(tmp_path):
    p = cli("report", str(tmp_path), check=False)
    assert p.returncode == 2 and "not a cnnlens run" in p.stderr
    p = cli("run", "--data", "digits", "--methods", "nosuch", "--out", str(tmp_path / "x"), check=False)
    assert p.returncode == 2 and "nosuch" in p.stderr and "saliency" in p.stderr
    assert not (tmp_path / "x").exists()  # failed before training
    p = cli("run", "--data", "digits", "--skip", "explain,bogus", "--out", str(tmp_path / "y"), check=False)
    assert p.returncode == 2 and "bogus" in p.stderr and "featureviz" in p.stderr
