"""The stages after training, on a run directory; each writes its numbers under ``RUN/`` and its wall
and CPU time into ``RUN/timings.json``.

    evaluate    -> RUN/eval/            metrics.json (per class, confusion, top losses, calibration)
    summarize   -> RUN/model/           summary.json + summary.csv (layer table, totals)
    describe    -> RUN/data/            counts.json + counts.csv (images per class and split), samples.json
    explain     -> RUN/explain/         <method>.npy for correctly classified images of each class
    confused    -> RUN/explain/confused/  maps for the true and the predicted class of misclassified images
    lime        -> RUN/explain/lime/    LIME maps, superpixels and weights per class
    featureviz  -> RUN/featureviz/      first/last conv filters + dataset examples, feature maps, Deep Dream
    trust       -> RUN/trust/           scores.json, table.csv (which map to believe)

:class:`StageSizes` says how big each stage is; :data:`SIZES` holds the presets the CLI uses
(``fast`` for ``cnnlens demo --fast``, ``demo``, ``run``). The report (:mod:`cnnlens.report.html`)
only reads what these stages wrote.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .evaluate import EvalResult, evaluate, write_eval
from .explain.core import METHODS
from .io import read_json, write_csv, write_json, write_npy
from .train import Run
from .errors import CnnlensError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None] | None

GRADIENT_CAM = (
    "saliency",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "gradcam",
    "gradcam_pp",
    "layercam",
    "guided_gradcam",
)
"""The gradient and CAM methods shown side by side by default (one pass family each, cheap)."""


@dataclass(frozen=True)
class StageSizes:
    """How much work each stage does. Every field is a count or a step number.

    Attributes:
        methods: gradient/CAM methods shown side by side per class.
        per_class: correctly classified test images per class for ``methods`` and LIME.
        confused_pairs, per_pair, confused_methods: most-confused pairs explained, images per pair,
            methods used (each image explained for its true and for its predicted class).
        lime_samples: perturbed images per LIME explanation.
        filters_first, filters_last: filters shown of the first and of the last conv layer
            (``None``: all); filter_steps: activation-maximization steps; examples: dataset patches
            per filter.
        dream_octaves, dream_steps, dream_every: Deep Dream scales, steps per scale, snapshot interval.
        trust_images, trust_steps, trust_methods: the trust protocol's images, deletion/insertion
            steps and methods (the random and edge controls are always added).
    """

    methods: tuple[str, ...] = GRADIENT_CAM
    per_class: int = 1
    confused_pairs: int = 3
    per_pair: int = 2
    confused_methods: tuple[str, ...] = ("saliency", "gradcam", "guided_gradcam")
    lime_samples: int = 1000
    filters_first: int | None = None
    filters_last: int | None = 16
    filter_steps: int = 128
    examples: int = 4
    dream_octaves: int = 3
    dream_steps: int = 20
    dream_every: int = 10
    trust_images: int = 32
    trust_steps: int = 50
    trust_methods: tuple[str, ...] = (
        "saliency",
        "gradient_x_input",
        "smoothgrad",
        "guided_backprop",
        "gradcam",
        "gradcam_pp",
        "layercam",
        "guided_gradcam",
    )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


SIZES: dict[str, StageSizes] = {
    "run": StageSizes(),
    "demo": StageSizes(trust_images=24, trust_steps=32, filter_steps=96),
    "fast": StageSizes(
        methods=(
            "saliency",
            "gradient_x_input",
            "guided_backprop",
            "gradcam",
            "gradcam_pp",
            "guided_gradcam",
        ),
        confused_pairs=2,
        per_pair=1,
        confused_methods=("saliency", "gradcam"),
        lime_samples=200,
        filters_first=8,
        filters_last=8,
        filter_steps=24,
        examples=3,
        dream_octaves=2,
        dream_steps=8,
        dream_every=4,
        trust_images=8,
        trust_steps=10,
        trust_methods=("saliency", "gradcam"),
    ),
}


# ---- timing ---------------------------------------------------------------------------------------


def record_timing(run_dir: str | Path, stage: str, seconds: float, cpu_seconds: float | None = None) -> None:
    """Add ``stage`` to ``RUN/timings.json`` (``{stage: {"wall_s": .., "cpu_s": ..}}``, in stage order)."""
    p = Path(run_dir) / "timings.json"
    d = read_json(p) if p.exists() else {}
    d.pop(stage, None)
    d[stage] = {"wall_s": round(seconds, 2)} | (
        {} if cpu_seconds is None else {"cpu_s": round(cpu_seconds, 2)}
    )
    write_json(p, d)


@contextmanager
def timed(run_dir: str | Path, stage: str) -> Iterator[None]:
    """Record the wall and CPU (this process) time of the block as ``stage``, also when it fails."""
    t0, c0 = time.perf_counter(), time.process_time()
    done = False
    try:
        yield
        done = True
    finally:
        try:
            record_timing(run_dir, stage, time.perf_counter() - t0, time.process_time() - c0)
        except OSError as e:
            if done:
                raise
            # the block's own error (e.g. a full disk) is the one to report, not this follow-up
            log.warning("could not record the time of %s: %s", stage, e)


# ---- evaluate, model, data -----------------------------------------------------------------------


def evaluate_run(
    run: Run, split: str = "test", progress: Progress = None, tta: str | None = None
) -> EvalResult:
    """Evaluate a run's model on ``split`` and write ``RUN/eval/`` (``RUN/eval/tta-<mode>/`` with TTA)."""
    with timed(run.path, "evaluate"):
        res = evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std, progress=progress, tta=tta)
        sub = run.path / "eval" if tta in (None, "none") else run.path / "eval" / f"tta-{tta}"
        write_eval(res, sub, run.dataset.ids)
    log.info("test accuracy %.4f on %d images", res.accuracy, len(res.labels))
    return res


