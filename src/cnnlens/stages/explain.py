"""The explanation stages: per-class maps (``RUN/explain/``), the most-confused pairs
(``RUN/explain/confused/``) and LIME (``RUN/explain/lime/``). Each computes with
:mod:`cnnlens.explain`, saves its record (:mod:`cnnlens.rundir`) and draws its figures."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import CnnlensError
from ..evaluate import EvalResult
from ..explain.core import METHODS
from ..rundir import AttributionRegions, ConfusedMaps, ExplainMaps, LimeMaps, file_name
from ..train import Run
from .basic import load_or_evaluate
from .timing import Progress, timed

log = logging.getLogger("cnnlens.pipeline")


def correct_per_class(res: EvalResult, per_class: int = 1) -> list[int]:
    """Up to ``per_class`` correctly classified images of each class (dataset indices), in split order:
    :func:`cnnlens.explain.select_per_class` on the labels of the images the model got right."""
    from ..explain.batch import select_per_class

    right = torch.where(res.labels == res.preds, res.labels, torch.full_like(res.labels, -1))
    return [int(i) for i in res.indices[select_per_class(right, per_class)]]


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
    notes: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Explain chosen images of a run with each method (``layer``: the CAM layer, default the last conv;
    ``method_options``: per-method options, e.g. ``{"guided_backprop": {"force": True}}``);
    writes ``RUN/explain/`` (:class:`ExplainMaps`: one ``<method>.npy`` per method and
    ``explanations.json``; :class:`AttributionRegions`: where each map's mass falls; ``grid.png``).
    Images default to ``per_class`` correctly classified images per class of ``split`` (from ``result``
    when given, else evaluated here; ``None``: test if labeled, else val). The JSON index also records
    how the images were chosen (``selection``: ``"correct"`` or ``"given"``), the split of each image
    (``splits``) and the ``target``. Returns the JSON index."""
    from ..data.splits import split_of
    from ..explain.batch import explain_images
    from ..report.fig_explain import explanation_grid

    with timed(run.path, "explain"):
        for m in methods:
            METHODS.get(m)  # unknown names fail before any work, listing the valid ones
        ds = run.dataset
        selection = "given" if indices is not None else "correct"
        if indices is None:
            res = result if result is not None else load_or_evaluate(run, split)
            indices = correct_per_class(res, per_class)
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
        notes = list(notes)  # + zero maps, a coarse CAM layer (logged as warnings, kept for the report)
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
    from ..explain.batch import explain_confused_pairs
    from ..report.fig_explain import confused_pairs_figure

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
                method=m,
                per_pair=len(chosen),
            )
            if res is None:  # cannot happen: every chosen image matches its pair
                raise RuntimeError("confused-pair selection found no image")
            at, ea, eb = res
            titles = [f"#{i}: {ds.classes[int(lab[i])]} → {ds.classes[int(pred[i])]}" for i in at]
            confused_pairs_figure(images[at], ea, eb, ds.classes, out / f"{name}.png", row_titles=titles)
            rec.add(m, ea, eb)
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
    from ..explain.batch import explain_images

    with timed(run.path, "lime"):
        indices = correct_per_class(result, per_class)
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


def _list(v: Any) -> list[float] | None:
    if v is None:
        return None
    return torch.as_tensor(v).view(-1).tolist()
