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
stage computes, the stage function turns the result into records and saves them. The stage functions
live one family per module in :mod:`cnnlens.stages` and are re-exported here; this module holds the
sizes, :func:`analyze` (every stage in order) and :func:`reset_outputs`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .evaluate import EvalResult
from .rundir import DeviceRecord, StagesRecord
from .train import Run
from .errors import CnnlensError
# the stages, one module each (cnnlens.stages); their names stay importable from here
from .stages.basic import SUBMISSION, describe_data, evaluate_run, submission_run, summarize_run
from .stages.explain import correct_per_class, explain_confused, explain_lime, explain_run, method_settings
from .stages.featureviz import conv_layers, featureviz_run, transformer_notes
from .stages.timing import Progress, record_timing, timed
from .stages.trust import save_trust, trust_run
from .explain.explore import ExploreConfig
from .stages.explore import explore_run

__all__ = ["GRADIENT_CAM", "OUTPUTS", "SIZES", "STAGES", "SUBMISSION", "Progress", "ProgressFor", "StageSizes",
           "analyze", "conv_layers", "correct_per_class", "describe_data", "evaluate_run", "explain_confused",
           "explain_lime", "explain_run", "explore_run", "ExploreConfig", "featureviz_run", "method_settings",
           "record_timing", "reset_outputs", "save_trust", "submission_run", "summarize_run", "timed",
           "transformer_notes", "trust_run"]

log = logging.getLogger(__name__)

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
    notes: list[str] | tuple[str, ...] = (),
    explore: Any = None,
) -> list[str]:
    """Every stage after evaluation, in report order: model summary, data, per-class explanations,
    confused pairs, LIME, feature visualization, trust. ``progress_for(label)`` (e.g. the CLI's
    progress bar) gives each long stage a ``(done, total)`` callback; ``skip`` names stages to leave
    out (``"explain"``, ``"confused"``, ``"lime"``, ``"explore"``, ``"featureviz"``, ``"trust"``);
    ``explore``: the explorer's :class:`~cnnlens.explain.explore.ExploreConfig` (``False``: left out);
    ``notes``: what the caller left out of ``sizes`` and why (kept in ``explain/explanations.json``
    and ``stages.json``, so the report says it). Returns the stages run."""
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
    from .nn import model_device

    DeviceRecord(**device_record(model_device(run.model))).save(run.path)  # RUN/device.json: the report names it
    summarize_run(run)
    describe_data(run)
    if "explain" not in skip:
        with bar("explaining (per class)") as cb:
            explain_run(run, list(sizes.methods), per_class=sizes.per_class, progress=cb, result=result,
                        notes=notes)
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
    StagesRecord(sizes=sizes.to_dict(), stages=done, notes=list(notes)).save(run.path)
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