def summarize_run(run: Run) -> dict[str, Any]:
    """The layer table of the run's model: ``RUN/model/summary.json`` and ``summary.csv``."""
    from .models.summary import summarize

    with timed(run.path, "model summary"):
        s = summarize(run.model, run.input_shape)
        s.to_json(run.path / "model" / "summary.json")
        s.to_csv(run.path / "model" / "summary.csv")
    return s.to_dict()


def describe_data(run: Run, per_class: int = 8, seed: int = 0) -> dict[str, Any]:
    """Images per class and split (``RUN/data/counts.json`` + ``counts.csv``) and a seeded choice of
    sample images per class (``RUN/data/samples.json``, dataset indices from the train split)."""
    from .data.samples import pick_samples

    with timed(run.path, "data"):
        ds = run.dataset
        counts = ds.counts()
        splits = list(ds.splits)
        unlabeled = {s: int((ds.labels[ds.splits[s]] < 0).sum()) for s in splits}
        info = {
            "name": ds.name,
            "source": str(ds.source),
            "classes": list(ds.classes),
            "splits": splits,
            "counts": {s: [int(v) for v in counts[s]] for s in splits},
            "unlabeled": unlabeled,
            "size": {s: len(ds.splits[s]) for s in splits},
            "shape": [ds.channels, *ds.size],
            "mean": list(ds.mean),
            "std": list(ds.std),
            "skipped": len(ds.skipped),
        }
        out = run.path / "data"
        write_json(out / "counts.json", info)
        rows = [
            [c, *[info["counts"][s][k] for s in splits], sum(info["counts"][s][k] for s in splits)]
            for k, c in enumerate(ds.classes)
        ]
        write_csv(out / "counts.csv", ["class", *splits, "total"], rows)
        split = "train" if "train" in ds.splits else None
        samples = [{"class": c, "indices": idx} for c, idx in pick_samples(ds, per_class, split, seed)]
        write_json(
            out / "samples.json", {"split": split, "seed": seed, "per_class": per_class, "rows": samples}
        )
    return info


# ---- explanations ---------------------------------------------------------------------------------


def correct_per_class(res: EvalResult, per_class: int = 1) -> list[int]:
    """Up to ``per_class`` correctly classified images of each class (dataset indices), in split order:
    :func:`cnnlens.explain.select_per_class` on the labels of the images the model got right."""
    from .explain.batch import select_per_class

    right = torch.where(res.labels == res.preds, res.labels, torch.full_like(res.labels, -1))
    return [int(i) for i in res.indices[select_per_class(right, per_class)]]


