"""Configuration: frozen dataclasses per stage, composed into RunConfig; YAML in, YAML out.

A YAML file sets defaults, command-line flags override, and the fully resolved config is saved as
``RUN/config.yaml`` beside the results.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .registry import check_choice
from .errors import CnnlensError

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


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_model_options(pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (``--model-option``) -> options; each VALUE is read as YAML.

    ``io_list=[[1,28],[28,56]]`` is a list of lists, ``width=64`` an int, ``lr=1e-3`` a float (YAML
    alone reads it as a string), ``bn=true`` a bool, ``hidden=1800,1050`` the string ``"1800,1050"``.
    """
    opts: dict[str, Any] = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        k = k.strip()
        if not sep or not k.isidentifier():
            raise CnnlensError(f"--model-option must be KEY=VALUE with KEY a Python name; got {kv!r}")
        try:
            val = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise CnnlensError(f"--model-option {k}: {v!r} is not valid YAML ({str(e).splitlines()[0]}); "
                               "a list is written [1, 2], a nested one [[1, 28], [28, 56]]") from None
        if isinstance(val, str) and _NUMBER.match(val.strip()):
            val = float(val)
        opts[k] = val
    return opts


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
    # fine-tuning (docs/training.md, recipe "finetune"): epochs training only the classification head
    # with the backbone frozen, the backbone's learning rate as a fraction of lr once it trains
    # (discriminative learning rates), linear warmup epochs after the unfreeze, a fresh head
    freeze_epochs: int = 0
    backbone_lr_scale: float = 1.0
    warmup_epochs: int = 0
    reset_head: bool = False
    # the model's input normalization: dataset (train-split mean/std), pretrained (the mean/std the
    # pretrained weights expect: timm's pretrained_cfg, torchvision's weights transforms), none, or
    # MEAN,STD; None: pretrained when the model downloads pretrained weights, else dataset
    normalize: str | None = None

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if self.epochs < 1:
            raise CnnlensError(f"epochs must be >= 1; got {self.epochs}")
        if self.batch_size < 1:
            raise CnnlensError(f"batch_size must be >= 1; got {self.batch_size}")
        if not self.lr > 0:
            raise CnnlensError(f"lr must be > 0; got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise CnnlensError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")
        if self.freeze_epochs < 0 or self.warmup_epochs < 0:
            raise CnnlensError(f"freeze_epochs and warmup_epochs must be >= 0; got {self.freeze_epochs} and "
                               f"{self.warmup_epochs}")
        if not 0 < self.backbone_lr_scale <= 1:
            raise CnnlensError(f"backbone_lr_scale must be in (0, 1] (the backbone's lr as a fraction of "
                               f"lr); got {self.backbone_lr_scale}")
        if self.finetuning and self.scheduler not in ("none", "cosine"):
            raise CnnlensError(f"freeze_epochs / warmup_epochs / backbone_lr_scale go with scheduler cosine "
                               f"or none; got scheduler {self.scheduler!r}")

    @property
    def finetuning(self) -> bool:
        """Whether the fine-tuning schedule (freeze, warmup, two learning rates) is on."""
        return self.freeze_epochs > 0 or self.warmup_epochs > 0 or self.backbone_lr_scale != 1.0


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
            raise CnnlensError(f"{source}: expected a mapping with sections data/model/train; got {type(d).__name__}")
        parts: dict[str, Any] = {}
        for f in fields(cls):
            sub = d.get(f.name, {}) or {}
            parts[f.name] = _build(f.type if isinstance(f.type, type) else _SECTIONS[f.name], sub,
                                   f"{source}: {f.name}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CnnlensError(f"{source}: unknown section(s) {sorted(unknown)}; valid: data, model, train")
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
        raise CnnlensError(f"{where}: expected a mapping; got {values!r}")
    valid = {f.name for f in fields(cls)}
    unknown = set(values) - valid
    if unknown:
        raise CnnlensError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {', '.join(sorted(valid))}")
    try:
        return cls(**values)
    except TypeError as e:
        raise CnnlensError(f"{where}: {e}") from None


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a YAML config; the keys it sets override ``base`` (default: the built-in defaults)."""
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {p} does not exist") from None
    except yaml.YAMLError as e:
        raise CnnlensError(f"{p} is not valid YAML: {e}") from None
    RunConfig.from_dict(d, str(p))  # validates every section and key
    return (base or RunConfig()).replace(**{k: v for k, v in d.items() if v})


# Training recipes, taken from published single-model results. Values a user sets (config file,
# flags) override them. docs/training.md gives the sources and which split cnnlens reports on.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # Khaireddin & Chen 2021, "Facial Emotion Recognition: State of the Art Performance on FER2013"
    # (73.28% on PrivateTest with a VGG variant): SGD with Nesterov momentum 0.9, lr 0.01, weight
    # decay 1e-4, reduce-on-plateau, batch 64, shift/rotation/flip/rescale augmentation, ten-crop TTA.
    "fer2013": {
        "model": {"name": "vgg"},
        "train": {"epochs": 100, "batch_size": 64, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9,
                  "nesterov": True, "weight_decay": 1e-4, "scheduler": "plateau", "gamma": 0.75,
                  "augment": {"rotation": 10.0, "shift": 0.2, "hflip": True, "resized_crop": [0.8, 1.0]}},
    },
    # Food-11 (no pretrained weights, as the course required): AdamW, cosine schedule, label smoothing,
    # flips/rotation/crops at 128x128.
    "food11": {
        "model": {"name": "vgg"},
        "data": {"image_size": 128},
        "train": {"epochs": 80, "batch_size": 64, "lr": 1e-3, "optimizer": "adamw", "weight_decay": 5e-4,
                  "scheduler": "cosine", "label_smoothing": 0.1,
                  "augment": {"rotation": 15.0, "shift": 0.1, "hflip": True, "resized_crop": [0.6, 1.0]}},
    },
    # Fine-tuning pretrained weights (--weights FILE or --pretrained) on your data, in the manner of
    # ULMFiT / fastai's fine_tune (Howard & Ruder 2018) and timm's fine-tuning setups: a fresh head
    # trained alone for 2 epochs on the frozen backbone, then everything at once, the backbone at a
    # tenth of the head's learning rate, 1 warmup epoch, cosine decay. The model is yours to choose.
    "finetune": {
        "train": {"epochs": 10, "lr": 1e-3, "optimizer": "adamw", "weight_decay": 0.05, "scheduler": "cosine",
                  "freeze_epochs": 2, "backbone_lr_scale": 0.1, "warmup_epochs": 1, "reset_head": True},
    },
}


def recipe(name: str, base: RunConfig | None = None) -> RunConfig:
    """The config of a named recipe (``fer2013``, ``food11``, ``finetune``) on top of ``base``."""
    check_choice("recipe", name, tuple(RECIPES))
    return (base or RunConfig()).replace(**RECIPES[name])
