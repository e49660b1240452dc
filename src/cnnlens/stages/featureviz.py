"""The feature-visualization stage (``RUN/featureviz/``): filters of the first and last conv
layers, their feature maps on one image, and a Deep Dream progression."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from torch import nn

from ..errors import CnnlensError
from ..evaluate import EvalResult
from ..rundir import FeaturevizIndex, save_viz
from ..train import Run
from .explain import correct_per_class
from .timing import Progress, timed

if TYPE_CHECKING:
    from ..pipeline import StageSizes

log = logging.getLogger("cnnlens.pipeline")


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
    from ..featureviz.runs import dream_run, featuremaps_run, filters_run

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
