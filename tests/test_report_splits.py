"""Split names in text (issue 17 item 5) and standalone feature visualization in the report (item 4).

Every sentence names the split it used and says "correctly classified" or "misclassified" only when
that is true; everything `cnnlens filters | featuremaps | dream` wrote shows in the next report."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import cli

from cnnlens.report import findings


def _metrics(split: str) -> dict:
    return {
        "split": split, "n": 33, "accuracy": 5 / 33, "macro_f1": 0.1, "classes": ["a", "b"],
        "per_class": [{"class": "a", "precision": 0.5, "recall": 0.25, "f1": 0.3, "support": 20},
                      {"class": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 13}],
        "most_confused": [],
    }


def test_eval_findings_name_the_split_evaluated():
    val = " ".join(f["text"] for f in findings.eval_findings(_metrics("val")))
    assert "Validation accuracy is 15.2% on 33 val images" in val  # 5/33 = 15.15%
    assert "No val image was misclassified." in val  # most_confused is empty in this record
    assert "test" not in val.lower()
    other = findings.eval_findings(_metrics("holdout"))[0]["text"]
    assert other.startswith("Accuracy on holdout is 15.2% on 33 holdout images")


def test_split_note_says_why_val_is_used():
    info = {"splits": ["train", "val", "test"], "size": {"train": 40, "val": 10, "test": 16},
            "unlabeled": {"train": 0, "val": 0, "test": 16}}
    assert findings.split_note("test", info) is None
    note = findings.split_note("val", info)
    assert "labeled val split: the test split is unlabeled (16 images)" in note and "optimistic" in note
    info2 = {"splits": ["train", "val"], "size": {"train": 40, "val": 10}, "unlabeled": {"train": 0, "val": 0}}
    assert "the dataset has no test split" in findings.split_note("val", info2)
    info3 = {**info, "unlabeled": {"train": 0, "val": 0, "test": 0}}
    assert "the val split was chosen (--split val)" in findings.split_note("val", info3)


def test_trust_findings_name_the_split_scored():
    s = {"n_images": 16, "options": {"split": "val"}, "tests": {}, "methods": {}}
    assert findings.trust_findings(s)[0]["text"].startswith("0 methods scored on 16 val images")


@pytest.mark.parametrize(
    ("labels", "predicted", "targets", "selection", "splits", "want"),
    [
        # --images 0,1,2,3 on training images, mostly misclassified: never "correctly classified test"
        ([0, 1, 2, 3], [0, 2, 0, 1], [0, 2, 0, 1], "given", ["train"] * 4,
         "4 train images chosen by index (1 correctly classified, 3 misclassified), each explained for its "
         "predicted class"),
        ([0, 1], [1, 0], [1, 0], "given", ["val", "train"],
         "2 misclassified val and train images chosen by index, each explained for its predicted class"),
        ([0, 1], [0, 1], [0, 1], "correct", ["val", "val"],
         "2 correctly classified val images (per class in order, the first of each class in the split), "
         "each explained for its predicted class"),
        ([0, 1], [1, 1], [0, 1], "given", ["val", "val"],
         "2 val images chosen by index (1 correctly classified, 1 misclassified), each explained for its "
         "true class"),
        ([-1, -1], [1, 0], [2, 2], "given", ["test", "test"],
         "2 test images chosen by index (unlabeled: correctness unknown), each explained for class c"),
    ],
)
def test_explained_images_say_only_what_is_true(labels, predicted, targets, selection, splits, want):
    index = {"indices": list(range(len(labels))), "labels": labels, "predicted": predicted,
             "targets": targets, "selection": selection, "splits": splits, "classes": ["a", "b", "c"]}
    assert findings.explained_images(index) == want


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> object:
    """A digits run trained for one epoch (no evaluation, no analysis stages)."""
    out = tmp_path_factory.mktemp("splits") / "run"
    cli("train", "--data", "digits", "--model", "compact", "--epochs", "1", "--seed", "0", "--out", str(out))
    return out


def _html(run) -> str:
    return (run / "report" / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_standalone_featureviz_shows_in_the_next_report(trained):
    run = trained
    cli("report", str(run))
    assert 'id="filters"' not in _html(run)  # nothing to show yet
    cli("filters", str(run), "--layer", "cnn.0", "--channels", "0-1", "--steps", "4", "--examples", "1")
    cli("filters", str(run), "--layer", "cnn.4", "--channels", "3", "--steps", "4", "--examples", "1")
    cli("featuremaps", str(run), "--layer", "cnn.0", "--image", "3")
    cli("dream", str(run), "--image", "5", "--layer", "cnn.0", "--steps", "2", "--every", "1", "--octaves", "1")
    fv = run / "featureviz"
    assert not (fv / "featureviz.json").exists()  # only the pipeline writes the index
    made = {p.name: json.loads(p.read_text()) for p in fv.glob("*.json")}
    figures = [d["figure"] for n, d in made.items() if n.startswith(("filters_", "featuremaps_"))]
    figures += [d["files"][0] for n, d in made.items() if n.startswith("dream_")]
    assert len(figures) == 4
    cli("report", str(run))
    html = _html(run)
    assert '<section id="filters">' in html
    for fig in figures:
        assert f'<img src="fv_{fig}"' in html and (run / "report" / f"fv_{fig}").is_file()
    filt = [d for n, d in made.items() if n.startswith("filters_")]
    for d in filt:  # each layer's finding, with its numbers
        assert f"{d['layer']}: " in html and f"of {len(d['channels'])} synthetic images" in html
    fm = next(d for n, d in made.items() if n.startswith("featuremaps_"))
    ds_split = fm["split"]
    assert f"for {ds_split} image #3 (class {fm['class']})" in html


@pytest.mark.slow
def test_split_names_in_cli_and_report_are_the_ones_used(trained):
    import cnnlens

    run = trained
    # `evaluate --split val` logs and titles val, never "test accuracy"
    p = cli("evaluate", str(run), "--split", "val")
    assert re.search(r"val accuracy \d\.\d{4} on \d+ val images", p.stderr) and "test accuracy" not in p.stderr
    assert "val: accuracy" in p.stdout
    m = json.loads((run / "eval" / "metrics.json").read_text())
    assert m["split"] == "val"
    # --images 0,1,2,3: the caption says which split they are in and how many were right
    cli("explain", str(run), "--images", "0,1,2,3", "--methods", "saliency")
    r = cnnlens.load_run(run)
    ds = r.dataset
    where = {int(i): s for s, idx in ds.splits.items() for i in idx.tolist()}
    splits = list(dict.fromkeys(where[i] for i in range(4)))
    x = (ds.images[:4].float() / 255 - torch.tensor(r.mean).view(1, -1, 1, 1)) / torch.tensor(r.std).view(1, -1, 1, 1)
    r.model.eval()
    with torch.no_grad():
        right = int((r.model(x).argmax(1) == ds.labels[:4]).sum())
    cli("report", str(run))
    html = _html(run)
    state = {4: "correctly classified ", 0: "misclassified "}.get(right, "")
    tally = "" if right in (0, 4) else f" ({right} correctly classified, {4 - right} misclassified)"
    assert f"4 {state}{' and '.join(splits)} images chosen by index{tally}, each explained for its predicted" in html
    assert f"Validation accuracy is {100 * m['accuracy']:.1f}% on {m['n']:,} val images" in html
    assert "Test accuracy" not in html
    # `report --split test` evaluates test beside the val evaluation and shows it
    cli("report", str(run), "--split", "test")
    t = json.loads((run / "eval" / "split-test" / "metrics.json").read_text())
    assert t["split"] == "test" and t["n"] == len(ds.indices("test"))
    html = _html(run)
    assert f"Test accuracy is {100 * t['accuracy']:.1f}% on {t['n']:,} test images" in html
    assert "eval/split-test/metrics.json" in html
