"""``RUN/trust/``: ``scores.json`` and its table ``table.csv`` (the figure ``randomization.png`` is
drawn beside them by the pipeline)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import write_csv
from .base import JsonRecord, file_field


@dataclass
class TrustScores(JsonRecord):
    """``trust/scores.json``: per method, every score (mean, sem, values), pass/fail per test and its
    one-line reading; the tests run (headline keys, direction, rule), the options and the controls.
    ``table``: ``(header, rows)`` of ``trust/table.csv`` (what ``cnnlens trust`` prints).
    ``per_image`` (optional; the report's explorer): ``{"split", "indices": [dataset index per scored
    image], "methods": {method: {"scores": {score_key: [one float per image, NaN where not computed]},
    "curves": {"deletion": [[S+1 floats] per image], "insertion": [...]}}}}``."""

    PATH = "trust/scores.json"
    MAKER = "cnnlens trust RUN"

    n_images: int
    accuracy_on_images: float
    seconds: float
    options: dict[str, Any]
    tests: dict[str, dict[str, Any]]
    controls: list[str]
    methods: dict[str, dict[str, Any]]
    skipped: list[dict[str, str]] = field(default_factory=list)
    per_image: dict[str, Any] | None = None
    table: tuple[list[str], list[list[str]]] | None = file_field(default=None)

    @classmethod
    def from_report(cls, report: Any) -> TrustScores:
        """The record of a :class:`cnnlens.metrics.TrustReport` (its ``to_dict()`` and ``table()``)."""
        rec = cls.from_dict(report.to_dict())
        rec.table = report.table()
        return rec

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        p = super().save(run_dir)
        if self.table is not None:
            write_csv(p.with_name("table.csv"), *self.table)
        return p
