"""The whole pipeline as Python calls: what ``cnnlens train``, ``cnnlens run``, ``cnnlens demo`` and
``cnnlens report`` do, without argparse.

    import cnnlens
    run = cnnlens.run("digits", "compact", out="runs/digits", epochs=12, sizes="demo")

:func:`run` trains, evaluates, trains the optional parameter-matched baseline, runs every analysis
stage (:func:`cnnlens.pipeline.analyze`) and writes the report, timing each stage into
``RUN/timings.json``; the CLI commands only turn flags into its arguments and print what it reports
through ``notify``. Layer: above :mod:`cnnlens.report` (it calls the page's renderer), below the CLI.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import RunConfig, load_config, recipe as recipe_config
from .errors import CnnlensError
from .pipeline import (SIZES, STAGES, ProgressFor, StageSizes, analyze, describe_data, evaluate_run,
                       record_timing, reset_outputs, summarize_run, timed)
from .rundir import AttributionRegions, ConfusedMaps, DataCounts, DataSamples, ExplainMaps, ModelSummaryFile
from .train import Run

log = logging.getLogger(__name__)

Notify = Callable[[str, Any], None]
"""``notify(event, value)``: ``("trained", Run)``, ``("evaluated", EvalResult)``,
``("compared", dict)`` (the baseline comparison), ``("submission", Path)`` (an unlabeled test split's
predictions) and ``("report", Path)``, as they happen."""


def slug(s: str) -> str:
    """A dataset SPEC or model name as a folder-name part (``fer2013:data/x.csv`` -> ``x``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(s).stem if "/" in s else s).strip("_") or "run"


def default_out(spec: str, model: str) -> Path:
    """The run directory ``cnnlens train``/``run`` use without ``--out``: ``runs/<data>-<model>``."""
    return Path(f"runs/{slug(spec)}-{slug(model)}")


def resolve_config(data: str | None = None, model: str | None = None, *, recipe: str | None = None,
                   config: str | os.PathLike[str] | RunConfig | None = None,
                   val_fraction: float | None = None, image_size: int | None = None,
                   skip_bad_rows: bool | None = None, seed: int | None = None) -> RunConfig:
    """The configuration ``cnnlens train``/``run`` resolve: a published ``recipe``, then ``config``
    (a YAML file or a :class:`RunConfig`), then the data and model arguments (``None``: keep)."""
    cfg = recipe_config(recipe) if recipe else RunConfig()
    if isinstance(config, RunConfig):
        cfg = config
    elif config:
        cfg = load_config(config, base=cfg)
    data_over = {"val_fraction": val_fraction, "image_size": image_size,
                 "skip_bad_rows": skip_bad_rows or None, "seed": seed}
    return cfg.replace(data={"spec": data or cfg.data.spec, **data_over},
                       model={"name": model or cfg.model.name})


def train_run(data: str | None = None, model: str | None = None, *, out: str | os.PathLike[str] | None = None,
              recipe: str | None = None, config: str | os.PathLike[str] | RunConfig | None = None,
              val_fraction: float | None = None, image_size: int | None = None,
              skip_bad_rows: bool | None = None, seed: int | None = None,
              weights: str | os.PathLike[str] | None = None, pretrained: bool = False,
              break_lock: bool = False, **train_options: Any) -> Run | None:
    """What ``cnnlens train`` does: :func:`resolve_config`, then :func:`cnnlens.train` into ``out``
    (default :func:`default_out`), holding the run's write lock (``break_lock``: take over a lock
    left on another host; :func:`cnnlens.runlock.run_lock`). ``weights``: initial weights (a model
    option). ``pretrained``: let timm/torchvision download their pretrained weights (network; a model
    option). ``train_options``: any other keyword of :func:`cnnlens.train` (``epochs``, ``force``,
    ``resume``, ``model_options``, ``progress``, ``trust_code``, ``skip_nonfinite``, ...). Returns
    ``None`` in a data-parallel process other than global rank 0."""
    from .runlock import run_lock
    from .train import train

    cfg = resolve_config(data, model, recipe=recipe, config=config, val_fraction=val_fraction,
                         image_size=image_size, skip_bad_rows=skip_bad_rows, seed=seed)
    out = Path(out) if out else default_out(cfg.data.spec, cfg.model.name)
    if weights:
        opts = train_options.get("model_options")
        train_options["model_options"] = {**(opts if opts is not None else dict(cfg.model.options)),
                                          "weights": str(weights)}
    if pretrained:
        opts = train_options.get("model_options")
        train_options["model_options"] = {**(opts if opts is not None else dict(cfg.model.options)),
                                          "pretrained": True}
    log.info("training %s on %s -> %s", cfg.model.name, cfg.data.spec, out)
    with run_lock(out, break_lock=break_lock):
        return train(cfg.data.spec, cfg.model.name, out=out, config=cfg, seed=seed, **train_options)


