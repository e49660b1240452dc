"""The trust protocol: every registered method and both controls, every test, one verdict each.

``run_trust(model, dataset, methods=None, n_images=32, out_dir=...)`` explains ``n_images`` test
images (the class explained is the true label), scores each method with every test registered in
:data:`TRUST_METRICS` that applies to the data, decides pass/fail against the controls, writes
``scores.json`` + ``table.csv`` + the randomization figure, and returns a :class:`TrustReport`.

Every score is per image, so the work splits: :func:`plan_trust` fixes images, methods and layers;
:func:`score_images` does all per-image work on a batch (stochastic methods seeded per image,
:func:`image_seed`, so a value does not depend on the batch); :func:`aggregate_trust` turns the
gathered per-image values into the report. :func:`trust_dataset` runs the batches on several
processes/devices through Lightning and gives the same report.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.base import ImageDataset
from ..explain.core import METHODS, explain, model_device, model_guard
from ..io import write_csv, write_json
from .base import TRUST_METRICS, Score, TrustTest, beats, register_test
from .controls import CONTROLS, is_control
from .faithfulness import deletion_insertion
from .localization import pointing_game, relevance_mass
from .randomization import (
    fully_randomized,
    layer_groups,
    map_similarity,
    other_classes,
    parameter_layers,
    randomization_curve,
)
from ..errors import CnnlensError, CnnlensTypeError

# The fast protocol: what `cnnlens trust --fast` and the report use (benchmarks/trust.py times it)
FAST = {"n_images": 16, "steps": 20, "cascade": False, "max_cost": 64}  # gradient and CAM methods

log = logging.getLogger(__name__)

FAITHFULNESS = register_test(
    TrustTest(
        "faithfulness",
        ("insertion_minus_deletion",),
        True,
        "beat_controls",
        False,
        "deletion/insertion AUC of the target probability (Petsiuk et al. 2018); "
        "insertion - deletion must beat both controls",
    )
)
RANDOMIZATION = register_test(
    TrustTest(
        "randomization",
        ("spearman_abs",),
        False,
        "midpoint",
        False,
        "model parameter randomization (Adebayo et al. 2018): |rank corr| with the maps of the fully "
        "randomized "
        "model must be nearer the random control than the edge control",
    )
)
RANDOM_LOGIT = register_test(
    TrustTest(
        "random_logit",
        ("spearman_abs",),
        False,
        "midpoint",
        False,
        "map for the true class vs for another class: |rank corr| nearer the random control "
        "than the edge control",
    )
)
LOCALIZATION = register_test(
    TrustTest(
        "localization",
        ("pointing_game", "relevance_mass"),
        True,
        "beat_controls",
        True,
        "pointing game and relevance mass inside the ground-truth mask must beat both controls",
    )
)


@dataclass
class TrustReport:
    """Results of :func:`run_trust`.

    Attributes:
        methods: scored methods (controls included), in order.
        scores: method -> score name -> :class:`Score` (``[N]`` values).
        cascading: method -> ``[(layer, {similarity: mean})]`` from the top layer down.
        independent: same, one layer randomized at a time (empty when not asked for).
        passed: method -> test -> ``True``/``False`` (``None`` for controls).
        readings: method -> one line generated from the numbers.
        skipped: ``(method, reason)`` for methods that could not be scored.
        tests: names of the tests that were run.
    """

    methods: list[str]
    scores: dict[str, dict[str, Score]]
    cascading: dict[str, list[tuple[str, dict[str, float]]]]
    independent: dict[str, list[tuple[str, dict[str, float]]]]
    passed: dict[str, dict[str, bool | None]]
    readings: dict[str, str]
    skipped: list[tuple[str, str]]
    tests: list[str]
    n_images: int
    accuracy: float
    seconds: float
    options: dict[str, Any] = field(default_factory=dict)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows (strings): one row per method, its headline scores, pass/fail, reading."""
        cols = [
            ("ins-del", "insertion_minus_deletion"),
            ("del", "deletion_auc"),
            ("ins", "insertion_auc"),
            ("rand |rho|", "randomization.spearman_abs"),
            ("rand ssim", "randomization.ssim"),
            ("logit |rho|", "random_logit.spearman_abs"),
            ("pointing", "pointing_game"),
            ("mass", "relevance_mass"),
        ]
        cols = [c for c in cols if any(c[1] in s for s in self.scores.values())]
        header = ["method"] + [c[0] for c in cols] + self.tests + ["reading"]
        rows = []
        for m in self.methods:
            row = [m] + [f"{self.scores[m][k].mean:.3f}" if k in self.scores[m] else "-" for _, k in cols]
            for t in self.tests:
                v = self.passed[m].get(t)
                row.append(
                    "control"
                    if v is None and is_control(m)
                    else "-"
                    if v is None
                    else "pass"
                    if v
                    else "FAIL"
                )
            row.append(self.readings[m])
            rows.append(row)
        return header, rows

    def to_dict(self) -> dict[str, Any]:
        tests = {
            t: {
                "headline": list(TRUST_METRICS.get(t).headline),
                "higher_is_better": TRUST_METRICS.get(t).higher_is_better,
                "rule": TRUST_METRICS.get(t).rule,
                "description": TRUST_METRICS.get(t).description,
            }
            for t in self.tests
        }
        return {
            "n_images": self.n_images,
            "accuracy_on_images": self.accuracy,
            "seconds": self.seconds,
            "options": self.options,
            "tests": tests,
            "controls": [m for m in self.methods if is_control(m)],
            "methods": {
                m: {
                    "control": is_control(m),
                    "scores": {k: s.to_dict() for k, s in self.scores[m].items()},
                    "randomization_cascading": [[ly, d] for ly, d in self.cascading.get(m, [])],
                    "randomization_independent": [[ly, d] for ly, d in self.independent.get(m, [])],
                    "passed": self.passed[m],
                    "reading": self.readings[m],
                }
                for m in self.methods
            },
            "skipped": [{"method": m, "reason": r} for m, r in self.skipped],
        }


