"""The stages after training, on a run directory: evaluate -> explain -> report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .evaluate import EvalResult, evaluate, write_eval
from .explain import explain, normalize_maps
from .explain.core import METHODS
from .io import read_json, write_bytes, write_json
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
    """Explain chosen images of a run with each method; writes ``RUN/explain/`` (maps as .npy, a JSON index,
    and a grid figure). Images default to ``per_class`` correctly classified test images per class."""
    from .report.plots import explanation_grid

    t0 = time.perf_counter()
    for m in methods:
        METHODS.get(m)  # unknown names fail before any work, listing the valid ones
    ds = run.dataset
    if indices is None:
        res = _load_or_evaluate(run, split)
        indices = select_per_class(res, per_class)
    if not indices:
        raise ValueError("no images to explain (no correctly classified image in the split?)")
    n = len(ds)
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"image index {bad[0]} is out of range: the dataset has {n} images (0..{n - 1})")
    idx = torch.as_tensor(indices)
    images = ds.images[idx]
    labels = ds.labels[idx]
    x = ds.normalize(images) if tuple(ds.mean) == run.mean else _norm(images, run)
    out = run.path / "explain"
    tgt: Any = target
    if isinstance(target, str) and target.isdigit():
        tgt = int(target)
    maps, signed, info = {}, {}, {}
    total = len(methods)
    for j, m in enumerate(methods):
        e = explain(run.model, x, m, target=tgt, layer=layer, labels=labels if tgt == "label" else None)
        save_npy(out / f"maps_{m}.npy", e.maps.cpu().numpy())
        maps[m] = normalize_maps(e.maps, signed=e.signed)
        signed[m] = e.signed
        info[m] = {"layer": e.layer, "signed": e.signed, "targets": e.targets.tolist()}
        if progress:
            progress(j + 1, total)
    probs = e.probs
    preds = probs.argmax(1)
    titles = [f"#{i} {ds.classes[int(l)]}" + ("" if int(p) == int(l) else f"→{ds.classes[int(p)]}")
              for i, l, p in zip(indices, labels, preds)]
    explanation_grid(images, maps, titles, out / "explanations.png", signed)
    index = {"indices": list(map(int, indices)), "labels": labels.tolist(), "preds": preds.tolist(),
             "probs": probs.max(1).values.tolist(), "target": str(target), "methods": info,
             "classes": list(ds.classes)}
    write_json(out / "index.json", index)
    _record_timing(run.path, "explain", time.perf_counter() - t0)
    return index


def _norm(images: torch.Tensor, run: Run) -> torch.Tensor:
    from .data.base import normalize

    return normalize(images, run.mean, run.std)


def save_npy(path: Path, arr: np.ndarray) -> Path:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return write_bytes(path, buf.getvalue())


def _load_or_evaluate(run: Run, split: str) -> EvalResult:
    return evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std)


def _record_timing(run_dir: Path, stage: str, seconds: float) -> None:
    p = Path(run_dir) / "timings.json"
    d = read_json(p) if p.exists() else {}
    d[stage] = round(seconds, 2)
    write_json(p, d)
