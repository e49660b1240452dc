"""The run directory as training writes it and :func:`load_run` reads it back: :class:`Run`,
``model.json`` (:func:`save_model`, :func:`check_format`), ``model.safetensors`` and ``history.csv``
(:func:`write_history`, :func:`read_history`, the per-epoch callback)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from ..data.base import ImageDataset, align_classes, load_dataset
from ..errors import CnnlensError
from ..io import read_json, write_csv, write_json
from ..models import count_params, create_model
from ..models.user import custom_model_hint, refuse_user_code
from ..models.weights import warn_nonfinite

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


HISTORY_COLUMNS = ("epoch", "seconds", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                   "skipped_nonfinite")


@dataclass
class Run:
    """A trained model and everything recorded about it, rooted at ``path``."""

    path: Path
    model: nn.Module
    classes: list[str]
    config: RunConfig
    meta: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.meta["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.meta["std"])

    @property
    def normalization(self) -> str:
        """``dataset`` (train-split statistics), ``none`` (raw ``[0,1]`` input) or ``custom``."""
        return str(self.meta.get("normalization", "dataset"))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.meta["input_shape"]
        return int(c), int(h), int(w)

    @cached_property
    def dataset(self) -> ImageDataset:
        """The run's dataset, re-read from its SPEC (cached loaders make this cheap), with the model's
        classes and normalization: ``run.dataset.normalize(images)`` is the model's input."""
        ds = load_dataset(self.config.data.spec, **self.config.data.loader_options())
        if (ds.channels, *ds.size) != self.input_shape:
            c, h, w = self.input_shape
            raise CnnlensError(f"{self.config.data.spec} now gives {ds.channels}x{ds.size[0]}x{ds.size[1]} images, "
                             f"but the run {self.path} was trained on {c}x{h}x{w}: the data changed since "
                             "training. Restore it, or train a new run on it")
        return run_view(ds, self)

    def show(self, width: str | int = "100%", height: int = 800) -> Any:
        """The run's report (``RUN/report/index.html``) inline in Jupyter, as an iframe of the file
        (:class:`cnnlens.notebook.ReportFrame`); no report yet is a CnnlensError naming
        ``cnnlens report RUN``."""
        from ..notebook import report_frame

        return report_frame(self.path, width, height)


def run_view(ds: ImageDataset, run: Run) -> ImageDataset:
    """``ds`` as the run's model sees it: its classes (``model.json`` ``dataset_classes`` -> ``classes``)
    and its normalization (``mean``/``std``)."""
    if list(ds.classes) != list(run.classes) and list(ds.classes) == run.meta.get("dataset_classes"):
        ds = align_classes(ds, run.classes)
    if (tuple(ds.mean), tuple(ds.std)) != (run.mean, run.std):
        ds = replace(ds, mean=run.mean, std=run.std)
    return ds


def _history_callback(path: Path):
    import lightning as L

    class History(L.Callback):
        """One row per epoch in ``history.csv``; kept in the checkpoint so a resume continues it."""

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self._t0 = 0.0
            self._lr = float("nan")

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._t0 = time.perf_counter()
            # the learning rate used during this epoch (schedulers step before on_train_epoch_end)
            self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            m = trainer.callback_metrics
            lr = self._lr
            row = {"epoch": trainer.current_epoch + 1, "seconds": round(time.perf_counter() - self._t0, 3)}
            for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
                row[k] = float(m[k]) if k in m else float("nan")
            row["lr"] = float(lr)
            row["skipped_nonfinite"] = int(getattr(pl_module, "nonfinite_skipped", 0))
            if row["skipped_nonfinite"]:
                log.warning("epoch %d: skipped %d batch(es) whose loss was not finite", row["epoch"],
                            row["skipped_nonfinite"])
            self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
            if trainer.is_global_zero:
                write_history(path, self.rows)

        def state_dict(self) -> dict[str, Any]:
            return {"rows": [dict(r) for r in self.rows]}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.rows = [dict(r) for r in state.get("rows", [])]

    return History()


def write_history(path: Path, rows: list[dict[str, float]]) -> None:
    # rows of a run written before a column existed leave it empty
    write_csv(path, HISTORY_COLUMNS, [[_fmt(r.get(c)) for c in HISTORY_COLUMNS] for r in rows])


def _fmt(v: float | None) -> str | int:
    if isinstance(v, int):
        return v
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def read_history(path: Path) -> list[dict[str, float]]:
    import csv

    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = []
        try:
            for r in csv.DictReader(fh):
                rows.append({k: (int(v) if k in ("epoch", "skipped_nonfinite") and v != ""
                                 else float(v) if v != "" else float("nan"))
                             for k, v in r.items()})
        except (ValueError, TypeError) as e:  # a damaged file (UnicodeDecodeError is a ValueError too)
            raise CnnlensError(f"{path} line {len(rows) + 2} is damaged ({e}); re-create the run "
                               "(train again)") from None
        return rows


