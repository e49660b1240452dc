"""The report's explorer (issue #21) in a real headless Chromium (Debian's ``chromium``), driven over the
DevTools pipe (:mod:`cnnlens.report.browser`).

Until the explore stage writes ``RUN/explore/`` itself, :func:`build_explore_maps_for_test` stands in for
it: it explains the demo run's test images with :func:`cnnlens.explain.batch.explain_images` and saves an
:class:`~cnnlens.rundir.ExploreMaps` (the lead can swap in the real stage). Every expectation is computed
here from the files on disk (``eval/predictions.csv``, ``explore/*.npy``) and matplotlib's colormaps,
never from what the page reports about itself.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli

from cnnlens.report.browser import Browser

pytestmark = pytest.mark.slow  # the demo run (about 2 min on 1 CPU) and a browser

ARTIFACTS = Path(os.environ.get("CNNLENS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))
METHODS = ("saliency", "gradcam", "gradient_x_input")


def build_explore_maps_for_test(run_dir: Path, methods=METHODS, correct_per_class: int = 2,
                                classes: list[str] | None = None) -> None:
    """A stand-in for the explore stage: every misclassified test image plus ``correct_per_class``
    correct ones per class, each explained for its true class, its predicted class and its top 3
    classes; saved as ``RUN/explore/`` (``classes``: rename the classes in the record)."""
    from cnnlens import load_run
    from cnnlens.explain.batch import explain_images
    from cnnlens.rundir import ExploreMaps, Predictions, quantize

    run = load_run(run_dir)
    p = Predictions.load(run_dir)
    pos = {c: k for k, c in enumerate(p.classes)}
    chosen, per_class = [], {}
    for i, (lb, pr) in enumerate(zip(p.labels, p.preds)):
        if lb != pr:
            chosen.append((i, "wrong"))
        elif per_class.get(lb, 0) < correct_per_class:
            per_class[lb] = per_class.get(lb, 0) + 1
            chosen.append((i, "correct"))
    images, entries = [], []
    for slot, (i, why) in enumerate(chosen):
        probs = p.probs[i]
        t, pr = pos[p.labels[i]], pos[p.preds[i]]
        images.append({"index": p.indices[i], "id": p.ids[i], "true": t, "pred": pr,
                       "confidence": probs[pr], "loss": -math.log(max(probs[t], 1e-12)), "why": why})
        top = list(np.argsort(probs)[::-1][:3])
        for target in dict.fromkeys([t, pr, *[int(k) for k in top]]):
            entries.append([slot, int(target)])
    idx = torch.tensor([images[s]["index"] for s, _ in entries])
    pix = run.dataset.images[idx]
    res = explain_images(run.model, pix, run.mean, run.std, list(methods),
                         targets=[t for _, t in entries])
    maps, info = {}, {}
    for m in methods:
        q, scales = quantize(res[m].maps.numpy())
        maps[m] = q
        info[m] = {"file": f"{m}.npy", "scale": scales, "family": "cam" if "cam" in m else "gradient",
                   "signed": bool(res[m].signed)}
    rec = ExploreMaps(split="test", classes=list(classes or p.classes), images=images, entries=entries,
                      methods=info, selection={"correct_per_class": correct_per_class,
                                               "n_wrong": sum(im["why"] == "wrong" for im in images)},
                      pixels=run.dataset.images[torch.tensor([im["index"] for im in images])].numpy(),
                      maps=maps)
    rec.save(run_dir)
