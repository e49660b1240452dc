"""The files that describe a run's data and model, and the ones training writes.

``data/counts.json`` (+ ``counts.csv``), ``data/samples.json``, ``model/summary.json`` (+ ``summary.csv``)
are written by the pipeline; ``model.json``, ``config.yaml`` and ``history.csv`` are written by
:func:`cnnlens.train.train` while it trains (below this layer; the history grows once per epoch),
with the same format functions these records use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import RunConfig, load_config
from ..errors import CnnlensError
from ..io import read_json, write_csv, write_yaml
from ..models.summary import ModelSummary
from ..train.run import check_format, read_history, write_history
from .base import FileRecord, JsonRecord, MissingRecord


@dataclass
class DataCounts(JsonRecord):
    """``data/counts.json`` (and its table ``counts.csv``): images per class and split."""

    PATH = "data/counts.json"
    MAKER = "cnnlens report RUN"

    name: str
    source: str
    classes: list[str]
    splits: list[str]
    counts: dict[str, list[int]]
    unlabeled: dict[str, int]
    size: dict[str, int]
    shape: list[int]
    mean: list[float]
    std: list[float]
    normalization: Any = None  # where the model's mean/std come from (model.json)
    skipped: int = 0

    @classmethod
    def from_dataset(cls, ds: Any, normalization: Any = None) -> DataCounts:
        counts = ds.counts()
        splits = list(ds.splits)
        return cls(
            name=ds.name,
            source=str(ds.source),
            classes=list(ds.classes),
            splits=splits,
            counts={s: [int(v) for v in counts[s]] for s in splits},
            unlabeled={s: int((ds.labels[ds.splits[s]] < 0).sum()) for s in splits},
            size={s: len(ds.splits[s]) for s in splits},
            shape=[ds.channels, *ds.size],
            mean=list(ds.mean),
            std=list(ds.std),
            normalization=normalization,
            skipped=len(ds.skipped),
        )

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        p = super().save(run_dir)
        rows = [[c, *[self.counts[s][k] for s in self.splits], sum(self.counts[s][k] for s in self.splits)]
                for k, c in enumerate(self.classes)]
        write_csv(p.with_name("counts.csv"), ["class", *self.splits, "total"], rows)
        return p


@dataclass
class DataSamples(JsonRecord):
    """``data/samples.json``: the seeded choice of sample images per class (dataset indices)."""

    PATH = "data/samples.json"
    MAKER = "cnnlens report RUN"

    split: str | None
    seed: int
    per_class: int
    rows: list[dict[str, Any]]


@dataclass
class ModelSummaryFile(JsonRecord):
    """``model/summary.json`` (and ``summary.csv``): the layer table of :func:`cnnlens.models.summarize`."""

    PATH = "model/summary.json"
    MAKER = "cnnlens report RUN"

    model: str
    input_shape: list[int]
    rows: list[dict[str, Any]]
    total: int
    trainable: int
    non_trainable: int
    buffers: int
    macs: int

    @classmethod
    def from_summary(cls, s: ModelSummary) -> ModelSummaryFile:
        return cls.from_dict(s.to_dict())

    def summary(self) -> ModelSummary:
        return ModelSummary.from_dict(self.to_dict())

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        p = self.path(run_dir)
        self.summary().to_json(p)
        self.summary().to_csv(p.with_name("summary.csv"))
        return p


@dataclass
class ModelMeta(JsonRecord):
    """``model.json``: architecture, classes, normalization and best epoch (written by ``train``)."""

    PATH = "model.json"
    MAKER = "cnnlens train"

    format_version: int
    cnnlens_version: str
    model: dict[str, Any]
    input_shape: list[int]
    classes: list[str]
    mean: list[float]
    std: list[float]
    params: int
    trainable_params: int = 0
    dataset: dict[str, Any] = field(default_factory=dict)
    best_epoch: int = -1
    best_val_acc: float = float("nan")

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], **where: Any) -> ModelMeta:
        p = cls.path(run_dir)
        if not p.is_file():
            raise MissingRecord(f"{run_dir} is not a cnnlens run (model.json missing); train one with "
                                "`cnnlens train` or `cnnlens run`")
        return cls.from_dict(check_format(read_json(p), p), p)


@dataclass
class History(FileRecord):
    """``history.csv``: one row per epoch (epoch, seconds, train/val loss and accuracy, lr)."""

    PATH = "history.csv"
    MAKER = "cnnlens train"
    rows: list[dict[str, float]]

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        write_history(self.path(run_dir), self.rows)
        return self.path(run_dir)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> History:
        """The rows (none when the file does not exist: training has not finished an epoch)."""
        return cls(read_history(cls.path(run_dir)))


@dataclass
class ConfigFile(FileRecord):
    """``config.yaml``: the fully resolved configuration (written by ``train`` before it starts)."""

    PATH = "config.yaml"
    MAKER = "cnnlens train"
    text: str

    @property
    def data(self) -> dict[str, Any]:
        d = yaml.safe_load(self.text)
        if not isinstance(d, dict):
            raise CnnlensError(f"{self.PATH} must hold a mapping; re-create the run with `cnnlens train`")
        return d

    def config(self, run_dir: str | os.PathLike[str]) -> RunConfig:
        return load_config(self.path(run_dir))

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        return write_yaml(self.path(run_dir), self.data)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> ConfigFile:
        return cls(cls.existing(run_dir).read_text(encoding="utf-8"))


__all__ = ["ConfigFile", "DataCounts", "DataSamples", "History", "ModelMeta", "ModelSummaryFile"]