def explain_run(
    run: Run,
    methods: list[str],
    indices: list[int] | None = None,
    per_class: int = 1,
    target: str | int = "pred",
    split: str = "test",
    progress: Progress = None,
    result: EvalResult | None = None,
    layer: str | None = None,
) -> dict[str, Any]:
    """Explain chosen images of a run with each method (``layer``: the CAM layer, default the last conv);
    writes ``RUN/explain/`` (one ``<method>.npy`` per method, ``explanations.json`` and ``grid.png``).
    Images default to ``per_class`` correctly classified images per class of ``split`` (from ``result``
    when given, else evaluated here). Returns the JSON index."""
    from .explain.batch import explain_images
    from .report.fig_explain import explanation_grid

    with timed(run.path, "explain"):
        for m in methods:
            METHODS.get(m)  # unknown names fail before any work, listing the valid ones
        ds = run.dataset
        if indices is None:
            indices = correct_per_class(
                result if result is not None else _load_or_evaluate(run, split), per_class
            )
        if not indices:
            raise CnnlensError("no images to explain (no correctly classified image in the split?)")
        n = len(ds)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise CnnlensError(f"image index {bad[0]} is out of range: the dataset has {n} images (0..{n - 1})")
        idx = torch.as_tensor(indices)
        labels = ds.labels[idx]
        tgt: Any = int(target) if isinstance(target, str) and target.isdigit() else target
        if tgt == "label" and (labels < 0).any():
            raise CnnlensError("target 'label' needs labeled images; some chosen images are unlabeled")
        results = explain_images(
            run.model,
            ds.images[idx],
            run.mean,
            run.std,
            methods,
            targets=tgt,
            labels=labels,
            out_dir=run.path / "explain",
            classes=ds.classes,
            indices=indices,
            progress=progress,
            layer=layer,
        )
        titles = [f"#{i} true: {ds.classes[int(k)] if 0 <= int(k) < len(ds.classes) else int(k)}"
                  for i, k in zip(indices, labels.tolist())]
        explanation_grid(ds.images[idx], results, titles, run.path / "explain" / "grid.png",
                         classes=ds.classes)
    return read_json(run.path / "explain" / "explanations.json")


def explain_confused(
    run: Run,
    result: EvalResult,
    methods: list[str] | tuple[str, ...],
    pairs: int = 3,
    per_pair: int = 2,
    progress: Progress = None,
) -> dict[str, Any] | None:
    """The ``pairs`` most-confused (true A, predicted B) pairs: up to ``per_pair`` test images of A taken
    for B, each explained by every method for A and for B. Writes ``RUN/explain/confused/``:
    ``<method>_true.npy`` / ``<method>_pred.npy`` (``float32 [N, H, W]``) and ``confused.json``.
    Returns the JSON, or ``None`` when the model made no mistake."""
    from .explain.batch import _file_name, explain_confused_pairs
    from .report.fig_explain import confused_pairs_figure

    with timed(run.path, "explain confused pairs"):
        top = result.confused_pairs(pairs)
        if not top:
            log.info("no misclassified test image: no confused pairs to explain")
            return None
        chosen: list[int] = []  # positions in the split
        for p in top:
            hit = ((result.labels == p["true_index"]) & (result.preds == p["pred_index"])).nonzero().view(-1)
            chosen += hit[:per_pair].tolist()
        pos = torch.as_tensor(chosen)
        indices = result.indices[pos]
        ds = run.dataset
        images = ds.images[indices]
        lab, pred = result.labels[pos], result.preds[pos]
        out = run.path / "explain" / "confused"
        meta: dict[str, Any] = {
            "pairs": top,
            "per_pair": per_pair,
            "indices": indices.tolist(),
            "labels": lab.tolist(),
            "predicted": pred.tolist(),
            "p_true": result.probs[pos].gather(1, lab.view(-1, 1)).view(-1).tolist(),
            "p_pred": result.probs[pos].gather(1, pred.view(-1, 1)).view(-1).tolist(),
            "probs": result.probs[pos].tolist(),
            "classes": list(ds.classes),
            "methods": {},
        }
        for k, m in enumerate(methods):
            name = _file_name(m)
            res = explain_confused_pairs(
                run.model,
                images,
                run.mean,
                run.std,
                lab,
                pred,
                [(p["true_index"], p["pred_index"]) for p in top],
                method=m,
                per_pair=len(chosen),
            )
            if res is None:  # cannot happen: every chosen image matches its pair
                raise RuntimeError("confused-pair selection found no image")
            at, ea, eb = res
            titles = [f"#{i}: {ds.classes[int(lab[i])]} → {ds.classes[int(pred[i])]}" for i in at]
            confused_pairs_figure(images[at], ea, eb, ds.classes, out / f"{name}.png", row_titles=titles)
            _save_npy(out / f"{name}_true.npy", ea.maps)
            _save_npy(out / f"{name}_pred.npy", eb.maps)
            meta["methods"][m] = {
                "true": f"{name}_true.npy",
                "pred": f"{name}_pred.npy",
                "signed": ea.signed,
                "layer": ea.layer,
            }
            if progress:
                progress(k + 1, len(methods))
        write_json(out / "confused.json", meta)
    return meta


