"""The trust protocol: every registered method and both controls, every test, one verdict each.

``run_trust(model, dataset, methods=None, config)`` explains ``config.n_images`` images (the class
explained is the true label), scores each method with every test registered in
:data:`~cnnlens.metrics.base.TRUST_METRICS` that applies to the data, lets each test decide
pass/fail against the controls and write its reading, writes ``scores.json`` + ``table.csv``, and
returns a :class:`~cnnlens.metrics.results.TrustReport`.

Every score is per image, so the work splits: :func:`plan_trust` fixes images, methods and layers;
:func:`score_images` does all per-image work on a batch (stochastic methods seeded per image,
:func:`~cnnlens.metrics.maps.image_seed`, so a value does not depend on the batch);
:func:`aggregate_trust` turns the gathered per-image values into the report. :func:`trust_dataset`
runs the batches on several processes/devices through Lightning and gives the same report.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.base import ImageDataset
from ..errors import CnnlensError, CnnlensTypeError
from ..explain.core import METHODS
from ..nn import model_device, model_guard
from .base import TRUST_METRICS, ChanceCheck, Evidence, MethodBatch, Score, tests_for
from .controls import CONTROLS, is_control
from .maps import default_methods, explain_maps, select_images
from .randomization import layer_groups, other_classes, parameter_layers
from .results import TrustReport, decide, notes, reading, write_report
from .trust_config import TrustConfig

log = logging.getLogger(__name__)


@dataclass
class TrustPlan:
    """Everything decided once for the whole image set, the same in every process.

    Attributes:
        config: the settings.
        methods: methods to score, controls last; ``skipped``: ``(method, reason)`` left out up front.
        images: ``int64 [N]`` dataset indices of the images; ``targets``: ``int64 [N]`` true classes;
            ``others``: ``int64 [N]`` the other class of the random-logit test; ``masks``: ``bool
            [N, H, W]`` or ``None``.
        layers: parameter layer groups, bottom to top; ``tests``: the tests that apply.
        stats: ``(mean, std)`` of the input normalization.
    """

    config: TrustConfig
    methods: list[str]
    skipped: list[tuple[str, str]]
    images: torch.Tensor
    targets: torch.Tensor
    others: torch.Tensor
    masks: torch.Tensor | None
    layers: list[str]
    tests: list[str]
    stats: tuple[Any, Any]


@dataclass
class MethodScores:
    """One method on the images of a batch (or, gathered, on all of them).

    ``values``: score key -> ``[B]``; ``curves``: ``"<test>_<kind>"`` -> similarity -> ``[B, L]``;
    ``error``: why the method could not be scored (``None`` when it was).
    """

    values: dict[str, torch.Tensor] = field(default_factory=dict)
    curves: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BatchScores:
    """What :func:`score_images` returns: ``correct`` ``[B]`` (1.0 where the model is right),
    ``probs`` ``[B, K]`` softmax probabilities, and each method's :class:`MethodScores`."""

    correct: torch.Tensor
    probs: torch.Tensor
    methods: dict[str, MethodScores]

    def to_tree(self) -> dict[str, Any]:
        """Nested tensors and strings, the form :mod:`cnnlens.explain.distributed` gathers."""
        return {
            "correct": self.correct,
            "probs": self.probs,
            "methods": {
                m: {"values": s.values, "curves": s.curves, **({"error": s.error} if s.error else {})}
                for m, s in self.methods.items()
            },
        }

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> BatchScores:
        """Back from a gathered tree (an error is the first non-empty one of its images)."""
        methods = {}
        for m, d in tree.get("methods", {}).items():
            err = d.get("error")
            if isinstance(err, list):
                err = next((e for e in err if e), None)
            curves = {k: dict(v) for k, v in d.get("curves", {}).items()}
            methods[m] = MethodScores(dict(d.get("values", {})), curves, err or None)
        return cls(tree["correct"], tree["probs"], methods)


