"""The stages that describe a run: evaluation (``RUN/eval/``), the model's layer table
(``RUN/model/``), the data's counts and samples (``RUN/data/``) and the submission file for an
unlabeled test split (``RUN/submission.csv``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..evaluate import EvalResult, evaluate
from ..rundir import DataCounts, DataSamples, ModelSummaryFile, save_eval
from ..train import Run
from .timing import Progress, timed

log = logging.getLogger("cnnlens.pipeline")


def evaluate_run(
    run: Run, split: str | None = None, progress: Progress = None, tta: str | None = None
) -> EvalResult:
    """Evaluate a run's model on ``split`` and write ``RUN/eval/`` (``RUN/eval/tta-<mode>/`` with TTA).
    ``split=None``: ``test`` when it is labeled, else the labeled hold-out ``val``
    (:func:`cnnlens.data.splits.label_split`, which logs why)."""
    from ..data.splits import label_split

    split = label_split(run.dataset, split)
    with timed(run.path, "evaluate"):
        res = evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std, progress=progress, tta=tta)
        save_eval(res, run.path, run.dataset.ids, tta)
    log.info("%s accuracy %.4f on %d %s images", split, res.accuracy, len(res.labels), split)
    return res


def summarize_run(run: Run) -> dict[str, Any]:
    """The layer table of the run's model: ``RUN/model/summary.json`` and ``summary.csv``."""
    from ..models.summary import summarize

    with timed(run.path, "model summary"):
        rec = ModelSummaryFile.from_summary(summarize(run.model, run.input_shape))
        rec.save(run.path)
    return rec.to_dict()


def describe_data(run: Run, per_class: int = 8, seed: int = 0) -> dict[str, Any]:
    """Images per class and split (``RUN/data/counts.json`` + ``counts.csv``) and a seeded choice of
    sample images per class (``RUN/data/samples.json``, dataset indices from the train split)."""
    from ..data.samples import pick_samples

    with timed(run.path, "data"):
        ds = run.dataset
        counts = DataCounts.from_dataset(ds, run.normalization)
        counts.save(run.path)
        split = "train" if "train" in ds.splits else None
        samples = [{"class": c, "indices": idx} for c, idx in pick_samples(ds, per_class, split, seed)]
        DataSamples(split=split, seed=seed, per_class=per_class, rows=samples).save(run.path)
    return counts.to_dict()


SUBMISSION = "submission.csv"
"""Where :func:`submission_run` writes the predictions for an unlabeled test split, inside the run."""


def submission_run(run: Run, progress: Progress = None) -> Path | None:
    """When the run's dataset has an unlabeled ``test`` split (the course's ``test.csv``, Food-11's
    ``testing/``), write its submission file through :func:`cnnlens.predict.predict` to
    ``RUN/submission.csv`` (``id,label`` or ``file,label``, one row per test input in the input's
    order; docs/predict.md). Returns the path, or ``None`` when there is nothing to submit."""
    ds = run.dataset
    idx = ds.splits.get("test")
    if idx is None or len(idx) == 0 or bool((ds.labels[idx] >= 0).any()):
        return None
    from ..predict import predict

    out = run.path / SUBMISSION
    with timed(run.path, "submission"):
        pred = predict(run, ds, "test", progress=progress, out=out)
    log.info("wrote the submission file %s: %d rows (%s,label) for the unlabeled test split", out, len(pred),
             pred.key)
    return out


def load_or_evaluate(run: Run, split: str | None) -> EvalResult:
    """``split`` (``None``: the labeled default) evaluated in memory, nothing written."""
    from ..data.splits import label_split

    split = label_split(run.dataset, split)
    return evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std)
