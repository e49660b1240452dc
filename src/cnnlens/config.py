"""Configuration: frozen dataclasses per stage, composed into RunConfig; YAML in, YAML out.

A YAML file sets defaults, command-line flags override, and the fully resolved config is saved as
``RUN/config.yaml`` beside the results.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .registry import check_choice

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step", "plateau")


@dataclass(frozen=True)
class DataConfig:
    spec: str = "digits"
    seed: int = 0
    val_fraction: float = 0.1
    image_size: int | None = None  # resize on load where the loader supports it (Food-11, folders)
    skip_bad_rows: bool = False

    def loader_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"seed": self.seed, "val_fraction": self.val_fraction,
                                "skip_bad_rows": self.skip_bad_rows}
        if self.image_size is not None:
            opts["image_size"] = self.image_size
        return opts


@dataclass(frozen=True)
class ModelConfig:
    name: str = "compact"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    scheduler: str = "none"
    step_size: int = 10  # step scheduler: epochs between decays
    gamma: float = 0.1  # step / plateau decay factor
    label_smoothing: float = 0.0
    early_stopping: int | None = None  # patience in epochs on val_acc; best weights are kept
    grad_clip: float | None = None
    seed: int = 0
    augment: dict[str, Any] | None = None  # options of cnnlens.data.augment.AugmentConfig
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> RunConfig:
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a mapping with sections data/model/train; got {type(d).__name__}")
        parts: dict[str, Any] = {}
        for f in fields(cls):
            sub = d.get(f.name, {}) or {}
            parts[f.name] = _build(f.type if isinstance(f.type, type) else _SECTIONS[f.name], sub,
                                   f"{source}: {f.name}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"{source}: unknown section(s) {sorted(unknown)}; valid: data, model, train")
        return cls(**parts)

    def replace(self, **sections: dict[str, Any]) -> RunConfig:
        """A copy with fields of sections overridden, e.g. ``cfg.replace(train={"epochs": 3})``."""
        new = {}
        for f in fields(self):
            cur = getattr(self, f.name)
            over = {k: v for k, v in (sections.get(f.name) or {}).items() if v is not None}
            new[f.name] = _build(type(cur), {**dataclasses.asdict(cur), **over}, f.name) if over else cur
        return RunConfig(**new)


_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping; got {values!r}")
    valid = {f.name for f in fields(cls)}
    unknown = set(values) - valid
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {', '.join(sorted(valid))}")
    try:
        return cls(**values)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def load_config(path: str | Path) -> RunConfig:
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {p} does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{p} is not valid YAML: {e}") from None
    return RunConfig.from_dict(d, str(p))