def plan_trust(
    model: nn.Module,
    dataset: ImageDataset,
    methods: Sequence[str] | None = None,
    config: TrustConfig | None = None,
    **settings: Any,
) -> TrustPlan:
    """Check the arguments and fix the images, methods and layers of a trust run (see :func:`run_trust`)."""
    cfg = TrustConfig.of(config, **settings)
    if methods is None:
        chosen, skipped = default_methods(cfg.max_cost, model)
    else:
        if isinstance(methods, str):
            raise CnnlensTypeError(
                "methods must be a list of names, e.g. ['gradcam', 'saliency']; got a string"
            )
        for m in methods:
            METHODS.get(m)  # unknown names raise, listing the valid ones
        chosen, skipped = [m for m in methods if not is_control(m)], []
    options = {k: dict(v) for k, v in cfg.method_options.items()}
    options.setdefault("control_random", {})
    cfg = cfg.replace(method_options=options)
    idx = select_images(dataset, cfg.n_images, cfg.split, cfg.seed)
    targets = dataset.labels[idx].long()
    if (targets < 0).any():
        raise CnnlensError(
            f"split {cfg.split!r} has unlabeled images; the trust protocol explains the true class"
        )
    masks = dataset.masks[idx] if dataset.masks is not None else None
    dev = model_device(model)
    x1 = dataset.normalize(dataset.images[idx[:1]]).to(dev)
    with model_guard(model), torch.no_grad():
        num_classes = int(model(x1).shape[1])
    return TrustPlan(
        config=cfg,
        methods=chosen + list(CONTROLS),
        skipped=skipped,
        images=idx,
        targets=targets,
        others=other_classes(targets, num_classes, cfg.seed),
        masks=masks,
        layers=layer_groups(model, parameter_layers(model, x1)),
        tests=tests_for(masks is not None),
        stats=(dataset.mean, dataset.std),
    )


