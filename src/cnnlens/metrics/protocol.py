"""The trust protocol: every registered method and both controls, every test, one verdict each.

``run_trust(model, dataset, methods=None, n_images=32, out_dir=...)`` explains ``n_images`` test
images (the class explained is the true label), scores each method with every test registered in
:data:`TRUST_METRICS` that applies to the data, decides pass/fail against the controls, writes
``scores.json`` + ``table.csv`` + the randomization figure, and returns a :class:`TrustReport`.
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
        raise ValueError(f"n_images must be an int >= 2 (scores need a spread); got {n_images!r}")
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


def _means(d: dict[str, Score]) -> dict[str, float]:
    return {k: s.mean for k, s in d.items()}


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
        method_options: per-method keyword options for ``explain``.
        progress: callback ``(done, total)`` after each method.
    """
    t0 = time.perf_counter()
    if methods is None:
        chosen, skipped = default_methods(max_cost)
    else:
        if isinstance(methods, str):
            raise TypeError("methods must be a list of names, e.g. ['gradcam', 'saliency']; got a string")
        for m in methods:
            METHODS.get(m)  # unknown names raise, listing the valid ones
        chosen, skipped = [m for m in methods if not is_control(m)], []
    todo = chosen + list(CONTROLS)
    method_options = dict(method_options or {})
    method_options.setdefault("control_random", {})
    dev = model_device(model)
    idx = select_images(dataset, n_images, split, seed)
    x = dataset.normalize(dataset.images[idx]).to(dev)
    targets = dataset.labels[idx].to(dev)
    if (targets < 0).any():
        raise ValueError(f"split {split!r} has unlabeled images; the trust protocol explains the true class")
    masks = dataset.masks[idx] if dataset.masks is not None else None
    with model_guard(model), torch.no_grad():
        logits = model(x)
    acc = float((logits.argmax(1) == targets).float().mean())
    num_classes = int(logits.shape[1])
    layers = layer_groups(model, parameter_layers(model, x))
    randomized = None if cascade else fully_randomized(model, layers, seed)
    others = other_classes(targets, num_classes, seed).to(dev)
    tests = [t for t in TRUST_METRICS.names() if masks is not None or not TRUST_METRICS.get(t).needs_masks]

    scores: dict[str, dict[str, Score]] = {}
    cascading: dict[str, list] = {}
    indep: dict[str, list] = {}
    done: list[str] = []
    for k, m in enumerate(todo):
        opts = dict(method_options.get(m, {}))
        call = 0

        def maps_fn(
            mod: nn.Module, target: torch.Tensor = targets, m: str = m, opts: dict = opts
        ) -> torch.Tensor:
            nonlocal call
            call += 1
            o = dict(opts)
            if m == "control_random":  # fresh, reproducible noise on every call
                o["seed"] = seed * 100003 + call
            return explain(mod, x, m, target=target, **o).maps

        try:
            t1 = time.perf_counter()
            maps = maps_fn(model)
            sc, _ = deletion_insertion(
                model,
                x,
                maps,
                targets,
                method=m,
                steps=steps,
                substrate=substrate,
                stats=(dataset.mean, dataset.std),
                blur_sigma=blur_sigma,
            )
            if cascade:  # its last step is the fully randomized model (same seeds as fully_randomized)
                curve = randomization_curve(
                    model, maps_fn, maps, layers, order="cascading", seed=seed, method=m
                )
                cascading[m] = [(ly, _means(d)) for ly, d in curve]
                full = curve[-1][1]
            else:
                full = map_similarity(maps, maps_fn(randomized), m)
            sc.update({f"randomization.{k2}": v for k2, v in full.items()})
            logit = map_similarity(maps, maps_fn(model, others), m)
            sc.update({f"random_logit.{k2}": v for k2, v in logit.items()})
            if masks is not None:
                sc["pointing_game"] = pointing_game(maps.cpu(), masks, m)
                sc["relevance_mass"] = relevance_mass(maps.cpu(), masks, m)
            if independent:
                curve = randomization_curve(
                    model, maps_fn, maps, layers, order="independent", seed=seed, method=m
                )
                indep[m] = [(ly, _means(d)) for ly, d in curve]
            scores[m] = sc
            done.append(m)
            log.info("trust: %s scored in %.1f s", m, time.perf_counter() - t1)
        except (ValueError, TypeError, RuntimeError) as e:
            if is_control(m):
                raise
            skipped.append((m, f"{type(e).__name__}: {e}"))
            log.warning("trust: %s skipped: %s", m, e)
        if progress is not None:
            progress(k + 1, len(todo))

    passed = {m: decide(m, scores, tests) for m in done}
    readings = {m: reading(m, scores, passed[m], tests) for m in done}
    report = TrustReport(
        methods=done,
        scores=scores,
        cascading=cascading,
        independent=indep,
        passed=passed,
        readings=readings,
        skipped=skipped,
        tests=tests,
        n_images=len(idx),
        accuracy=acc,
        seconds=time.perf_counter() - t0,
        options={
            "split": split,
            "seed": seed,
            "steps": steps,
            "substrate": substrate,
            "blur_sigma": blur_sigma,
            "target": "label",
            "layers": layers,
            "cascade": cascade,
            "independent": independent,
            "images": idx.tolist(),
        },
    )
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
