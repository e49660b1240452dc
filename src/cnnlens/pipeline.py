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
only reads what these stages wrote. Every file goes through its record (:mod:`cnnlens.rundir`): a
stage computes, the function here turns the result into records and saves them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .evaluate import EvalResult, evaluate
from .explain.core import METHODS
from .rundir import (AttributionRegions, ConfusedMaps, DataCounts, DataSamples, DeviceRecord, ExplainMaps,
                     FeaturevizIndex,
                     LimeMaps, ModelSummaryFile, StagesRecord, Timings, TrustScores, file_name, save_eval,
                     save_viz)
from .train import Run
from .errors import CnnlensError
from .explain.explore import ExploreConfig
from .explore_stage import explore_run  # noqa: F401  (the explore stage, re-exported)

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
        per_class: correctly classified images per class (of the evaluated split) for ``methods`` and LIME.
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
    t = Timings.load(run_dir)
    t.add(stage, seconds, cpu_seconds)
    t.save(run_dir)


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


def _record_timing(run_dir: Path, stage: str, seconds: float) -> None:  # kept for older callers
    record_timing(run_dir, stage, seconds)


# ---- evaluate, model, data -----------------------------------------------------------------------


def evaluate_run(
    run: Run, split: str | None = None, progress: Progress = None, tta: str | None = None
) -> EvalResult:
    """Evaluate a run's model on ``split`` and write ``RUN/eval/`` (``RUN/eval/tta-<mode>/`` with TTA).
    ``split=None``: ``test`` when it is labeled, else the labeled hold-out ``val``
    (:func:`cnnlens.data.splits.label_split`, which logs why)."""
    from .data.splits import label_split

    split = label_split(run.dataset, split)
    with timed(run.path, "evaluate"):
        res = evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std, progress=progress, tta=tta)
        save_eval(res, run.path, run.dataset.ids, tta)
    log.info("%s accuracy %.4f on %d %s images", split, res.accuracy, len(res.labels), split)
    return res


def summarize_run(run: Run) -> dict[str, Any]:
    """The layer table of the run's model: ``RUN/model/summary.json`` and ``summary.csv``."""
    from .models.summary import summarize

    with timed(run.path, "model summary"):
        rec = ModelSummaryFile.from_summary(summarize(run.model, run.input_shape))
        rec.save(run.path)
    return rec.to_dict()


def describe_data(run: Run, per_class: int = 8, seed: int = 0) -> dict[str, Any]:
    """Images per class and split (``RUN/data/counts.json`` + ``counts.csv``) and a seeded choice of
    sample images per class (``RUN/data/samples.json``, dataset indices from the train split)."""
    from .report.fig_data import pick_samples

    with timed(run.path, "data"):
        ds = run.dataset
        counts = DataCounts.from_dataset(ds, run.normalization)
        counts.save(run.path)
        split = "train" if "train" in ds.splits else None
        samples = [{"class": c, "indices": idx} for c, idx in pick_samples(ds, per_class, split, seed)]
        DataSamples(split=split, seed=seed, per_class=per_class, rows=samples).save(run.path)
    return counts.to_dict()


# ---- explanations ---------------------------------------------------------------------------------


def select_per_class(res: EvalResult, per_class: int = 1) -> list[int]:
    """Up to ``per_class`` correctly classified images of each class (dataset indices), in split order."""
    chosen: list[int] = []
    for k in range(len(res.classes)):
        ok = torch.nonzero((res.labels == k) & (res.preds == k)).flatten()[:per_class]
        chosen += [int(res.indices[i]) for i in ok]
    return chosen


