"""``RUN/eval/``: ``metrics.json``, ``predictions.csv`` and ``confusion.csv`` of one evaluation.

With test-time augmentation the same three files go to ``RUN/eval/tta-<mode>/`` (``folder=``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CnnlensError
from ..evaluate import EvalResult
from ..io import write_csv
from .base import FileRecord, JsonRecord


def eval_folder(tta: str | None = None) -> str:
    """``eval`` or, with test-time augmentation, ``eval/tta-<mode>``."""
    return "eval" if tta in (None, "none") else f"eval/tta-{tta}"


@dataclass
class EvalMetrics(JsonRecord):
    """``eval/metrics.json``: accuracy, per-class precision/recall/F1, confusion, most-confused
    pairs, top losses and calibration of one split (:meth:`EvalResult.to_dict`)."""

    PATH = "{folder}/metrics.json"
    MAKER = "cnnlens evaluate RUN"
    WHERE = {"folder": "eval"}

    split: str
    n: int
    accuracy: float
    classes: list[str]
    per_class: list[dict[str, Any]]
    macro_f1: float
    confusion: list[list[int]]
    confusion_normalized: list[list[float]] = field(default_factory=list)
    most_confused: list[dict[str, Any]] = field(default_factory=list)
    top_losses: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] | None = None

    @classmethod
    def from_result(cls, result: EvalResult) -> EvalMetrics:
        return cls.from_dict(result.to_dict())


class _CsvRecord(FileRecord):
    MAKER = "cnnlens evaluate RUN"
    WHERE = {"folder": "eval"}

    @classmethod
    def _rows(cls, run_dir: str | os.PathLike[str], **where: Any) -> tuple[Path, list[str], list[list[str]]]:
        p = cls.existing(run_dir, **where)
        with open(p, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            raise CnnlensError(f"{p} is empty; re-create it with `{cls.MAKER}`")
        return p, rows[0], rows[1:]


@dataclass
class Predictions(_CsvRecord):
    """``eval/predictions.csv``: one row per image: dataset index, id, true and predicted class,
    the softmax probability of every class (6 decimals)."""

    PATH = "{folder}/predictions.csv"

    classes: list[str]
    indices: list[int]
    ids: list[str]
    labels: list[str]
    preds: list[str]
    probs: list[list[float]]

    @classmethod
    def from_result(cls, result: EvalResult, ids: list[str] | None = None) -> Predictions:
        idx = [int(i) for i in result.indices.tolist()]
        return cls(
            classes=list(result.classes),
            indices=idx,
            ids=[str(ids[i]) if ids else str(i) for i in idx],
            labels=[result.classes[int(v)] for v in result.labels.tolist()],
            preds=[result.classes[int(v)] for v in result.preds.tolist()],
            probs=result.probs.tolist(),
        )

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        header = ["index", "id", "label", "pred", *[f"p_{c}" for c in self.classes]]
        rows = [[i, d, lb, pr, *[f"{v:.6f}" for v in p]]
                for i, d, lb, pr, p in zip(self.indices, self.ids, self.labels, self.preds, self.probs)]
        return write_csv(self.path(run_dir, **where), header, rows)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], **where: Any) -> Predictions:
        p, header, rows = cls._rows(run_dir, **where)
        if header[:4] != ["index", "id", "label", "pred"]:
            raise CnnlensError(f"{p} does not start with the columns index,id,label,pred; re-create it with "
                               f"`{cls.MAKER}`")
        try:
            return cls(classes=[h[2:] for h in header[4:]], indices=[int(r[0]) for r in rows],
                       ids=[r[1] for r in rows], labels=[r[2] for r in rows], preds=[r[3] for r in rows],
                       probs=[[float(v) for v in r[4:]] for r in rows])
        except (ValueError, IndexError):
            raise CnnlensError(f"{p} has a malformed row; re-create it with `{cls.MAKER}`") from None


@dataclass
class Confusion(_CsvRecord):
    """``eval/confusion.csv``: counts, rows = true class, columns = predicted class."""

    PATH = "{folder}/confusion.csv"

    classes: list[str]
    counts: list[list[int]]

    @classmethod
    def from_result(cls, result: EvalResult) -> Confusion:
        return cls(classes=list(result.classes), counts=result.confusion.tolist())

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        return write_csv(self.path(run_dir, **where), ["true\\pred", *self.classes],
                         [[c, *row] for c, row in zip(self.classes, self.counts)])

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], **where: Any) -> Confusion:
        p, header, rows = cls._rows(run_dir, **where)
        try:
            return cls(classes=header[1:], counts=[[int(v) for v in r[1:]] for r in rows])
        except ValueError:
            raise CnnlensError(f"{p} has a non-integer count; re-create it with `{cls.MAKER}`") from None


def save_eval(result: EvalResult, run_dir: str | os.PathLike[str], ids: list[str] | None = None,
              tta: str | None = None, *, folder: str | None = None) -> Path:
    """The three records of one evaluation, under ``RUN/eval/`` (``eval/tta-<mode>/`` with TTA;
    ``folder``: another folder under ``RUN/``, e.g. ``eval/split-val`` for the report's ``--split``)."""
    folder = folder or eval_folder(tta)
    Predictions.from_result(result, ids).save(run_dir, folder=folder)
    Confusion.from_result(result).save(run_dir, folder=folder)
    return EvalMetrics.from_result(result).save(run_dir, folder=folder)