def stage_sizes(sizes: str | StageSizes = "run", methods: list[str] | tuple[str, ...] | None = None,
                per_class: int | None = None) -> StageSizes:
    """A preset of :data:`cnnlens.pipeline.SIZES` (or ``sizes`` itself) with ``methods``/``per_class``
    replaced; unknown method names fail here, listing the valid ones."""
    from .explain import METHODS

    if isinstance(sizes, str):
        if sizes not in SIZES:
            raise CnnlensError(f"unknown sizes {sizes!r}; presets: {', '.join(SIZES)}")
        sizes = SIZES[sizes]
    if methods:
        sizes = replace(sizes, methods=tuple(methods))
    if per_class is not None:
        if per_class < 1:
            raise CnnlensError(f"--per-class must be >= 1; got {per_class}")
        sizes = replace(sizes, per_class=per_class)
    for m in sizes.methods:
        METHODS.get(m)
    return sizes


def run(data: str | None = "digits", model: str | None = "compact", *,
        out: str | os.PathLike[str] | None = None, sizes: str | StageSizes = "run",
        methods: list[str] | tuple[str, ...] | None = None, per_class: int | None = None,
        skip: tuple[str, ...] | list[str] = (), baseline: str | None = None, split: str | None = None,
        break_lock: bool = False, progress_for: ProgressFor | None = None, notify: Notify | None = None,
        explore: Any = None, **train_options: Any) -> Run | None:
    """What ``cnnlens run`` does: train -> evaluate -> [baseline] -> every analysis stage ->
    [submission] -> report, holding the run's write lock (``RUN/.cnnlens.lock``) throughout.

    Args:
        data, model: dataset SPEC and model name (``None``: from ``config``/``recipe``).
        out: the run directory (default ``runs/<data>-<model>``).
        sizes: how much work the analysis stages do: ``"fast"``, ``"demo"``, ``"run"`` or a
            :class:`cnnlens.pipeline.StageSizes`; ``methods``/``per_class`` replace its fields.
        skip: analysis stages to leave out (:data:`cnnlens.pipeline.STAGES`).
        baseline: also train this model (``"mlp"``) matched to the run's parameter count into
            ``RUN/baseline`` and compare (``RUN/compare``).
        split: the labeled split evaluated and explained (``None``: ``test`` when it is labeled, else
            ``val``; :func:`cnnlens.data.splits.label_split`). An unlabeled ``test`` split gets its
            submission file ``RUN/submission.csv`` (:func:`cnnlens.pipeline.submission_run`).
        break_lock: take over a write lock left by a process on another host.
        explore: what the report's explorer gets (:class:`cnnlens.explain.explore.ExploreConfig`, a
            dict of its fields, or ``False`` to leave the explore stage out); default its defaults.
        progress_for: ``label -> context manager yielding a (done, total) callback`` (the CLI's bars).
        notify: ``(event, value)`` callback as each step finishes (:data:`Notify`).
        **train_options: :func:`train_run`'s keywords: ``recipe``, ``config``, ``seed``, ``epochs``,
            ``force``, ``resume``, ``model_options``, ``weights``, ``progress``, ``trust_code``, ...

    Returns:
        the trained :class:`Run` (the report is ``RUN/report/index.html``), or ``None`` in a
        data-parallel process other than global rank 0.
    """
    sizes = stage_sizes(sizes, methods, per_class)
    from .explain.explore import ExploreConfig

    explore = ExploreConfig.of(explore)  # bad settings fail before training
    skip = tuple(skip)
    bad = [s for s in skip if s not in STAGES]
    if bad:  # before training, not after it
        raise CnnlensError(f"--skip: unknown stage {bad[0]!r}; stages: {', '.join(STAGES)}")

    def tell(event: str, value: Any) -> None:
        if notify is not None:
            notify(event, value)

    from .runlock import run_lock

    if not out:
        cfg = resolve_config(data, model, recipe=train_options.get("recipe"),
                             config=train_options.get("config"))
        out = default_out(cfg.data.spec, cfg.model.name)
    with run_lock(out, break_lock=break_lock):  # from training to the report (re-entrant: train takes it too)
        t0, c0 = time.perf_counter(), time.process_time()
        r = train_run(data, model, out=out, **train_options)
        if r is None:  # a data-parallel worker process: rank 0 carries on alone
            return None
        tell("trained", r)
        from .device import default_device

        # train() hands the model back on the CPU (Lightning's teardown): the analysis runs where training ran
        r.model.to(default_device(train_options.get("accelerator") or "auto"))
        reset_outputs(r.path)  # the model is new: what earlier runs computed in this folder is stale
        record_timing(r.path, "train", time.perf_counter() - t0, time.process_time() - c0)
        with _bar(progress_for, "evaluating") as cb:
            res = evaluate_run(r, split, progress=cb)
        tell("evaluated", res)
        if baseline:
            with timed(r.path, f"baseline ({baseline}: train, evaluate, compare)"):
                tell("compared", train_baseline(r, baseline, res.split))
        sizes, notes = _without_unsupported_guided(r, sizes, explicit=methods)
        analyze(r, res, sizes, progress_for=progress_for, skip=skip, notes=notes, explore=explore)
        from .pipeline import submission_run

        with _bar(progress_for, "predicting the unlabeled test split") as cb:
            sub = submission_run(r, progress=cb)
        if sub is not None:
            tell("submission", sub)
        with timed(r.path, "report"):
            from .report.html import build_report

            tell("report", build_report(r.path, trust_code=bool(train_options.get("trust_code"))))
    return r


