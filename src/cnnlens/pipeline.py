"""The stages after training, on a run directory: evaluate -> explain -> report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .evaluate import EvalResult, evaluate, write_eval
from .explain.core import METHODS
from .io import read_json, write_json
from .train import Run

log = logging.getLogger(__name__)


def evaluate_run(run: Run, split: str = "test", progress: Callable[[int, int], None] | None = None,
                 tta: str | None = None) -> EvalResult:
    """Evaluate a run's model on ``split`` and write ``RUN/eval/`` (``RUN/eval/tta-<mode>/`` with TTA)."""
    t0 = time.perf_counter()
    res = evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std, progress=progress, tta=tta)
    sub = run.path / "eval" if tta in (None, "none") else run.path / "eval" / f"tta-{tta}"
    write_eval(res, sub, run.dataset.ids)
    _record_timing(run.path, "evaluate", time.perf_counter() - t0)
    log.info("test accuracy %.4f on %d images", res.accuracy, len(res.labels))
    return res


def select_per_class(res: EvalResult, per_class: int = 1) -> list[int]:
    """Up to ``per_class`` correctly classified images of each class (dataset indices), in split order."""
    chosen: list[int] = []
    for k in range(len(res.classes)):
        ok = torch.nonzero((res.labels == k) & (res.preds == k)).flatten()[:per_class]
        chosen += [int(res.indices[i]) for i in ok]
    return chosen


def explain_run(run: Run, methods: list[str], indices: list[int] | None = None, per_class: int = 1,
                target: str | int = "pred", split: str = "test",
                progress: Callable[[int, int], None] | None = None, layer: str | None = None) -> dict[str, Any]:
    """Explain chosen images of a run with each method; writes ``RUN/explain/`` (one ``<method>.npy`` per
    method, ``explanations.json`` and ``grid.png``). Images default to ``per_class`` correctly classified
    images per class of ``split``. Returns the JSON index."""
    from .explain.batch import explain_images

    t0 = time.perf_counter()
    for m in methods:
        METHODS.get(m)  # unknown names fail before any work, listing the valid ones
    ds = run.dataset
    if indices is None:
        indices = select_per_class(_load_or_evaluate(run, split), per_class)
    if not indices:
        raise ValueError("no images to explain (no correctly classified image in the split?)")
    n = len(ds)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"image index {bad[0]} is out of range: the dataset has {n} images (0..{n - 1})")
    idx = torch.as_tensor(indices)
    labels = ds.labels[idx]
    tgt: Any = int(target) if isinstance(target, str) and target.isdigit() else target
    if tgt == "label" and (labels < 0).any():
        raise ValueError("target 'label' needs labeled images; some chosen images are unlabeled")
    explain_images(run.model, ds.images[idx], run.mean, run.std, methods, targets=tgt,
                   labels=labels if tgt == "label" else None, out_dir=run.path / "explain",
                   classes=ds.classes, indices=indices, progress=progress, layer=layer)
    _record_timing(run.path, "explain", time.perf_counter() - t0)
    return read_json(run.path / "explain" / "explanations.json")


def _load_or_evaluate(run: Run, split: str) -> EvalResult:
    return evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std)


def _record_timing(run_dir: Path, stage: str, seconds: float) -> None:
    p = Path(run_dir) / "timings.json"
    d = read_json(p) if p.exists() else {}
    d[stage] = round(seconds, 2)
    write_json(p, d)
