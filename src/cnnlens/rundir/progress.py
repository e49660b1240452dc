"""Records of how a run was analyzed: ``timings.json``, ``stages.json``, ``report/findings.json``
and ``compare/compare.json``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CnnlensError
from ..io import read_json, write_json
from .base import FileRecord, JsonRecord


@dataclass
class Timings(FileRecord):
    """``timings.json``: ``{stage: {"wall_s": .., "cpu_s": ..}}`` in the order the stages ran."""

    PATH = "timings.json"
    stages: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> Timings:
        """The timings so far (none when the file does not exist yet)."""
        p = cls.path(run_dir)
        if not p.is_file():
            return cls()
        d = read_json(p)
        if not isinstance(d, dict):
            raise CnnlensError(f"{p} must hold a JSON object; delete it (the next stage starts it again)")
        # older runs stored a bare number of seconds per stage
        return cls({k: v if isinstance(v, dict) else {"wall_s": float(v)} for k, v in d.items()})

    def add(self, stage: str, seconds: float, cpu_seconds: float | None = None) -> None:
        """Record ``stage`` (moved to the end when it ran before)."""
        self.stages.pop(stage, None)
        self.stages[stage] = {"wall_s": round(seconds, 2)} | (
            {} if cpu_seconds is None else {"cpu_s": round(cpu_seconds, 2)})

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        return write_json(self.path(run_dir), self.stages)


@dataclass
class StagesRecord(JsonRecord):
    """``stages.json``: the analysis stages `cnnlens run` ran and the sizes they ran at."""

    PATH = "stages.json"
    MAKER = "cnnlens run"

    sizes: dict[str, Any]
    stages: list[str]
    notes: list[str] = field(default_factory=list)  # what was left out of the sizes, and why


@dataclass
class DeviceRecord(JsonRecord):
    """``device.json``: where the analysis stages ran (``device``, its ``name``, ``torch`` and ``cuda``
    versions); :func:`cnnlens.device.device_record` computes it."""

    PATH = "device.json"
    MAKER = "cnnlens run"

    device: str
    name: str
    torch: str
    cuda: str | None = None


@dataclass
class Findings(FileRecord):
    """``report/findings.json``: ``{section: [{"text", "source"}]}``, every sentence of the report."""

    PATH = "report/findings.json"
    MAKER = "cnnlens report RUN"
    sections: dict[str, list[dict[str, str]]]

    def save(self, run_dir: str | os.PathLike[str]) -> Path:
        return write_json(self.path(run_dir), self.sections)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> Findings:
        return cls(read_json(cls.existing(run_dir)))


@dataclass
class CompareRecord(JsonRecord):
    """``compare/compare.json``: runs side by side (parameters, accuracies, per-class accuracy,
    confusion) and the sentences comparing them. ``PATH`` is relative to the comparison's folder."""

    PATH = "compare.json"
    MAKER = "cnnlens compare RUN OTHER_RUN"

    classes: list[str]
    runs: list[dict[str, Any]]
    findings: list[str] = field(default_factory=list)