def explain_lime(
    run: Run,
    result: EvalResult,
    per_class: int = 1,
    n_samples: int = 1000,
    seed: int = 0,
    progress: Progress = None,
) -> dict[str, Any]:
    """LIME (superpixels) for ``per_class`` correctly classified test images of each class, for the
    predicted class. Writes ``RUN/explain/lime/``: ``lime.npy`` (``float32 [N, H, W]`` pixel maps),
    ``segments.npy`` (``int32 [N, H, W]`` superpixel labels), ``lime.json`` (indices, per-image
    superpixel weights, intercept, weighted R^2 of the surrogate, settings)."""
    from .explain.batch import explain_images

    with timed(run.path, "lime"):
        indices = correct_per_class(result, per_class)
        if not indices:
            raise CnnlensError("no correctly classified test image to explain with LIME")
        ds = run.dataset
        idx = torch.as_tensor(indices)
        exp = explain_images(
            run.model,
            ds.images[idx],
            run.mean,
            run.std,
            ["lime"],
            method_options={"lime": {"n_samples": n_samples, "seed": seed, "mean": run.mean, "std": run.std}},
            progress=progress,
        )["lime"]
        out = run.path / "explain" / "lime"
        _save_npy(out / "lime.npy", exp.maps)
        _save_npy(out / "segments.npy", exp.extras["segments"].to(torch.int32))
        ex = exp.extras
        meta = {
            "indices": indices,
            "labels": ds.labels[idx].tolist(),
            "targets": exp.targets.tolist(),
            "probs": exp.probs.gather(1, exp.targets.view(-1, 1)).view(-1).tolist(),
            "classes": list(ds.classes),
            "n_samples": n_samples,
            "seed": seed,
            "weights": [w.tolist() for w in ex["weights"]],
            "n_segments": list(ex["n_segments"]),
            "intercept": _list(ex.get("intercept")),
            "score": _list(ex.get("score")),
            "segmentation": "slic",
            "grid_fallback": _list(ex.get("grid_fallback")),
            "output": ex.get("output", "prob"),
        }
        write_json(out / "lime.json", meta)
    return meta


# ---- feature visualization ------------------------------------------------------------------------


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's ``Conv2d`` layers, in definition order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def featureviz_run(
    run: Run, result: EvalResult, sizes: StageSizes, progress: Progress = None
) -> dict[str, Any] | None:
    """Filters of the first and last conv layers (activation maximization beside their top train
    patches), every feature map of both layers for one correctly classified test image, and a Deep
    Dream progression on that image at the last conv layer. Writes ``RUN/featureviz/`` and its index
    ``featureviz.json``. Returns ``None`` (writing nothing) for a model without conv layers."""
    from .featureviz.runs import dream_run, featuremaps_run, filters_run

    convs = conv_layers(run.model)
    if not convs:
        log.info("no Conv2d layer: nothing for feature visualization")
        return None
    with timed(run.path, "featureviz"):
        layers = [convs[0]] if len(convs) == 1 else [convs[0], convs[-1]]
        limits = [sizes.filters_first, sizes.filters_last]
        picked = correct_per_class(result, 1)
        image = picked[0] if picked else int(result.indices[0])
        index: dict[str, Any] = {
            "layers": layers,
            "image": image,
            "filters": [],
            "featuremaps": [],
            "dream": None,
        }
        total = 2 * len(layers) + 1
        done = 0
        for layer, lim in zip(layers, limits):
            k = run.model.get_submodule(layer).out_channels
            chans = None if lim is None or lim >= k else list(range(lim))
            index["filters"].append(
                filters_run(run, layer, chans, steps=sizes.filter_steps, examples=sizes.examples)
            )
            done += 1
            if progress:
                progress(done, total)
            index["featuremaps"].append(featuremaps_run(run, layer, image))
            done += 1
            if progress:
                progress(done, total)
        index["dream"] = dream_run(
            run,
            image,
            layers[-1],
            None,
            steps=sizes.dream_steps,
            every=sizes.dream_every,
            octaves=sizes.dream_octaves,
        )
        if progress:
            progress(total, total)
        write_json(run.path / "featureviz" / "featureviz.json", index)
    return index


# ---- trust ----------------------------------------------------------------------------------------