def score_images(
    model: nn.Module,
    plan: TrustPlan,
    positions: torch.Tensor,
    x: torch.Tensor,
    cache: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BatchScores:
    """The per-image work of the protocol on one batch: explain, then every test of ``plan``
    (:meth:`~cnnlens.metrics.base.TrustTest.measure`), for every method.

    Args:
        positions: ``int64 [B]`` positions of the images in ``plan.images``.
        x: the normalized images ``[B, C, H, W]``.
        cache: kept between calls of one process (holds the fully randomized model).
        progress: called with the method name after each method.

    A method that raises is recorded with its error (and skipped); a control that raises stops the
    run. Values do not depend on which other images are in the batch.
    """
    cache = {} if cache is None else cache
    dev = model_device(model)
    pos = positions.detach().cpu().long()
    x = x.to(dev)
    with model_guard(model), torch.no_grad():
        logits = model(x)
    targets = plan.targets[pos].to(dev)
    out = BatchScores(
        correct=(logits.argmax(1) == targets).double().cpu(),
        probs=logits.double().softmax(1).cpu(),
        methods={},
    )
    for m in plan.methods:
        t1 = time.perf_counter()
        try:
            out.methods[m] = _score_method(model, plan, m, pos, x, cache)
            log.debug("trust: %s scored on %d images in %.1f s", m, len(pos), time.perf_counter() - t1)
        except (ValueError, TypeError, RuntimeError) as e:
            if is_control(m):
                raise
            why = f"{type(e).__name__}: {e}"
            log.warning("trust: %s skipped: %s", m, why)
            out.methods[m] = MethodScores(error=why)
        if progress is not None:
            progress(m)
    return out


def _score_method(
    model: nn.Module, plan: TrustPlan, m: str, pos: torch.Tensor, x: torch.Tensor, cache: dict[str, Any]
) -> MethodScores:
    dev = model_device(model)
    index, targets = plan.images[pos], plan.targets[pos].to(dev)
    opts = plan.config.method_options.get(m, {})
    call = 0

    xb = x

    def maps_of(mod: nn.Module | None = None, target: torch.Tensor | None = None,
                x: torch.Tensor | None = None) -> torch.Tensor:
        nonlocal call
        call += 1  # the random control draws fresh (reproducible) noise on every call
        return explain_maps(model if mod is None else mod, xb if x is None else x, m,
                            targets if target is None else target, index, opts,
                            seed=plan.config.seed, call=call)

    b = MethodBatch(
        method=m, model=model, x=xb, maps=maps_of(), targets=targets, others=plan.others[pos].to(dev),
        masks=plan.masks[pos] if plan.masks is not None else None, index=index, layers=plan.layers,
        stats=plan.stats, config=plan.config, explain=maps_of, cache=cache,
    )
    out = MethodScores()
    for t in plan.tests:
        test = TRUST_METRICS.get(t)
        got = test().measure(b)
        if list(got.values) != list(test.scores):
            raise CnnlensError(
                f"trust test {t!r} measured {list(got.values)} but declares the scores {list(test.scores)}; "
                "measure() must return exactly the declared keys, in order"
            )
        out.values.update(got.values)
        out.curves.update({f"{t}_{kind}": sims for kind, sims in got.curves.items()})
    return out


def aggregate_trust(
    plan: TrustPlan, scored: BatchScores | dict[str, Any], seconds: float = 0.0
) -> TrustReport:
    """The report from the per-image outputs of :func:`score_images` gathered over all images
    (``[N, ...]`` in plan order, or their tree): Score objects, curve means, verdicts and readings."""
    got = scored if isinstance(scored, BatchScores) else BatchScores.from_tree(scored)
    skipped = list(plan.skipped)
    scores: dict[str, dict[str, Score]] = {}
    curves: dict[str, dict[str, list]] = {}
    done: list[str] = []
    top_down = list(reversed(plan.layers))
    declared = {k: hib for t in plan.tests for k, hib in TRUST_METRICS.get(t).scores.items()}
    kinds = [f"{t}_{k}" for t in plan.tests for k in TRUST_METRICS.get(t).curves]
    for m in plan.methods:
        ms = got.methods.get(m)
        if ms is None or ms.error:
            skipped.append((m, ms.error if ms is not None else "not scored"))
            continue
        # in the tests' declared order (a gathered tree comes back in key order; similarities sorted)
        scores[m] = {k: Score(k, ms.values[k], hib, m) for k, hib in declared.items() if k in ms.values}
        for kind in kinds:
            sims = ms.curves.get(kind)
            if sims:
                curves.setdefault(kind, {})[m] = [
                    (ly, {s: float(sims[s][:, j].mean()) for s in sorted(sims)})
                    for j, ly in enumerate(top_down)
                ]
        done.append(m)
    cfg = plan.config
    per_image = _per_image(plan, got, scores, done)
    ev = Evidence(scores, ChanceCheck.of(got.probs, cfg.chance_margin), len(plan.images), cfg.split)
    passed = {m: decide(m, ev, plan.tests) for m in done}
    return TrustReport(
        methods=done,
        scores=scores,
        curves=curves,
        passed=passed,
        readings={m: reading(m, ev, passed[m], plan.tests) for m in done},
        skipped=skipped,
        tests=plan.tests,
        n_images=len(plan.images),
        accuracy=float(got.correct.mean()),
        seconds=seconds,
        chance=ev.chance,
        notes=notes(ev, plan.tests),
        classes={t: TRUST_METRICS.get(t) for t in plan.tests},
        options={
            "split": cfg.split,
            "seed": cfg.seed,
            "steps": cfg.steps,
            "substrate": cfg.substrate,
            "blur_sigma": cfg.blur_sigma,
            "target": "label",
            "layers": plan.layers,
            "cascade": cfg.cascade,
            "independent": cfg.independent,
            "images": plan.images.tolist(),
        },
        per_image=per_image,
    )


def _per_image(plan: TrustPlan, got: BatchScores, scores: dict[str, dict[str, Score]], done: list[str]
               ) -> dict[str, Any]:
    """Each scored method's values and per-image curves (:attr:`TrustTest.image_curves`), image by
    image in plan order (the form of :attr:`TrustReport.per_image`); NaN where a value is missing."""
    n = len(plan.images)
    out: dict[str, Any] = {"split": plan.config.split, "indices": plan.images.tolist(), "methods": {}}
    for m in done:
        ms = got.methods[m]
        vals = {k: [float(v) for v in s.values] if len(s.values) == n else [float("nan")] * n
                for k, s in scores[m].items()}
        curves = {}
        for t in plan.tests:
            for kind in TRUST_METRICS.get(t).image_curves:
                c = ms.curves.get(f"{t}_{kind}", {}).get("probability")
                if c is not None:
                    curves[kind] = [[float(v) for v in row] for row in c.double().tolist()]
        out["methods"][m] = {"scores": vals, "curves": curves}
    return out


def run_trust(
    model: nn.Module,
    dataset: ImageDataset,
    methods: Sequence[str] | None = None,
    config: TrustConfig | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    **settings: Any,
) -> TrustReport:
    """Score every method (and both controls) on ``config.n_images`` images of ``dataset``.

    Args:
        model: the trained classifier (any ``nn.Module`` returning logits); returned untouched
            (randomization works on deep copies).
        dataset: the data it was trained on (normalization statistics, ``masks`` if any).
        methods: method names from ``METHODS``; default all registered ones (``config.max_cost``
            leaves out expensive ones). Controls are always added.
        config: the settings (:class:`~cnnlens.metrics.trust_config.TrustConfig`; ``FAST`` is the
            quick preset); ``**settings`` override single fields (``n_images=16, steps=20``).
        out_dir: folder for ``scores.json`` and ``table.csv``; nothing written if None. The
            randomization figure: :func:`cnnlens.report.fig_trust.plot_trust`.
        progress: callback ``(done, total)`` after each method (of each batch).
        batch_size: images scored together (default: all); the scores do not depend on it.

    The per-image work is :func:`score_images`, the aggregation :func:`aggregate_trust`;
    :func:`trust_dataset` runs the same split across processes/devices.
    """
    from ..explain.distributed import gather_trees

    t0 = time.perf_counter()
    plan = plan_trust(model, dataset, methods, config, **settings)
    n = len(plan.images)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise CnnlensError(
            f"batch_size must be an int >= 1 (or None: all images at once); got {batch_size!r}"
        )
    step = batch_size or n
    total = len(plan.methods) * ((n + step - 1) // step)
    done = 0

    def tick(_: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    dev = model_device(model)
    x_all = dataset.normalize(dataset.images[plan.images])
    cache: dict[str, Any] = {}
    parts = []
    for b0 in range(0, n, step):
        pos = torch.arange(b0, min(b0 + step, n))
        scored = score_images(model, plan, pos, x_all[pos].to(dev), cache, tick)
        parts.append({"idx": pos, **scored.to_tree()})
    report = aggregate_trust(plan, gather_trees(parts, n), time.perf_counter() - t0)
    if out_dir is not None:
        write_report(report, out_dir)
    return report


def trust_dataset(
    model: nn.Module,
    dataset: ImageDataset,
    methods: Sequence[str] | None = None,
    config: TrustConfig | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    shard_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    progress: bool = False,
    **settings: Any,
) -> TrustReport | None:
    """:func:`run_trust` with the images split across ``devices`` x ``num_nodes`` processes
    (e.g. ``accelerator="cpu", devices=2, strategy="ddp"``) through Lightning's ``trainer.predict``
    (:func:`~cnnlens.explain.distributed.map_images`).

    Each rank scores its shard with :func:`score_images` and writes it to ``shard_dir`` (default
    ``out_dir/.shards``; it must be on a filesystem every rank sees); global rank 0 gathers the
    per-image values, aggregates them once (:func:`aggregate_trust`), writes ``scores.json`` and
    ``table.csv`` into ``out_dir`` and returns the report, the same (to float rounding) as a
    single-process :func:`run_trust`. The other ranks return ``None`` and write nothing outside
    ``shard_dir``, which rank 0 removes.
    """
    from ..explain.distributed import map_images

    t0 = time.perf_counter()
    if out_dir is None and shard_dir is None:
        raise CnnlensError(
            "trust_dataset needs out_dir= (or shard_dir=): a folder every process can write to, "
            "e.g. out_dir='runs/x/trust'"
        )
    shards = Path(shard_dir) if shard_dir is not None else Path(out_dir) / ".shards"  # type: ignore[arg-type]
    plan = plan_trust(model, dataset, methods, config, **settings)
    cache: dict[str, Any] = {}

    def fn(pos: torch.Tensor, imgs: torch.Tensor, _y: torch.Tensor) -> dict[str, Any]:
        x = dataset.normalize(imgs.cpu()).to(model_device(model))
        return score_images(model, plan, pos, x, cache).to_tree()

    got = map_images(
        fn, dataset.images[plan.images], plan.targets, shards, model=model, batch_size=batch_size,
        accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes, progress=progress,
    )
    if got is None:
        return None
    report = aggregate_trust(plan, got, time.perf_counter() - t0)
    if out_dir is not None:
        write_report(report, out_dir)
    return report