def _without_unsupported_guided(run: Run, sizes: StageSizes,
                                explicit: list[str] | tuple[str, ...] | None = None) -> tuple[StageSizes, list[str]]:
    """The stage sizes without the guided methods when the model applies its activations as
    functions (``F.relu``): those methods would silently be (partly) a plain gradient. Methods the
    caller named (``explicit``) are kept, so asking for one still fails with the fix. Returns the
    sizes and the notes saying what was left out and why (logged, and shown in the report)."""
    from .explain.batch import normalize_images
    from .explain.core import model_device
    from .explain.guided import GUIDED_METHODS, guided_unsupported

    keep = set(explicit or ())
    fields = {"methods": sizes.methods, "confused_methods": sizes.confused_methods,
              "trust_methods": sizes.trust_methods}
    if explicit is not None:
        fields.pop("methods")
    dropped = sorted({m for v in fields.values() for m in v if m in GUIDED_METHODS and m not in keep})
    if not dropped or len(run.dataset) == 0:
        return sizes, []
    x = normalize_images(run.dataset.images[:1], run.mean, run.std).to(model_device(run.model))
    why = guided_unsupported(run.model, x)
    if why is None:
        return sizes, []
    note = (f"{', '.join(dropped)} left out: {why}. To compute them anyway (a mixed result): "
            f"cnnlens explain RUN --methods {','.join(dropped)} --force-guided")
    log.warning("%s", note)
    new = {k: tuple(m for m in v if m not in dropped) for k, v in fields.items()}
    return replace(sizes, **new), [note]


def train_baseline(run: Run, name: str = "mlp", split: str | None = None) -> dict[str, Any]:
    """Train the model ``name`` matched to the run's parameter count into ``RUN/baseline``, evaluate it
    on ``split`` (the run's evaluated split) and compare the two (``RUN/compare``). Returns the
    comparison (:class:`cnnlens.rundir.CompareRecord`)."""
    from .models import count_params
    from .report.compare import compare_runs
    from .train import train

    target = count_params(run.model)
    log.info("training the %s baseline matched to %s parameters", name, f"{target:,}")
    base = train(run.config.data.spec, name, out=run.path / "baseline", config=run.config.replace(
        model={"name": name, "options": {}}), force=True, progress=True,
        model_options={"match_params": target})
    evaluate_run(base, split)
    return compare_runs([run.path, base.path], run.path / "compare",
                        names=[f"CNN ({run.config.model.name})", f"DNN ({name})"])


def report_run(run_dir: str | os.PathLike[str], split: str | None = None, *,
               trust_code: bool = False) -> Path:
    """What ``cnnlens report`` does: write the cheap records a run may lack (data counts and samples,
    the model's layer table: they need the model and data, not a stage's work; the attribution
    region shares of saved maps), then render ``RUN/report/index.html``. Returns the page.
    ``split``: the labeled split of the "Where it fails" section (evaluated now when the run holds
    no evaluation of it; :func:`cnnlens.report.html.build_report`); ``trust_code``: allow loading a
    model that is user code (:func:`cnnlens.load_run`)."""
    from .report.html import build_report
    from .rundir import ModelMeta

    path = Path(run_dir)
    ModelMeta.load(path)  # not a run: say so before anything else
    if not (DataCounts.exists(path) and DataSamples.exists(path) and ModelSummaryFile.exists(path)):
        from .train import load_run

        loaded = load_run(path, trust_code=trust_code)
        if not (DataCounts.exists(path) and DataSamples.exists(path)):
            describe_data(loaded)
        if not ModelSummaryFile.exists(path):
            summarize_run(loaded)
    if ExplainMaps.exists(path) and not AttributionRegions.exists(path):
        AttributionRegions.from_maps(ExplainMaps.load(path)).save(path)
    confused = ConfusedMaps.load_or_none(path)
    if confused is not None and confused.pred_share is None:  # written before the stage stored it
        from .explain.regions import pred_share

        confused.pred_share = {m: pred_share(confused.maps_true[m], confused.maps_pred[m])
                               for m in confused.methods}
        confused.save(path)
    return build_report(path, split=split, trust_code=trust_code)


@contextmanager
def _bar(progress_for: ProgressFor | None, label: str) -> Iterator[Callable[[int, int], None] | None]:
    if progress_for is None:
        yield None
    else:
        with progress_for(label) as cb:
            yield cb