def trust_run(
    run: Run,
    methods: list[str] | tuple[str, ...],
    n_images: int = 32,
    steps: int = 50,
    progress: Progress = None,
) -> dict[str, Any]:
    """The trust protocol (:func:`cnnlens.metrics.run_trust`) on ``n_images`` test images: writes
    ``RUN/trust/scores.json``, ``table.csv`` and ``randomization.png``. Returns the scores JSON."""
    from .metrics import run_trust

    with timed(run.path, "trust"):
        ds = run.dataset
        if tuple(ds.mean) != tuple(run.mean) or tuple(ds.std) != tuple(run.std):
            ds = replace(ds, mean=run.mean, std=run.std)  # normalize exactly as the model was trained
        n = min(n_images, len(ds.indices("test")))
        run_trust(
            run.model,
            ds,
            list(methods),
            n_images=n,
            out_dir=run.path / "trust",
            steps=steps,
            progress=progress,
        )
    return read_json(run.path / "trust" / "scores.json")


# ---- all of them ----------------------------------------------------------------------------------

STAGES = ("explain", "confused", "lime", "featureviz", "trust")
"""The analysis stages :func:`analyze` runs (and can skip), in order."""
OUTPUTS = (
    "eval",
    "explain",
    "featureviz",
    "trust",
    "compare",
    "data",
    "model",
    "report",
    "timings.json",
    "stages.json",
)
"""What the stages after training write into a run directory (and :func:`reset_outputs` removes)."""

ProgressFor = Callable[[str], Any]  # label -> context manager yielding a (done, total) callback


def analyze(
    run: Run,
    result: EvalResult,
    sizes: StageSizes,
    progress_for: ProgressFor | None = None,
    skip: tuple[str, ...] = (),
) -> list[str]:
    """Every stage after evaluation, in report order: model summary, data, per-class explanations,
    confused pairs, LIME, feature visualization, trust. ``progress_for(label)`` (e.g. the CLI's
    progress bar) gives each long stage a ``(done, total)`` callback; ``skip`` names stages to leave
    out (``"explain"``, ``"confused"``, ``"lime"``, ``"featureviz"``, ``"trust"``). Returns the stages run."""
    bad = [s for s in skip if s not in STAGES]
    if bad:
        raise CnnlensError(f"unknown stage {bad[0]!r} in skip; stages: {', '.join(STAGES)}")

    @contextmanager
    def bar(label: str) -> Iterator[Progress]:
        if progress_for is None:
            yield None
        else:
            with progress_for(label) as cb:
                yield cb

    done = ["model summary", "data"]
    summarize_run(run)
    describe_data(run)
    if "explain" not in skip:
        with bar("explaining (per class)") as cb:
            explain_run(run, list(sizes.methods), per_class=sizes.per_class, progress=cb, result=result)
        done.append("explain")
    if "confused" not in skip:
        with bar("explaining confused pairs") as cb:
            explain_confused(run, result, sizes.confused_methods, sizes.confused_pairs, sizes.per_pair, cb)
        done.append("confused")
    if "lime" not in skip:
        with bar("LIME") as cb:
            explain_lime(run, result, sizes.per_class, sizes.lime_samples, progress=cb)
        done.append("lime")
    if "featureviz" not in skip:
        with bar("feature visualization") as cb:
            featureviz_run(run, result, sizes, cb)
        done.append("featureviz")
    if "trust" not in skip:
        with bar("trust scores") as cb:
            trust_run(run, sizes.trust_methods, sizes.trust_images, sizes.trust_steps, cb)
        done.append("trust")
    write_json(run.path / "stages.json", {"sizes": sizes.to_dict(), "stages": done})
    return done


def reset_outputs(run_dir: str | Path) -> list[str]:
    """Remove what the stages after training wrote into ``run_dir`` (:data:`OUTPUTS`; nothing else),
    so that a retrained model's report cannot mix in numbers of the previous one. Returns what was removed."""
    import shutil

    removed = []
    for name in OUTPUTS:
        p = Path(run_dir) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
            removed.append(name)
        elif p.exists() or p.is_symlink():
            p.unlink()
            removed.append(name)
    if removed:
        log.info("removed stale outputs of an earlier model: %s", ", ".join(removed))
    return removed


# ---- helpers --------------------------------------------------------------------------------------


def _load_or_evaluate(run: Run, split: str) -> EvalResult:
    return evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std)


def _save_npy(path: Path, t: torch.Tensor) -> Path:
    return write_npy(path, t.float() if t.is_floating_point() else t)


def _list(v: Any) -> list[float] | None:
    if v is None:
        return None
    return torch.as_tensor(v).view(-1).tolist()
