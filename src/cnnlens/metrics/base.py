"""What the trust protocol is made of: a :class:`Score` (one number per image, with its direction)
and the :class:`TrustTest` base class, whose subclasses (one module each, in
:mod:`cnnlens.metrics.trust_tests`) are registered in :data:`TRUST_METRICS`.

A trust test owns everything about itself: what it measures per image (:meth:`TrustTest.measure`),
the score keys it returns and their direction (:attr:`TrustTest.scores`), the columns it shows
(:attr:`TrustTest.columns`), its pass/fail rule against the controls (:meth:`TrustTest.decide`) and
its one-line reading (:meth:`TrustTest.reading`). The protocol, the table, ``scores.json`` and the
report only loop over the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import CnnlensError, CnnlensTypeError
from ..registry import Registry
from .trust_config import TrustConfig


@dataclass(frozen=True)
class Score:
    """One trust metric for one method on ``N`` images.

    Attributes:
        name: metric name (``"deletion_auc"``, ``"spearman_abs"``, ...).
        values: ``float64 [N]`` on the CPU, one number per image.
        higher_is_better: the direction: ``True`` when a larger value means a more trustworthy map.
        method: the explanation method scored (``""`` when not bound to one).
    """

    name: str
    values: torch.Tensor
    higher_is_better: bool
    method: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.values, torch.Tensor) or self.values.ndim != 1:
            raise CnnlensTypeError(
                f"Score {self.name!r}: values must be a 1-D tensor [N]; got "
                f"{getattr(self.values, 'shape', type(self.values).__name__)}"
            )
        object.__setattr__(self, "values", self.values.detach().to("cpu", torch.float64))

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if len(self.values) else math.nan

    @property
    def sem(self) -> float:
        """Standard error of the mean (0 for a single image)."""
        n = len(self.values)
        return float(self.values.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0

    def to_dict(self, with_values: bool = True) -> dict:
        d = {"mean": self.mean, "sem": self.sem, "higher_is_better": self.higher_is_better}
        if with_values:
            d["values"] = [float(v) for v in self.values]
        return d


def beats(method: Score, control: Score, margin_se: float = 2.0) -> bool:
    """Whether ``method`` beats ``control`` on the same images: the paired difference (in the
    score's good direction) is positive and larger than ``margin_se`` standard errors."""
    if method.values.shape != control.values.shape:
        raise CnnlensError(
            f"scores {method.name!r} of {method.method!r} and {control.method!r} cover "
            f"different images ({len(method.values)} vs {len(control.values)})"
        )
    d = method.values - control.values
    if not method.higher_is_better:
        d = -d
    n = len(d)
    if n == 0:
        return False
    se = float(d.std(unbiased=True) / math.sqrt(n)) if n > 1 else 0.0
    return float(d.mean()) > max(margin_se * se, 1e-12)


# ---- what a test sees ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodBatch:
    """One method on one batch of the protocol's images: what :meth:`TrustTest.measure` works on.

    Attributes:
        method: the explanation method (or control) scored.
        model: the trained model (leave it untouched; randomize deep copies).
        x: normalized images ``[B, C, H, W]`` on the model's device.
        maps: the method's maps ``[B, H, W]`` for the true classes.
        targets: ``int64 [B]`` true classes; ``others``: ``int64 [B]`` another class per image.
        masks: ``bool [B, H, W]`` ground-truth evidence (CPU) or ``None``.
        index: ``int64 [B]`` the images' indices in the dataset.
        layers: parameter layer groups of the model, bottom to top.
        stats: ``(mean, std)`` of the input normalization.
        config: the protocol's settings.
        explain: ``explain(model=None, target=None, x=None) -> maps [B, H, W]`` of the method for
            another model, class or input (defaults: the trained model, the true classes, ``x``);
            per-image seeds as the protocol's (the random control draws fresh noise per call).
        cache: kept between batches of one process (e.g. a randomized copy of the model).
    """

    method: str
    model: nn.Module
    x: torch.Tensor
    maps: torch.Tensor
    targets: torch.Tensor
    others: torch.Tensor
    masks: torch.Tensor | None
    index: torch.Tensor
    layers: list[str]
    stats: tuple[Any, Any]
    config: TrustConfig
    explain: Callable[..., torch.Tensor]
    cache: dict[str, Any]


@dataclass
class Measured:
    """What :meth:`TrustTest.measure` returns for one method on one batch of ``B`` images.

    Attributes:
        values: score key -> ``[B]`` values, exactly the keys the test declares in ``scores``.
        curves: curve kind (e.g. ``"cascading"``) -> similarity -> ``[B, L]``, one column per
            layer group from the top layer down; written to ``scores.json`` as ``<test>_<kind>``.
    """

    values: dict[str, torch.Tensor]
    curves: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


@dataclass(frozen=True)
class ChanceCheck:
    """How far the model is from chance on the scored images (softmax probabilities ``p [N, K]``).

    ``deviation`` is the mean over images of ``max_k |p_k - 1/K|``; the model is ``at_chance`` when
    it is below ``margin`` (:attr:`TrustConfig.chance_margin`): every probability is then near
    ``1/K`` and a perturbation can barely move the explained class's probability.
    """

    num_classes: int
    mean_top_probability: float
    deviation: float
    margin: float

    @property
    def at_chance(self) -> bool:
        return self.deviation < self.margin

    @classmethod
    def of(cls, probs: torch.Tensor, margin: float) -> ChanceCheck:
        p = probs.double()
        k = int(p.shape[1])
        return cls(k, float(p.amax(1).mean()), float((p - 1.0 / k).abs().amax(1).mean()), float(margin))

    def sentence(self, n_images: int, split: str) -> str:
        return (
            f"the model is at chance on these {n_images} {split} images (mean top-class probability "
            f"{self.mean_top_probability:.2f}; chance 1/{self.num_classes} = {1 / self.num_classes:.2f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "mean_top_probability": self.mean_top_probability,
            "deviation": self.deviation,
            "margin": self.margin,
            "at_chance": self.at_chance,
        }


@dataclass(frozen=True)
class Evidence:
    """Everything a verdict and a reading are decided on, once all images are scored.

    Attributes:
        scores: method (controls included) -> score key -> :class:`Score` ``[N]``.
        chance: how far the model is from chance on these images.
        n_images, split: the scored image set.
    """

    scores: Mapping[str, Mapping[str, Score]]
    chance: ChanceCheck
    n_images: int
    split: str

    def mean(self, method: str, key: str) -> float:
        return self.scores[method][key].mean

    def f(self, method: str, key: str) -> str:
        """The mean of ``key`` for ``method``, as readings print it (2 decimals)."""
        return f"{self.mean(method, key):.2f}"

    def controls(self, *keys: str) -> str:
        """The controls' numbers for a reading: ``"edge control a/b, random a/b"`` (the means of
        ``keys``, as :meth:`f` prints them)."""
        return ", ".join(f"{label} {'/'.join(self.f(c, k) for k in keys)}"
                         for label, c in (("edge control", "control_edge"), ("random", "control_random")))


# ---- the test ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column of the trust table: score ``key``, its short ``label`` (terminal, ``table.csv``)
    and its ``title`` in the HTML report; the direction comes from the test's ``scores``."""

    key: str
    label: str
    title: str


class TrustTest:
    """A pass/fail test of the trust protocol. Subclass it in a module of its own, set the class
    attributes, implement :meth:`measure` (and :meth:`numbers`), and register the class with
    :func:`register_test` (see docs/architecture.md, "Adding a trust test").

    Class attributes:
        name: test name (a column of the table); ``description``: one line for tables and docs.
        scores: score key -> ``True`` when higher is better; every key :meth:`measure` returns, in
            the order they are reported.
        headline: the keys the verdict is decided on (all must pass).
        columns: what the table and the report show (:class:`Column`).
        rule: ``"beat_controls"``: each headline score beats both controls (:func:`beats`);
            ``"midpoint"``: each is nearer the random control than the edge control. Another
            rule: override :meth:`decide`.
        words: ``(passing, failing)`` phrases of the reading.
        needs_masks: run only on data with ground-truth masks.
        curves: curve kinds :meth:`measure` may return (``scores.json``: ``<name>_<kind>``).
        image_curves: curve kinds :meth:`measure` returns per image (``{kind: {"probability": [B, S+1]}}``),
            kept as they are in ``scores.json``'s ``per_image`` (not averaged over images).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    scores: ClassVar[dict[str, bool]]
    headline: ClassVar[tuple[str, ...]]
    columns: ClassVar[tuple[Column, ...]] = ()
    rule: ClassVar[str] = "beat_controls"
    words: ClassVar[tuple[str, str]] = ("passes", "fails")
    needs_masks: ClassVar[bool] = False
    curves: ClassVar[tuple[str, ...]] = ()
    image_curves: ClassVar[tuple[str, ...]] = ()

    def measure(self, b: MethodBatch) -> Measured:
        """Per-image values of every key in ``scores`` for ``b.method`` on one batch. A value must
        not depend on the other images of the batch."""
        raise NotImplementedError

    def decide(self, method: str, ev: Evidence) -> bool | None:
        """Pass (``True``), fail (``False``) or cannot be judged (``None``) against the controls."""
        from .controls import CONTROLS

        ok = True
        for key in self.headline:
            s = ev.scores[method][key]
            if self.rule == "beat_controls":
                ok &= all(beats(s, ev.scores[c][key]) for c in CONTROLS)
            elif self.rule == "midpoint":  # between the model-blind edge map and pure noise
                mid = (ev.mean("control_edge", key) + ev.mean("control_random", key)) / 2
                ok &= (s.mean < mid) if not s.higher_is_better else (s.mean > mid)
            else:
                raise CnnlensError(
                    f"trust test {self.name!r} has rule {self.rule!r}: use 'beat_controls' or "
                    "'midpoint', or override decide()"
                )
        return bool(ok)

    def numbers(self, method: str, ev: Evidence) -> str:
        """The numbers behind the verdict, for the reading (e.g. ``"ins-del 0.31; edge control 0.02"``)."""
        return "; ".join(f"{c.label} {ev.f(method, c.key)}" for c in self.columns)

    def reading(self, method: str, ev: Evidence, passed: bool | None) -> str:
        """One phrase for ``method``: ``"<word> (<numbers>)"``."""
        if passed is None:
            return f"{self.name} cannot be judged"
        return f"{self.words[0] if passed else self.words[1]} ({self.numbers(method, ev)})"

    def control_note(self, control: str, ev: Evidence) -> str | None:
        """What the reading of a control shows of this test (``None``: nothing)."""
        return None

    def note(self, ev: Evidence) -> str | None:
        """A sentence the table and the report must show about this test on these images (e.g.
        why it cannot be judged), or ``None``."""
        return None

    @classmethod
    def short(cls, key: str) -> str:
        """``key`` without the test's ``"<name>."`` prefix (the score name inside the test)."""
        return key[len(cls.name) + 1 :] if key.startswith(cls.name + ".") else key

    @classmethod
    def declaration(cls) -> dict[str, Any]:
        """What ``scores.json`` records of the test, so the report renders without the registry."""
        return {
            "headline": [cls.short(k) for k in cls.headline],
            "higher_is_better": cls.scores[cls.headline[0]],
            "rule": cls.rule,
            "description": cls.description,
            "keys": list(cls.headline),
            "scores": dict(cls.scores),
            "columns": [
                {"key": c.key, "label": c.label, "title": c.title, "higher_is_better": cls.scores[c.key]}
                for c in cls.columns
            ],
        }


# name -> TrustTest subclass; the protocol runs every registered test that applies to the data
TRUST_METRICS: Registry = Registry("trust metric")


def register_test(test: type[TrustTest]) -> type[TrustTest]:
    """Register a :class:`TrustTest` subclass (usable as a decorator); checks its declarations."""
    if not (isinstance(test, type) and issubclass(test, TrustTest)):
        raise CnnlensTypeError(f"register_test takes a TrustTest subclass; got {test!r}")
    for attr in ("name", "description", "scores", "headline"):
        if not hasattr(test, attr):
            raise CnnlensError(f"trust test {test.__name__} must set the class attribute {attr!r}")
    undeclared = [k for k in (*test.headline, *(c.key for c in test.columns)) if k not in test.scores]
    if undeclared:
        raise CnnlensError(
            f"trust test {test.name!r}: headline/column keys {undeclared} are not in its scores "
            f"({', '.join(test.scores)}); declare each key with its direction"
        )
    if len({test.scores[k] for k in test.headline}) > 1:
        raise CnnlensError(f"trust test {test.name!r}: its headline scores must share one direction")
    TRUST_METRICS.register(test.name, description=test.description)(test)
    return test


def unregister_test(name: str) -> None:
    """Remove a registered test (for tests and notebooks that register their own)."""
    TRUST_METRICS._entries.pop(name, None)


def tests_for(has_masks: bool, names: Sequence[str] | None = None) -> list[str]:
    """Registered tests that apply to the data (``needs_masks`` only with masks), in registry order."""
    return [
        t for t in (TRUST_METRICS.names() if names is None else names)
        if has_masks or not TRUST_METRICS.get(t).needs_masks
    ]