def _model_meta(cfg: RunConfig, ds: ImageDataset, net: nn.Module, options: dict[str, Any], best_epoch: int,
                best_val_acc: float) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "cnnlens_version": __version__,
        "model": {"name": cfg.model.name, "options": options, "class": type(net).__qualname__},
        "input_shape": [ds.channels, *ds.size],
        "classes": list(ds.classes),
        "mean": list(ds.mean),
        "std": list(ds.std),
        "normalization": "dataset",
        "params": count_params(net),
        "trainable_params": count_params(net, trainable_only=True),
        "dataset": {"name": ds.name, "spec": cfg.data.spec},
        "best_epoch": best_epoch,
        "best_val_acc": best_val_acc,
    }


def save_model(out: Path, net: nn.Module, meta: dict[str, Any]) -> None:
    """``model.safetensors`` (weights) + ``model.json`` (architecture, classes, normalization)."""
    from safetensors.torch import save as st_save

    from ..io import write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_bytes(out / "model.safetensors", st_save(tensors, metadata={"format": "pt"}))
    write_json(out / "model.json", meta)


def check_format(meta: Any, path: Path) -> dict[str, Any]:
    """``meta`` (read from ``path``, a model.json) if this cnnlens can read it, else a ValueError."""
    fv = meta.get("format_version") if isinstance(meta, dict) else None
    if fv != FORMAT_VERSION:
        raise CnnlensError(f"{path} has format_version {fv!r}; this cnnlens ({__version__}) reads version "
                         f"{FORMAT_VERSION}. Re-train the run with this version, or use the cnnlens that wrote it")
    return meta


def load_run(path: str | Path, device: str | torch.device = "cpu", *, trust_code: bool = False) -> Run:
    """Load a run directory written by :func:`train` or :func:`cnnlens.import_model`: the model (eval
    mode) with its metadata.

    A run directory is data: when its model is user code (``FILE.py:Class`` or a TorchScript file),
    loading it runs that code, so it needs ``trust_code=True`` each time (else a CnnlensError names
    the file and nothing is executed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p, meta, cfg = _run_files(path)
    mj = p / "model.json"
    c, h, w = meta["input_shape"]
    name = meta["model"]["name"]
    if name.startswith("custom:"):
        raise CnnlensError(custom_model_hint(name, p, cfg.data.spec))
    if not trust_code:
        refuse_user_code(name, where=f"{mj}: the run's ")
    net = create_model(name, in_channels=c, num_classes=len(meta["classes"]), input_size=(h, w),
                       trust_code=trust_code, **meta["model"].get("options", {}))
    wf = p / "model.safetensors"
    try:
        state = load_file(str(wf), device=str(device))
    except FileNotFoundError:
        raise FileNotFoundError(f"{wf} is missing; the run is incomplete (re-run training)") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CnnlensError(f"{wf} is not a valid safetensors file ({e}); it is damaged: re-run training or "
                         "restore it from checkpoints/") from None
    warn_nonfinite(state, str(wf))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CnnlensError(f"{wf} does not match the {name} architecture in {mj.name}: missing keys "
                         f"{missing[:5]}, unexpected keys {unexpected[:5]}")
    net.to(device).eval()
    return Run(path=p, model=net, classes=list(meta["classes"]), config=cfg, meta=meta,
               history=read_history(p / "history.csv"))


def load_run_dataset(path: str | Path) -> ImageDataset:
    """The run's dataset as its model sees it (classes, normalization; :attr:`Run.dataset`), read
    from ``model.json`` and ``config.yaml`` alone: no model is built, so no user code runs."""
    p, meta, cfg = _run_files(path)
    return Run(path=p, model=nn.Module(), classes=list(meta["classes"]), config=cfg, meta=meta,
               history=[]).dataset


def _run_files(path: str | Path) -> tuple[Path, dict[str, Any], RunConfig]:
    """(the run directory, its ``model.json``, its config) with the checks every loader makes."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"run directory {p} does not exist")
    mj = p / "model.json"
    if not mj.exists():
        raise FileNotFoundError(f"{p} is not a cnnlens run: {mj.name} is missing (train one with `cnnlens train`)")
    meta = check_format(read_json(mj), mj)
    cfg_path = p / "config.yaml"
    cfg = load_config(cfg_path) if cfg_path.exists() else RunConfig(
        data=DataConfig(spec=meta["dataset"]["spec"]), model=ModelConfig(name=meta["model"]["name"],
                                                            options=meta["model"].get("options", {})),
        train=TrainConfig())
    return p, meta, cfg
