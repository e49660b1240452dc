"""Configuration: frozen dataclasses per stage, composed into RunConfig; YAML in, YAML out.

A YAML file sets defaults, command-line flags override, and the fully resolved config is saved as
``RUN/config.yaml`` beside the results.

Every field is checked against its declared type when a config is made (from a file, flags, or
Python): the error names the file, the key, the value and the type expected. Booleans are not
numbers; a float field takes an integer (``lr: 1``) or a number YAML 1.1 reads as text (``1e-3``),
and refuses NaN and infinities.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .registry import check_choice
from .errors import CnnlensError, CnnlensTypeError

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "cosine", "step", "plateau")


def _describe(v: Any) -> str:
    """A value as the user wrote it in YAML, and what kind of value that is."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"{str(v).lower()} (a boolean)"
    if isinstance(v, str):
        return f"{v!r} (text)"
    if isinstance(v, int):
        return f"{v} (an integer)"
    if isinstance(v, float):
        return f"{v!r} (a number with a fraction)" if math.isfinite(v) else f"{v!r} (not a finite number)"
    if isinstance(v, list | tuple):
        return f"{list(v)!r} (a list)"
    if isinstance(v, dict):
        return f"{v!r} (a mapping)"
    return f"{v!r} ({type(v).__name__})"


def _expected(tp: Any) -> str:
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        names = [_expected(a) for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in typing.get_args(tp) else "")
    origin = typing.get_origin(tp) or tp
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "text",
            dict: "a mapping", list: "a list of integers"}.get(origin, getattr(tp, "__name__", str(tp)))


_NO = object()  # "does not fit this type"


def _coerce(tp: Any, v: Any) -> Any:
    """``v`` as a value of the declared type ``tp`` (ints widened for floats), or ``_NO``."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        for a in typing.get_args(tp):
            out = _coerce(a, v)
            if out is not _NO:
                return out
        return _NO
    origin = typing.get_origin(tp) or tp
    if tp is type(None):
        return None if v is None else _NO
    if tp is Any:
        return v
    if origin is bool:
        return v if isinstance(v, bool) else _NO
    if isinstance(v, bool):  # booleans are not numbers (nor text)
        return _NO
    if origin is int:
        return v if isinstance(v, int) else _NO
    if origin is float:
        if isinstance(v, str):  # YAML 1.1 reads 1e-3 (no dot) as text
            try:
                v = float(v)
            except ValueError:
                return _NO
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else _NO
    if origin is str:
        return v if isinstance(v, str) else _NO
    if origin is dict:
        return v if isinstance(v, dict) and all(isinstance(k, str) for k in v) else _NO
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(v, list | tuple):
            return _NO
        items = [_coerce(item, x) for x in v]
        return _NO if any(x is _NO for x in items) else items
    return v if isinstance(v, origin) else _NO


def check_types(obj: Any, section: str) -> None:
    """Check every field of the config dataclass ``obj`` against its declared type (in place:
    ints and numeric text given for float fields become floats). Raises a ``CnnlensTypeError``
    naming ``section.key``, the value and the type expected."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        v = getattr(obj, f.name)
        out = _coerce(hints[f.name], v)
        if out is _NO:
            exp = _expected(hints[f.name])
            numeric = "number" in exp or "integer" in exp
            hint = "; booleans are not numbers" if isinstance(v, bool) and numeric else ""
            raise CnnlensTypeError(f"{section}.{f.name}: expected {exp}, got {_describe(v)}{hint}")
        if out is not v:
            object.__setattr__(obj, f.name, out)


@dataclass(frozen=True)
class DataConfig:
    spec: str = "digits"
    seed: int = 0
    val_fraction: float = 0.1
    image_size: int | None = None  # resize on load where the loader supports it (Food-11, folders)
    skip_bad_rows: bool = False

    def __post_init__(self) -> None:
        check_types(self, "data")

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

    def __post_init__(self) -> None:
        check_types(self, "model")


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
    devices: int | str | list[int] = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    skip_nonfinite: bool = False  # skip batches whose loss is not finite (counted in history.csv); else stop
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
        check_types(self, "train")
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if self.epochs < 1:
            raise CnnlensError(f"train.epochs must be >= 1; got {self.epochs}")
        if self.batch_size < 1:
            raise CnnlensError(f"train.batch_size must be >= 1; got {self.batch_size}")
        if not self.lr > 0:
            raise CnnlensError(f"train.lr must be > 0; got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise CnnlensError(f"train.label_smoothing must be in [0, 1); got {self.label_smoothing}")
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
            raise CnnlensTypeError(f"{source}: expected a mapping with sections data/model/train; got "
                                   f"{_describe(d)}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CnnlensError(f"{source}: unknown section(s) {sorted(unknown)}; valid: data, model, train")
        parts: dict[str, Any] = {}
        for f in fields(cls):
            sub = d.get(f.name, {})
            parts[f.name] = _build(_SECTIONS[f.name], {} if sub is None else sub, f.name, source)
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


def _build(cls: type, values: dict[str, Any], section: str, source: str | None = None) -> Any:
    """``cls(**values)``; an error names ``source`` (the file, if any) and ``section.key``."""
    pre = f"{source}: " if source else ""
    if not isinstance(values, dict):
        raise CnnlensTypeError(f"{pre}{section}: expected a mapping of keys to values; got "
                               f"{_describe(values)}")
    valid = {f.name for f in fields(cls)}
    unknown = set(values) - valid
    if unknown:
        raise CnnlensError(f"{pre}{section}: unknown key(s) {sorted(unknown)}; valid keys: "
                           f"{', '.join(sorted(valid))}")
    try:
        return cls(**values)
    except CnnlensError as e:
        if not pre:
            raise
        raise type(e)(f"{pre}{e}") from None
    except TypeError as e:
        raise CnnlensError(f"{pre}{section}: {e}") from None


def load_config(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a YAML config; the keys it sets override ``base`` (default: the built-in defaults)."""
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {p} does not exist") from None
    except yaml.YAMLError as e:  # its text spans lines: keep the problem and where it is
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise CnnlensError(f"{p} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError as e:
        raise CnnlensError(f"{p} is not UTF-8 text (byte {e.start}); a config is a YAML text file") from None
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