def explain_run(
    run: Run,
    methods: list[str],
    indices: list[int] | None = None,
    per_class: int = 1,
    target: str | int = "pred",
    split: str | None = None,
    progress: Progress = None,
    result: EvalResult | None = None,
    layer: str | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Explain chosen images of a run with each method (``layer``: the CAM layer, default the last conv;
    ``method_options``: per-method options, e.g. ``{"guided_backprop": {"force": True}}``);
    writes ``RUN/explain/`` (:class:`ExplainMaps`: one ``<method>.npy`` per method and
    ``explanations.json``; :class:`AttributionRegions`: where each map's mass falls; ``grid.png``).
    Images default to ``per_class`` correctly classified images per class of ``split`` (from ``result``
    when given, else evaluated here; ``None``: test if labeled, else val). The JSON index also records
    how the images were chosen (``selection``: ``"correct"`` or ``"given"``), the split of each image
    (``splits``) and the ``target``. Returns the JSON index."""
    from .data.splits import split_of
    from .explain.batch import explain_images
    from .report.fig_explain import explanation_grid

    with timed(run.path, "explain"):
        for m in methods:
            METHODS.get(m)  # unknown names fail before any work, listing the valid ones
        ds = run.dataset
        selection = "given" if indices is not None else "correct"
        if indices is None:
            res = result if result is not None else _load_or_evaluate(run, split)
            indices = select_per_class(res, per_class)
            if not indices:
                raise CnnlensError(f"no correctly classified image in the {res.split} split to explain; "
                                   "choose images with --images, or train the model further")
        if not indices:
            raise CnnlensError("no images to explain: the list of image indices is empty")
        n = len(ds)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise CnnlensError(f"image index {bad[0]} is out of range: the dataset has {n} images (0..{n - 1})")
        idx = torch.as_tensor(indices)
        labels = ds.labels[idx]
        tgt: Any = int(target) if isinstance(target, str) and target.isdigit() else target
        if tgt == "label" and (labels < 0).any():
            raise CnnlensError("target 'label' needs labeled images; some chosen images are unlabeled")
        notes: list[str] = []  # zero maps, a coarse CAM layer (logged as warnings, kept for the report)
        results = explain_images(
            run.model, ds.images[idx], run.mean, run.std, methods, targets=tgt, labels=labels,
            progress=progress, layer=layer, method_options=method_options, indices=indices, notes_out=notes,
        )
        rec = ExplainMaps.from_explanations(results, indices, labels, ds.classes, notes=notes,
                                            selection=selection, splits=split_of(ds, indices), target=str(target))
        rec.save(run.path)
        AttributionRegions.from_maps(rec).save(run.path)
        k, out = len(ds.classes), run.path / "explain"
        titles = [f"#{i} true: {ds.classes[lb] if 0 <= lb < k else lb}" if lb >= 0 else f"#{i}"
                  for i, lb in zip(indices, labels.tolist())]
        explanation_grid(ds.images[idx], results, titles, out / "grid.png", classes=ds.classes)
        log.info("wrote %d method(s) for %d image(s) to %s", len(results), len(indices), out)
    return rec.to_dict()


def explain_confused(
    run: Run,
    result: EvalResult,
    methods: list[str] | tuple[str, ...],
    pairs: int = 3,
    per_pair: int = 2,
    progress: Progress = None,
) -> dict[str, Any] | None:
    """The ``pairs`` most-confused (true A, predicted B) pairs: up to ``per_pair`` images of A (of the
    evaluated split) taken for B, each explained by every method for A and for B. Writes
    ``RUN/explain/confused/``: ``<method>_true.npy`` / ``<method>_pred.npy`` (``float32 [N, H, W]``) and
    ``confused.json`` (:class:`ConfusedMaps`). Returns the JSON, or ``None`` when the model made no mistake."""
    from .explain.batch import explain_confused_pairs

    with timed(run.path, "explain confused pairs"):
        top = result.confused_pairs(pairs)
        if not top:
            log.info("no misclassified %s image: no confused pairs to explain", result.split)
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
        rec = ConfusedMaps(
            pairs=top,
            per_pair=per_pair,
            indices=indices.tolist(),
            labels=lab.tolist(),
            predicted=pred.tolist(),
            p_true=result.probs[pos].gather(1, lab.view(-1, 1)).view(-1).tolist(),
            p_pred=result.probs[pos].gather(1, pred.view(-1, 1)).view(-1).tolist(),
            probs=result.probs[pos].tolist(),
            classes=list(ds.classes),
            methods={},
            split=result.split,
        )
        for k, m in enumerate(methods):
            name = file_name(m)
            res = explain_confused_pairs(
                run.model,
                images,
                run.mean,
                run.std,
                lab,
                pred,
                [(p["true_index"], p["pred_index"]) for p in top],
                ds.classes,
                out / f"{name}.png",
                method=m,
                per_pair=len(chosen),
            )
            if res is None:  # cannot happen: every chosen image matches its pair
                raise RuntimeError("confused-pair selection found no image")
            rec.add(m, *res)
            if progress:
                progress(k + 1, len(methods))
        rec.save(run.path)
    return rec.to_dict()


def explain_lime(
    run: Run,
    result: EvalResult,
    per_class: int = 1,
    n_samples: int = 1000,
    seed: int = 0,
    progress: Progress = None,
) -> dict[str, Any]:
    """LIME (superpixels) for ``per_class`` correctly classified images of each class (of the evaluated
    split), for the predicted class. Writes ``RUN/explain/lime/`` (:class:`LimeMaps`): ``lime.npy``
    (``float32 [N, H, W]`` pixel maps), ``segments.npy`` (``int32 [N, H, W]`` superpixel labels),
    ``lime.json`` (indices, per-image superpixel weights, intercept, weighted R^2 of the surrogate,
    every setting it ran with, the split)."""
    from .explain.batch import explain_images

    with timed(run.path, "lime"):
        indices = select_per_class(result, per_class)
        if not indices:
            raise CnnlensError(f"no correctly classified {result.split} image to explain with LIME")
        ds = run.dataset
        idx = torch.as_tensor(indices)
        options = {"n_samples": n_samples, "seed": seed, "mean": run.mean, "std": run.std}
        exp = explain_images(
            run.model,
            ds.images[idx],
            run.mean,
            run.std,
            ["lime"],
            method_options={"lime": options},
            progress=progress,
        )["lime"]
        ex = exp.extras
        settings = method_settings("lime", options)
        rec = LimeMaps(
            indices=indices,
            labels=ds.labels[idx].tolist(),
            targets=exp.targets.tolist(),
            probs=exp.probs.gather(1, exp.targets.view(-1, 1)).view(-1).tolist(),
            classes=list(ds.classes),
            n_samples=n_samples,
            seed=seed,
            weights=[w.tolist() for w in ex["weights"]],
            n_segments=list(ex["n_segments"]),
            intercept=_list(ex.get("intercept")),
            score=_list(ex.get("score")),
            segmentation=settings.get("segmentation"),
            grid_fallback=_list(ex.get("grid_fallback")),
            output=ex.get("output", "prob"),
            settings=settings,
            split=result.split,
            maps=exp.maps.float().numpy(),
            segments=exp.extras["segments"].to(torch.int32).numpy(),
        )
        rec.save(run.path)
    return rec.to_dict()


def method_settings(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Every plain (str, number, bool) option ``method`` runs with: its signature's defaults
    overridden by ``options`` (dataset statistics and tensors left out), so records name them."""
    import inspect

    plain = (str, int, float, bool, type(None))
    sig = inspect.signature(METHODS.get(method).attribute)
    out = {k: p.default for k, p in sig.parameters.items()
           if p.default is not inspect.Parameter.empty and isinstance(p.default, plain)}
    out.update({k: v for k, v in options.items() if isinstance(v, plain)})
    return {k: v for k, v in out.items() if k not in ("mean", "std", "batch_size")}


# ---- feature visualization ------------------------------------------------------------------------


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's ``Conv2d`` layers, in definition order."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def transformer_notes(model: nn.Module, convs: list[str]) -> list[str]:
    """Why a transformer's blocks are not among the visualized layers (they are not ``Conv2d``)."""
    attn = [type(m).__name__ for m in model.modules() if "attention" in type(m).__name__.lower()]
    if not attn:
        return []
    return [f"Feature visualization shows Conv2d layers; in this {type(model).__name__} they are "
            f"{', '.join(convs)} (the patch embedding), so its {len(attn)} attention blocks ({attn[0]}) and "
            "their channels are not visualized here."]


def featureviz_run(
    run: Run, result: EvalResult, sizes: StageSizes, progress: Progress = None
) -> dict[str, Any] | None:
    """Filters of the first and last conv layers (activation maximization beside their top train
    patches), every feature map of both layers for one correctly classified image of the evaluated
    split, and a Deep Dream progression on that image at the last conv layer. Writes
    ``RUN/featureviz/`` and its index ``featureviz.json``. Returns ``None`` (writing nothing) for a model without conv layers."""
    from .featureviz.runs import dream_run, featuremaps_run, filters_run

    convs = conv_layers(run.model)
    if not convs:
        log.info("no Conv2d layer: nothing for feature visualization")
        return None
    with timed(run.path, "featureviz"):
        layers = [convs[0]] if len(convs) == 1 else [convs[0], convs[-1]]
        limits = [sizes.filters_first, sizes.filters_last]
        picked = select_per_class(result, 1)
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
            index["filters"].append(save_viz(
                run.path, filters_run(run, layer, chans, steps=sizes.filter_steps, examples=sizes.examples)
            ))
            done += 1
            if progress:
                progress(done, total)
            index["featuremaps"].append(save_viz(run.path, featuremaps_run(run, layer, image)))
            done += 1
            if progress:
                progress(done, total)
        index["notes"] = transformer_notes(run.model, convs)
        try:
            index["dream"] = save_viz(run.path, dream_run(
                run,
                image,
                layers[-1],
                None,
                steps=sizes.dream_steps,
                every=sizes.dream_every,
                octaves=sizes.dream_octaves,
            ))
        except CnnlensError as e:  # e.g. a ViT/Swin that takes only its own input size
            log.warning("Deep Dream left out: %s", e)
            index["notes"].append(f"Deep Dream is left out: it runs the model at smaller octave sizes, "
                                  f"and {e}")
        if progress:
            progress(total, total)
        FeaturevizIndex.from_dict(index).save(run.path)
    return index


# ---- trust ----------------------------------------------------------------------------------------


def trust_run(
    run: Run,
    methods: list[str] | tuple[str, ...] | None,
    n_images: int = 32,
    steps: int = 50,
    progress: Progress = None,
    split: str | None = None,
    *,
    devices: int | str | None = None,
    strategy: str | None = None,
    accelerator: str | None = None,
    num_nodes: int | None = None,
    **options: Any,
) -> Any:
    """The trust protocol (:func:`cnnlens.metrics.run_trust`) on ``n_images`` images of ``split``
    (``None``: test if labeled, else val; fewer when it is smaller; ``options``: any other
    :func:`run_trust` keyword, e.g. ``seed``, ``substrate``, ``cascade``, ``independent``,
    ``max_cost``). With ``devices``/``strategy``/``accelerator``/``num_nodes`` the images are split across processes (:func:`trust_dataset`).
    Writes ``RUN/trust/`` (:class:`TrustScores`: ``scores.json``, ``table.csv``; ``randomization.png``);
    like ``cnnlens trust``, it records no timing (:func:`analyze` times it as the stage ``trust``).
    Returns the :class:`cnnlens.metrics.TrustReport`, or ``None`` in a data-parallel process other
    than global rank 0 (rank 0 gathers and writes)."""
    from .data.splits import label_split
    from .metrics import run_trust, trust_dataset

    ds = run.dataset  # normalized as the model expects (model.json)
    split = label_split(ds, split)
    n = min(n_images, len(ds.indices(split)))
    methods = None if methods is None else list(methods)
    if any(v is not None for v in (devices, strategy, accelerator, num_nodes)):
        rep = trust_dataset(run.model, ds, methods, n_images=n, steps=steps,
                            shard_dir=run.path / "trust" / ".shards", accelerator=accelerator or "auto",
                            devices=devices or 1, strategy=strategy or "auto", num_nodes=num_nodes or 1,
                            split=split, **options)
        if rep is None:  # another rank: global rank 0 gathers and writes everything
            return None
    else:
        rep = run_trust(run.model, ds, methods, n_images=n, steps=steps, progress=progress, split=split,
                        **options)
    save_trust(run, rep)
    return rep


def save_trust(run: Run, report: Any) -> None:
    """``RUN/trust/``: the record of a :class:`TrustReport` and its cascading-randomization figure."""
    from .report.fig_trust import plot_trust

    TrustScores.from_report(report).save(run.path)
    plot_trust(report, run.path / "trust")


# ---- submission -----------------------------------------------------------------------------------

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
    from .predict import predict

    out = run.path / SUBMISSION
    with timed(run.path, "submission"):
        pred = predict(run, ds, "test", progress=progress, out=out)
    log.info("wrote the submission file %s: %d rows (%s,label) for the unlabeled test split", out, len(pred),
             pred.key)
    return out


# ---- all of them ----------------------------------------------------------------------------------

STAGES = ("explain", "confused", "lime", "explore", "featureviz", "trust")
"""The analysis stages :func:`analyze` runs (and can skip), in order."""
OUTPUTS = (
    "eval",
    "explain",
    "explore",
    "featureviz",
    "trust",
    "compare",
    "data",
    "model",
    "report",
    "timings.json",
    "stages.json",
    "device.json",
    "submission.csv",
    "submission.skipped.csv",
)
"""What the stages after training write into a run directory (and :func:`reset_outputs` removes)."""

ProgressFor = Callable[[str], Any]  # label -> context manager yielding a (done, total) callback


def analyze(
    run: Run,
    result: EvalResult,
    sizes: StageSizes,
    progress_for: ProgressFor | None = None,
    skip: tuple[str, ...] = (),
    explore: Any = None,
) -> list[str]:
    """Every stage after evaluation, in report order: model summary, data, per-class explanations,
    confused pairs, LIME, feature visualization, trust. ``progress_for(label)`` (e.g. the CLI's
    progress bar) gives each long stage a ``(done, total)`` callback; ``skip`` names stages to leave
    out (``"explain"``, ``"confused"``, ``"lime"``, ``"explore"``, ``"featureviz"``, ``"trust"``);
    ``explore``: the explorer's :class:`~cnnlens.explain.explore.ExploreConfig` (``False``: left out).
    Returns the stages run."""
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
    from .device import device_record
    from .explain.core import model_device

    DeviceRecord(**device_record(model_device(run.model))).save(run.path)  # RUN/device.json: the report names it
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
    if "explore" not in skip and ExploreConfig.of(explore).enabled:  # after explain/lime: their images too
        with bar("explore (maps for the report's explorer)") as cb:
            explore_run(run, result, explore, progress=cb)
        done.append("explore")
    if "featureviz" not in skip:
        with bar("feature visualization") as cb:
            featureviz_run(run, result, sizes, cb)
        done.append("featureviz")
    if "trust" not in skip:
        with bar("trust scores") as cb, timed(run.path, "trust"):
            trust_run(run, sizes.trust_methods, sizes.trust_images, sizes.trust_steps, cb, split=result.split)
        done.append("trust")
    StagesRecord(sizes=sizes.to_dict(), stages=done).save(run.path)
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


def _load_or_evaluate(run: Run, split: str | None) -> EvalResult:
    from .data.splits import label_split

    split = label_split(run.dataset, split)
    return evaluate(run.model, run.dataset, split, mean=run.mean, std=run.std)


def _list(v: Any) -> list[float] | None:
    if v is None:
        return None
    return torch.as_tensor(v).view(-1).tolist()
