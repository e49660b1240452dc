"""The results of a trust run (:class:`TrustReport`): verdicts and readings decided by each test,
the table and ``scores.json`` rendered from the tests' declarations."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import write_csv, write_json
from .base import TRUST_METRICS, ChanceCheck, Evidence, Score, TrustTest
from .controls import is_control

Curve = list[tuple[str, dict[str, float]]]  # [(layer, {similarity: mean})] from the top layer down

CONTROL_WHAT = {"control_random": "random noise", "control_edge": "Sobel edges of the image"}


def _test(name: str) -> TrustTest:
    return TRUST_METRICS.get(name)()


@dataclass
class TrustReport:
    """Results of :func:`~cnnlens.metrics.run_trust`.

    Attributes:
        methods: scored methods (controls included), in order.
        scores: method -> score key -> :class:`Score` (``[N]`` values).
        curves: ``"<test>_<kind>"`` (e.g. ``"randomization_cascading"``) -> method -> curve
            ``[(layer, {similarity: mean})]`` from the top layer down.
        passed: method -> test -> ``True``/``False``; ``None``: a control, or the test cannot be
            judged on these images (see ``notes``).
        readings: method -> one line generated from the numbers.
        skipped: ``(method, reason)`` for methods that could not be scored.
        tests: names of the tests that were run.
        chance: how far the model is from chance on the images.
        notes: sentences the tests ask the table and the report to show (e.g. why a test cannot be judged).
        classes: test name -> its :class:`TrustTest` class, whose declarations the table and
            ``scores.json`` render (taken from the registry when the run is aggregated).
        per_image: ``{"split", "indices": [dataset index per image], "methods": {method: {"scores":
            {key: [one float per image]}, "curves": {"deletion": [[S+1 floats] per image],
            "insertion": [...]}}}}`` (the report's explorer); ``None`` when not kept.
    """

    methods: list[str]
    scores: dict[str, dict[str, Score]]
    curves: dict[str, dict[str, Curve]]
    passed: dict[str, dict[str, bool | None]]
    readings: dict[str, str]
    skipped: list[tuple[str, str]]
    tests: list[str]
    n_images: int
    accuracy: float
    seconds: float
    chance: ChanceCheck
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, type[TrustTest]] = field(default_factory=dict)
    per_image: dict[str, Any] | None = None

    def _cls(self, test: str) -> type[TrustTest]:
        return self.classes[test] if test in self.classes else TRUST_METRICS.get(test)

    @property
    def cascading(self) -> dict[str, Curve]:
        """method -> cascading randomization curve (empty without ``cascade``)."""
        return self.curves.get("randomization_cascading", {})

    @property
    def independent(self) -> dict[str, Curve]:
        """method -> one-layer-at-a-time randomization curve (empty without ``independent``)."""
        return self.curves.get("randomization_independent", {})

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows (strings): one row per method, the tests' columns, a verdict per test
        (``pass``, ``FAIL``, ``n/a``: cannot be judged, ``control``), and the reading."""
        cols = [c for t in self.tests for c in self._cls(t).columns]
        cols = [c for c in cols if any(c.key in s for s in self.scores.values())]
        header = ["method"] + [c.label for c in cols] + self.tests + ["reading"]
        rows = []
        for m in self.methods:
            sc = self.scores[m]
            row = [m] + [f"{sc[c.key].mean:.3f}" if c.key in sc else "-" for c in cols]
            row += [verdict_word(m, self.passed[m].get(t), t in self.passed[m]) for t in self.tests]
            row.append(self.readings[m])
            rows.append(row)
        return header, rows

    def to_dict(self) -> dict[str, Any]:
        kinds = [f"{t}_{k}" for t in self.tests for k in self._cls(t).curves]
        return {
            "n_images": self.n_images,
            "accuracy_on_images": self.accuracy,
            "seconds": self.seconds,
            "options": self.options,
            "tests": {t: self._cls(t).declaration() for t in self.tests},
            "controls": [m for m in self.methods if is_control(m)],
            "methods": {
                m: {
                    "control": is_control(m),
                    "scores": {k: s.to_dict() for k, s in self.scores[m].items()},
                    **{kind: [[ly, d] for ly, d in self.curves.get(kind, {}).get(m, [])] for kind in kinds},
                    "passed": self.passed[m],
                    "reading": self.readings[m],
                }
                for m in self.methods
            },
            "skipped": [{"method": m, "reason": r} for m, r in self.skipped],
            "chance": self.chance.to_dict(),
            "notes": self.notes,
            **({"per_image": self.per_image} if self.per_image is not None else {}),
        }


def verdict_word(method: str, passed: bool | None, present: bool = True) -> str:
    """How the table shows a verdict: ``pass``, ``FAIL``, ``control``, ``n/a`` (cannot be judged)
    or ``-`` (not run)."""
    if is_control(method):
        return "control"
    if passed is None:
        return "n/a" if present else "-"
    return "pass" if passed else "FAIL"


def decide(method: str, ev: Evidence, tests: Sequence[str]) -> dict[str, bool | None]:
    """Pass/fail of ``method`` on each test against the controls (``None`` for a control, or
    where the test cannot be judged)."""
    return {t: None if is_control(method) else _test(t).decide(method, ev) for t in tests}


def reading(method: str, ev: Evidence, passed: dict[str, bool | None], tests: Sequence[str]) -> str:
    """One line from the numbers: failed tests first (with their numbers), then those that cannot
    be judged, then what passed."""
    if is_control(method):
        what = CONTROL_WHAT.get(method, "a control")
        nums = [n for t in tests if (n := _test(t).control_note(method, ev))]
        return f"{method}: control ({what}; ignores the model): " + ", ".join(nums)
    failed = [t for t in tests if passed.get(t) is False]
    unjudged = [t for t in tests if t in passed and passed[t] is None]
    ok = [t for t in tests if passed.get(t)]
    parts = [_test(t).reading(method, ev, False) for t in failed]
    parts += [_test(t).reading(method, ev, None) for t in unjudged]
    if ok and not parts:
        parts = [_test(ok[0]).reading(method, ev, True)]
    if ok:
        parts.append("passes " + ", ".join(ok))
    return f"{method}: " + "; ".join(parts)


def notes(ev: Evidence, tests: Sequence[str]) -> list[str]:
    """The sentences the tests ask to show about these images."""
    return [n for t in tests if (n := _test(t).note(ev))]


def declarations(scores_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """test -> its declaration (:meth:`~cnnlens.metrics.base.TrustTest.declaration`) as recorded in a
    ``scores.json``; a file written before tests recorded their columns gets them from the registry
    (a test no longer registered: no columns, its headline keys as written)."""
    out = {}
    for t, d in scores_json["tests"].items():
        if "columns" not in d and t in TRUST_METRICS:
            d = {**TRUST_METRICS.get(t).declaration(), **d}
        out[t] = {"keys": list(d["headline"]), "columns": [], "scores": {}, **d}
    return out


def write_report(report: TrustReport, out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir/scores.json`` and ``out_dir/table.csv``. The figure is drawn by
    :func:`cnnlens.report.fig_trust.plot_trust` (the CLI and the pipeline call it)."""
    out = Path(out_dir)
    write_json(out / "scores.json", report.to_dict())
    header, rows = report.table()
    write_csv(out / "table.csv", header, rows)
    return out / "scores.json"


__all__ = ["TrustReport", "decide", "declarations", "notes", "reading", "verdict_word", "write_report"]