def select_images(dataset: ImageDataset, n_images: int, split: str = "test", seed: int = 0) -> torch.Tensor:
    """``int64 [n]`` indices: a seeded random subset of ``split`` (all of it if smaller)."""
    if not isinstance(n_images, int) or n_images < 2:
        raise CnnlensError(f"n_images must be an int >= 2 (scores need a spread); got {n_images!r}")
    idx = dataset.indices(split)
    g = torch.Generator().manual_seed(seed)
    return idx[torch.randperm(len(idx), generator=g)[:n_images]].sort().values


def default_methods(max_cost: int | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """All registered methods (controls last), minus those whose ``cost`` exceeds ``max_cost``."""
    chosen, skipped = [], []
    for name in METHODS.names():
        if is_control(name):
            continue
        cost = getattr(METHODS.get(name), "cost", 1)
        if max_cost is not None and cost > max_cost:
            skipped.append((name, f"cost {cost} passes/image > max_cost {max_cost}"))
        else:
            chosen.append(name)
    return chosen, skipped


# ---- per-image randomness ------------------------------------------------------------------------


def image_seed(seed: int, index: int, call: int = 0) -> int:
    """The seed of one image's random draws: a function of ``(seed, index, call)`` only.

    ``index`` is the image's index in the dataset, so its noise does not depend on which images
    share its batch or its process. ``call`` numbers the explain calls of one method (only the
    random control draws fresh noise per call). Mixed with NumPy's ``SeedSequence``; ``[0, 2^62)``.
    """
    state = np.random.SeedSequence([int(seed) % 2**64, int(index), int(call)]).generate_state(1, np.uint64)
    return int(state[0]) >> 2


def is_stochastic(method: str, options: dict[str, Any] | None = None) -> bool:
    """Whether ``explain(method, **options)`` draws random numbers (and so takes a ``seed``): the
    random control, SmoothGrad, LIME, KernelSHAP, RISE, and a gradient method with ``nt_samples``."""
    options = options or {}
    impl = METHODS.get(method)
    inst = impl() if isinstance(impl, type) else impl
    names = set(getattr(inst, "accepted_options", lambda: ())() or ())
    names |= set(inspect.signature(inst.attribute).parameters)
    if "nt_samples" in names:  # a gradient method: random only through the noise tunnel
        return bool(options.get("nt_samples"))
    return "seed" in names


def explain_maps(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: torch.Tensor,
    index: torch.Tensor,
    options: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    call: int = 0,
) -> torch.Tensor:
    """Maps ``[B, H, W]`` of ``method`` for images ``x`` ``[B, C, H, W]`` (targets ``[B]``), the
    same whatever images share the batch: a stochastic method (:func:`is_stochastic`) explains one
    image at a time, image ``i`` with seed ``image_seed(options.get("seed", seed), index[i], call)``
    (``call`` counts only for the random control, whose noise is fresh on every call).
    ``options={"seed": None}`` asks for unseeded draws (not reproducible)."""
    opts = dict(options or {})
    if not is_stochastic(method, opts) or ("seed" in opts and opts["seed"] is None):
        return explain(model, x, method, target=target, **opts).maps
    base = int(opts.pop("seed", seed))
    fresh = call if method == "control_random" else 0
    return torch.cat(
        [
            explain(model, x[i : i + 1], method, target=target[i : i + 1],
                    seed=image_seed(base, int(index[i]), fresh), **opts).maps
            for i in range(x.shape[0])
        ]
    )


# ---- the protocol: a plan, per-image scores over batches, one aggregation --------------------------


@dataclass
class TrustPlan:
    """Everything decided once for the whole image set, the same in every process.

    Attributes:
        methods: methods to score, controls last; ``skipped``: ``(method, reason)`` left out up front.
        images: ``int64 [N]`` dataset indices of the images; ``targets``: ``int64 [N]`` true classes;
            ``others``: ``int64 [N]`` the other class of the random-logit test; ``masks``: ``bool
            [N, H, W]`` or ``None``.
        layers: parameter layer groups, bottom to top; ``tests``: the tests that apply.
        method_options, seed, steps, substrate, blur_sigma, stats, cascade, independent: as
            :func:`run_trust`.
    """

    methods: list[str]
    skipped: list[tuple[str, str]]
    images: torch.Tensor
    targets: torch.Tensor
    others: torch.Tensor
    masks: torch.Tensor | None
    layers: list[str]
    tests: list[str]
    method_options: dict[str, dict[str, Any]]
    seed: int
    steps: int
    substrate: str
    blur_sigma: float
    stats: tuple[Any, Any]
    cascade: bool
    independent: bool
    split: str


def plan_trust(
    model: nn.Module,
    dataset: ImageDataset,
    methods: Sequence[str] | None = None,
    *,
    n_images: int = 32,
    split: str = "test",
    seed: int = 0,
    steps: int = 50,
    substrate: str = "mean",
    blur_sigma: float = 5.0,
    cascade: bool = True,
    independent: bool = False,
    max_cost: int | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
) -> TrustPlan:
    """Check the arguments and fix the images, methods and layers of a trust run (see :func:`run_trust`)."""
    if methods is None:
        chosen, skipped = default_methods(max_cost)
    else:
        if isinstance(methods, str):
            raise CnnlensTypeError("methods must be a list of names, e.g. ['gradcam', 'saliency']; got a string")
        for m in methods:
            METHODS.get(m)  # unknown names raise, listing the valid ones
        chosen, skipped = [m for m in methods if not is_control(m)], []
    options = dict(method_options or {})
    options.setdefault("control_random", {})
    idx = select_images(dataset, n_images, split, seed)
    targets = dataset.labels[idx].long()
    if (targets < 0).any():
        raise CnnlensError(f"split {split!r} has unlabeled images; the trust protocol explains the true class")
    masks = dataset.masks[idx] if dataset.masks is not None else None
    dev = model_device(model)
    x1 = dataset.normalize(dataset.images[idx[:1]]).to(dev)
    with model_guard(model), torch.no_grad():
        num_classes = int(model(x1).shape[1])
    layers = layer_groups(model, parameter_layers(model, x1))
    tests = [t for t in TRUST_METRICS.names() if masks is not None or not TRUST_METRICS.get(t).needs_masks]
    return TrustPlan(
        methods=chosen + list(CONTROLS),
        skipped=skipped,
        images=idx,
        targets=targets,
        others=other_classes(targets, num_classes, seed),
        masks=masks,
        layers=layers,
        tests=tests,
        method_options=options,
        seed=seed,
        steps=steps,
        substrate=substrate,
        blur_sigma=blur_sigma,
        stats=(dataset.mean, dataset.std),
        cascade=cascade,
        independent=independent,
        split=split,
    )


_MSG = 256  # bytes kept of a skip reason in the per-image outputs


def score_images(
    model: nn.Module,
    plan: TrustPlan,
    positions: torch.Tensor,
    x: torch.Tensor,
    cache: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """The per-image work of the protocol on one batch: explain, deletion/insertion, randomization,
    random logit, localization, for every method of ``plan``.

    Args:
        positions: ``int64 [B]`` positions of the images in ``plan.images``.
        x: the normalized images ``[B, C, H, W]``.
        cache: kept between calls of one process (holds the fully randomized model).
        progress: called with the method name after each method.

    Returns:
        Flat ``{name: tensor [B, ...]}``: ``correct``; ``score|<method>|<k>|<score>|<+/->`` ``[B]``
        (``k`` orders the scores, ``+`` when higher is better); ``cascading|<method>|<similarity>``
        and ``independent|...`` ``[B, layers]`` from the top layer down; ``error|<method>`` ``uint8
        [B, 256]`` (the reason, UTF-8) for a method that raised. Values do not depend on which other
        images are in the batch (stochastic methods are seeded per image, :func:`explain_maps`).
    """
    cache = {} if cache is None else cache
    dev = model_device(model)
    pos = positions.detach().cpu().long()
    x = x.to(dev)
    index = plan.images[pos]
    targets = plan.targets[pos].to(dev)
    others = plan.others[pos].to(dev)
    masks = plan.masks[pos] if plan.masks is not None else None
    with model_guard(model), torch.no_grad():
        correct = (model(x).argmax(1) == targets).double().cpu()
    out: dict[str, torch.Tensor] = {"correct": correct}
    for m in plan.methods:
        t1 = time.perf_counter()
        try:
            out.update(_score_method(model, plan, m, x, targets, others, masks, index, cache))
            log.debug("trust: %s scored on %d images in %.1f s", m, len(pos), time.perf_counter() - t1)
        except (ValueError, TypeError, RuntimeError) as e:
            if is_control(m):
                raise
            why = f"{type(e).__name__}: {e}"
            log.warning("trust: %s skipped: %s", m, why)
            row = torch.zeros(_MSG, dtype=torch.uint8)
            raw = why.encode()[:_MSG]
            row[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
            out[f"error|{m}"] = row.expand(len(pos), _MSG).clone()
        if progress is not None:
            progress(m)
    return out


def _score_method(
    model: nn.Module,
    plan: TrustPlan,
    m: str,
    x: torch.Tensor,
    targets: torch.Tensor,
    others: torch.Tensor,
    masks: torch.Tensor | None,
    index: torch.Tensor,
    cache: dict[str, Any],
) -> dict[str, torch.Tensor]:
    opts = plan.method_options.get(m, {})
    call = 0

    def maps_fn(mod: nn.Module, target: torch.Tensor = targets) -> torch.Tensor:
        nonlocal call
        call += 1  # the random control draws fresh (reproducible) noise on every call
        return explain_maps(mod, x, m, target, index, opts, seed=plan.seed, call=call)

    maps = maps_fn(model)
    sc, _ = deletion_insertion(
        model, x, maps, targets, method=m, steps=plan.steps, substrate=plan.substrate,
        stats=plan.stats, blur_sigma=plan.blur_sigma,
    )
    out: dict[str, torch.Tensor] = {}
    if plan.cascade:  # its last step is the fully randomized model (same seeds as fully_randomized)
        curve = randomization_curve(
            model, maps_fn, maps, plan.layers, order="cascading", seed=plan.seed, method=m
        )
        out.update(_curve("cascading", m, curve))
        full = curve[-1][1]
    else:
        key = f"randomized@{model_device(model)}"
        if key not in cache:
            cache[key] = fully_randomized(model, plan.layers, plan.seed)
        full = map_similarity(maps, maps_fn(cache[key]), m)
    sc.update({f"randomization.{k}": v for k, v in full.items()})
    logit = map_similarity(maps, maps_fn(model, others), m)
    sc.update({f"random_logit.{k}": v for k, v in logit.items()})
    if masks is not None:
        sc["pointing_game"] = pointing_game(maps.cpu(), masks, m)
        sc["relevance_mass"] = relevance_mass(maps.cpu(), masks, m)
    if plan.independent:
        curve = randomization_curve(
            model, maps_fn, maps, plan.layers, order="independent", seed=plan.seed, method=m
        )
        out.update(_curve("independent", m, curve))
    for k, (name, s) in enumerate(sc.items()):
        out[f"score|{m}|{k:03d}|{name}|{'+' if s.higher_is_better else '-'}"] = s.values
    return out


def _curve(kind: str, m: str, curve: list[tuple[str, dict[str, Score]]]) -> dict[str, torch.Tensor]:
    sims = list(curve[0][1])
    return {f"{kind}|{m}|{s}": torch.stack([d[s].values for _, d in curve], 1) for s in sims}


def aggregate_trust(plan: TrustPlan, values: dict[str, torch.Tensor], seconds: float = 0.0) -> TrustReport:
    """The report from the per-image outputs of :func:`score_images` gathered over all images
    (``[N, ...]`` in plan order): Score objects, curve means, verdicts and readings."""
    skipped = list(plan.skipped)
    scores: dict[str, dict[str, Score]] = {}
    cascading: dict[str, list] = {}
    indep: dict[str, list] = {}
    done: list[str] = []
    top_down = list(reversed(plan.layers))
    for m in plan.methods:
        err = values.get(f"error|{m}")
        if err is not None and bool(err.any()):
            row = err[err.any(1)][0]
            skipped.append((m, bytes(row.tolist()).rstrip(b"\0").decode("utf-8", "replace")))
            continue
        found = []
        for key, v in values.items():
            head, k, name, sign = key.rsplit("|", 3) if key.startswith("score|") else ("", "", "", "")
            if head == f"score|{m}":
                found.append((k, name, Score(name, v, sign == "+", m)))
        scores[m] = {name: s for _, name, s in sorted(found, key=lambda t: t[0])}
        for kind, store in (("cascading", cascading), ("independent", indep)):
            sims = {key.rsplit("|", 1)[1]: v for key, v in values.items() if key.startswith(f"{kind}|{m}|")}
            if sims:
                store[m] = [
                    (ly, {s: float(v[:, j].mean()) for s, v in sims.items()}) for j, ly in enumerate(top_down)
                ]
        done.append(m)
    passed = {m: decide(m, scores, plan.tests) for m in done}
    readings = {m: reading(m, scores, passed[m], plan.tests) for m in done}
    return TrustReport(
        methods=done,
        scores=scores,
        cascading=cascading,
        independent=indep,
        passed=passed,
        readings=readings,
        skipped=skipped,
        tests=plan.tests,
        n_images=len(plan.images),
        accuracy=float(values["correct"].mean()),
        seconds=seconds,
        options={
            "split": plan.split,
            "seed": plan.seed,
            "steps": plan.steps,
            "substrate": plan.substrate,
            "blur_sigma": plan.blur_sigma,
            "target": "label",
            "layers": plan.layers,
            "cascade": plan.cascade,
            "independent": plan.independent,
            "images": plan.images.tolist(),
        },
    )


def run_trust(
    model: nn.Module,
    dataset: ImageDataset,
    methods: Sequence[str] | None = None,
    *,
    n_images: int = 32,
    out_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
    seed: int = 0,
    steps: int = 50,
    substrate: str = "mean",
    blur_sigma: float = 5.0,
    cascade: bool = True,
    independent: bool = False,
    max_cost: int | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
) -> TrustReport:
    """Score every method (and both controls) on ``n_images`` images of ``dataset``.

    Args:
        model: the trained classifier (any ``nn.Module`` returning logits); returned untouched
            (randomization works on deep copies).
        dataset: the data it was trained on (normalization statistics, ``masks`` if any).
        methods: method names from ``METHODS``; default all registered ones. Controls are always added.
        n_images: images drawn (seeded) from ``split``.
        out_dir: folder for ``scores.json``, ``table.csv`` and ``randomization.png``; nothing written if None.
        steps, substrate, blur_sigma: deletion/insertion settings (see :mod:`.faithfulness`).
        cascade: draw the cascading curve layer by layer (one map per layer group); without it
            only the fully randomized model is compared (the verdict needs only that). ``FAST``
            (16 images, 20 steps, no cascade, methods of cost <= 64) is the quick preset.
        independent: also run the one-layer-at-a-time randomization curve (slower).
        max_cost: with ``methods=None``, leave out methods whose ``cost`` exceeds it (listed as skipped).
        method_options: per-method keyword options for ``explain``. A stochastic method's ``seed``
            (default ``seed``) is the base of a per-image seed (:func:`image_seed`).
        progress: callback ``(done, total)`` after each method (of each batch).
        batch_size: images scored together (default: all); the scores do not depend on it.

    The per-image work is :func:`score_images`, the aggregation :func:`aggregate_trust`;
    :func:`trust_dataset` runs the same split across processes/devices.
    """
    t0 = time.perf_counter()
    plan = plan_trust(
        model, dataset, methods, n_images=n_images, split=split, seed=seed, steps=steps,
        substrate=substrate, blur_sigma=blur_sigma, cascade=cascade, independent=independent,
        max_cost=max_cost, method_options=method_options,
    )
    n = len(plan.images)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise CnnlensError(f"batch_size must be an int >= 1 (or None: all images at once); got {batch_size!r}")
    step = batch_size or n
    total = len(plan.methods) * ((n + step - 1) // step)
    done = 0

    def tick(_: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    from ..explain.distributed import merge_parts

    dev = model_device(model)
    x_all = dataset.normalize(dataset.images[plan.images])
    cache: dict[str, Any] = {}
    parts = []
    for b0 in range(0, n, step):
        pos = torch.arange(b0, min(b0 + step, n))
        parts.append({"idx": pos, **score_images(model, plan, pos, x_all[pos].to(dev), cache, tick)})
    report = aggregate_trust(plan, merge_parts(parts, n), time.perf_counter() - t0)
    if out_dir is not None:
        write_report(report, out_dir)
    return report


def trust_dataset(
    model: nn.Module,
    dataset: ImageDataset,
    methods: Sequence[str] | None = None,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    shard_dir: str | os.PathLike[str] | None = None,
    n_images: int = 32,
    split: str = "test",
    seed: int = 0,
    steps: int = 50,
    substrate: str = "mean",
    blur_sigma: float = 5.0,
    cascade: bool = True,
    independent: bool = False,
    max_cost: int | None = None,
    method_options: dict[str, dict[str, Any]] | None = None,
    batch_size: int = 16,
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    num_nodes: int = 1,
    progress: bool = False,
) -> TrustReport | None:
    """:func:`run_trust` with the images split across ``devices`` x ``num_nodes`` processes
    (e.g. ``accelerator="cpu", devices=2, strategy="ddp"``) through Lightning's ``trainer.predict``
    (:func:`~cnnlens.explain.distributed.map_images`).

    Each rank scores its shard with :func:`score_images` and writes it to ``shard_dir`` (default
    ``out_dir/.shards``; it must be on a filesystem every rank sees); global rank 0 gathers the
    per-image values, aggregates them once (:func:`aggregate_trust`), writes ``scores.json``,
    ``table.csv`` and ``randomization.png`` into ``out_dir`` and returns the report, the same
    (to float rounding) as a single-process :func:`run_trust`. The other ranks return ``None`` and
    write nothing outside ``shard_dir``, which rank 0 removes.
    """
    from ..explain.distributed import map_images

    t0 = time.perf_counter()
    if out_dir is None and shard_dir is None:
        raise CnnlensError(
            "trust_dataset needs out_dir= (or shard_dir=): a folder every process can write to, "
            "e.g. out_dir='runs/x/trust'"
        )
    shards = Path(shard_dir) if shard_dir is not None else Path(out_dir) / ".shards"  # type: ignore[arg-type]
    plan = plan_trust(
        model, dataset, methods, n_images=n_images, split=split, seed=seed, steps=steps,
        substrate=substrate, blur_sigma=blur_sigma, cascade=cascade, independent=independent,
        max_cost=max_cost, method_options=method_options,
    )
    cache: dict[str, Any] = {}

    def fn(pos: torch.Tensor, imgs: torch.Tensor, _y: torch.Tensor) -> dict[str, torch.Tensor]:
        x = dataset.normalize(imgs.cpu()).to(model_device(model))
        return score_images(model, plan, pos, x, cache)

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


def _headline(test: str, name: str) -> str:
    return name if test in ("faithfulness", "localization") else f"{test}.{name}"


def decide(method: str, scores: dict[str, dict[str, Score]], tests: Sequence[str]) -> dict[str, bool | None]:
    """Pass/fail of ``method`` on each test against the controls (``None`` for a control)."""
    out: dict[str, bool | None] = {}
    for t in tests:
        test: TrustTest = TRUST_METRICS.get(t)
        if is_control(method):
            out[t] = None
            continue
        ok = True
        for h in test.headline:
            key = _headline(t, h)
            s = scores[method][key]
            ctrl = [scores[c][key] for c in CONTROLS]
            if test.rule == "beat_controls":
                ok &= all(beats(s, c) for c in ctrl)
            else:  # midpoint between the model-blind edge map and pure noise
                edge, rnd = scores["control_edge"][key].mean, scores["control_random"][key].mean
                mid = (edge + rnd) / 2
                ok &= (s.mean < mid) if not s.higher_is_better else (s.mean > mid)
        out[t] = bool(ok)
    return out


_WORDS = {
    "faithfulness": ("faithful", "no more faithful than a control"),
    "randomization": ("sensitive to the model's weights", "insensitive to the model's weights"),
    "random_logit": ("class-sensitive", "insensitive to the explained class"),
    "localization": ("localizes the evidence", "does not localize the evidence better than a control"),
}


def _numbers(t: str, scores: dict[str, dict[str, Score]], m: str) -> str:
    def f(key: str, who: str) -> str:
        return f"{scores[who][key].mean:.2f}"

    if t == "faithfulness":
        k = "insertion_minus_deletion"
        return f"ins-del {f(k, m)}; edge control {f(k, 'control_edge')}, random {f(k, 'control_random')}"
    if t == "randomization":
        k = "randomization.spearman_abs"
        return (
            f"|rank corr| {f(k, m)} after full randomization; edge control {f(k, 'control_edge')}, "
            f"random {f(k, 'control_random')}"
        )
    if t == "random_logit":
        k = "random_logit.spearman_abs"
        return f"|rank corr| {f(k, m)} with another class's map; edge control {f(k, 'control_edge')}"
    k = "pointing_game"
    return (
        f"pointing {f(k, m)}, mass {f('relevance_mass', m)}; edge control {f(k, 'control_edge')}/"
        f"{f('relevance_mass', 'control_edge')}, random {f(k, 'control_random')}/"
        f"{f('relevance_mass', 'control_random')}"
    )


def reading(
    method: str, scores: dict[str, dict[str, Score]], passed: dict[str, bool | None], tests: Sequence[str]
) -> str:
    """One line from the numbers: failed tests first (with their numbers), then what passed."""
    if is_control(method):
        what = "random noise" if method == "control_random" else "Sobel edges of the image"
        s = scores[method]
        nums = [
            f"ins-del {s['insertion_minus_deletion'].mean:.2f}",
            f"|rank corr| {s['randomization.spearman_abs'].mean:.2f} after full randomization",
        ]
        if "pointing_game" in s:
            nums.append(f"pointing {s['pointing_game'].mean:.2f}")
        return f"{method}: control ({what}; ignores the model): " + ", ".join(nums)
    failed = [t for t in tests if passed.get(t) is False]
    ok = [t for t in tests if passed.get(t)]
    parts = [f"{_WORDS[t][1]} ({_numbers(t, scores, method)})" for t in failed]
    if ok and not failed:
        parts = [f"{_WORDS[t][0]} ({_numbers(t, scores, method)})" for t in ok[:1]]
        parts.append("passes " + ", ".join(ok))
    elif ok:
        parts.append("passes " + ", ".join(ok))
    return f"{method}: " + "; ".join(parts)


def write_report(report: TrustReport, out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir/scores.json``, ``out_dir/table.csv`` and ``out_dir/randomization.png``."""
    out = Path(out_dir)
    write_json(out / "scores.json", report.to_dict())
    header, rows = report.table()
    write_csv(out / "table.csv", header, rows)
    if not report.cascading:
        return out / "scores.json"
    from ..report.fig_trust import plot_randomization

    plot_randomization(
        report.cascading,
        out / "randomization.png",
        metric="spearman_abs",
        title=f"cascading randomization ({report.n_images} images)",
    )
    return out / "scores.json"
