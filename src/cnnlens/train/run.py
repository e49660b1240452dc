"""``train(...) -> Run`` and ``load_run(path) -> Run``: one run directory holds everything about a model."""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from ..data.base import ImageDataset, align_classes, load_dataset
from ..io import read_json, write_csv, write_json, write_yaml
from ..models import count_params, create_model
from ..models.user import custom_model_hint, instance_name, refuse_user_code
from ..models.weights import warn_nonfinite
from .normalization import resolve_normalization
from .safety import (TrainingInterrupted, atomic_checkpoint_io, interrupt_callback, load_checkpoint, resume_hint,
                     sigint_to)
from ..errors import CnnlensError
from ..runlock import writes_run

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


# ---- history -------------------------------------------------------------------------------------

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


# ---- training ------------------------------------------------------------------------------------

@contextlib.contextmanager
def _lightning_quiet() -> Iterator[None]:
    """Lightning logs tips and device banners through its own handlers; the library stays silent."""
    names = ["lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
             "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
             "lightning.pytorch.accelerators.cuda"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        for pat in (r".*does not have many workers.*", r".*GPU available but not used.*",
                    r".*litlogger.*", r".*litmodels.*", r".*exists and is not empty.*",
                    r".*smaller than the logging interval.*", r".*deterministic.*",
                    r".*tensorboardX.*", r".*Precision .* is not supported by the model summary.*",
                    r".*LeafSpec.*is deprecated.*",
                    r".*`training_step` returned `None`.*"):  # skip_nonfinite skips a batch this way
            warnings.filterwarnings("ignore", message=pat)
        try:
            yield
        finally:
            for n, lvl in saved.items():
                logging.getLogger(n).setLevel(lvl)


@writes_run("out")
def train(data: str | ImageDataset = "digits", model: str | nn.Module = "compact", *, out: str | Path,
          epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
          seed: int | None = None, config: RunConfig | str | Path | None = None, resume: bool = False,
          force: bool = False, progress: bool = False, model_options: dict[str, Any] | None = None,
          max_time_s: float | None = None, tensorboard: bool = False, trust_code: bool = False,
          **train_options: Any) -> Run:
    """Train a classifier with Lightning and write the run directory ``out``.

    Args:
        data: a dataset SPEC (``"digits"``, ``"fer2013:PATH"``, ...) or an :class:`ImageDataset`.
        model: a registered model name or any ``nn.Module`` classifier.
        out: run directory (created). It must not hold a run unless ``resume`` or ``force``. Training
            holds its write lock (``out/.cnnlens.lock``, :mod:`cnnlens.runlock`): a second writer fails.
        epochs, batch_size, lr, seed: override the config's training values.
        config: a :class:`RunConfig` or a YAML file with data/model/train sections.
        resume: continue from ``out/checkpoints/last.ckpt``.
        progress: show Lightning's rich progress bar (the CLI turns it on; the library is silent).
        tensorboard: also write the model's graph for TensorBoard into ``out/tensorboard``.
        trust_code: allow a model that is user code (``FILE.py:Class``, a TorchScript file); see
            :func:`cnnlens.models.create_model`.
        **train_options: any other :class:`TrainConfig` field (optimizer, scheduler, augment, ...).

    Returns:
        :class:`Run` with the best-validation-accuracy weights loaded (saved as ``model.safetensors``).
    """
    with _lightning_quiet():
        import lightning as L
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        from lightning.pytorch.utilities import rank_zero_only

        from .data import datamodule
        from .lightning_module import Classifier, NonFiniteTraining

    out = Path(out)
    cfg = _resolve_config(config, data, model, model_options, epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=seed, **train_options)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"cannot resume: {last} does not exist (train without --resume first)")
    elif (out / "model.json").exists() or last.exists():
        if not force:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it, --force to "
                                  "overwrite it, or choose another --out")
        for p in ckpt_dir.glob("*.ckpt"):
            p.unlink()

    ds = data if isinstance(data, ImageDataset) else load_dataset(cfg.data.spec, **cfg.data.loader_options())
    for s in ("train", "val"):
        if s not in ds.splits or len(ds.splits[s]) == 0:
            raise CnnlensError(f"dataset {ds.name!r} has no {s!r} split (splits: {', '.join(ds.splits)}); "
                               f"training needs train and val{_split_hint(ds, cfg, s)}")
        if (ds.labels[ds.splits[s]] < 0).any():
            raise CnnlensError(f"split {s!r} of {ds.name!r} has unlabeled images; it cannot be used for training")
    seen = torch.unique(ds.labels[ds.splits["train"]]).tolist()
    if len(seen) < 2:
        names = ", ".join(repr(ds.classes[k]) for k in seen)
        raise CnnlensError(f"the train split of {ds.name!r} holds images of {len(seen)} class(es) ({names}) "
                           f"of {ds.num_classes}; a classifier needs at least two: add training images of "
                           "the other classes")
    c, h, w = ds.channels, *ds.size
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    if isinstance(model, nn.Module):
        net = model  # recorded as FILE.py:Class when that rebuilds it, so the CLI can open the run
        cfg = cfg.replace(model={"name": instance_name(net, c, ds.num_classes, (h, w))})
    else:
        net = create_model(cfg.model.name, in_channels=c, num_classes=ds.num_classes, input_size=(h, w),
                           trust_code=trust_code, **cfg.model.options)
    model_options_resolved = _serializable_options(net, cfg.model)
    norm_label, mean, std = resolve_normalization(cfg, ds, net)
    cfg = cfg.replace(train={"normalize": cfg.train.normalize or norm_label})
    tc = cfg.train
    if tc.reset_head and not resume:
        from ..models.heads import classifier_head

        head_name, head = classifier_head(net, ds.num_classes)
        for m in head.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        log.info("reset_head: the classification head %r starts freshly initialized", head_name)
    if tc.freeze_epochs and not (cfg.model.options.get("weights") or cfg.model.options.get("pretrained")
                                 or isinstance(model, nn.Module)):
        log.warning("freeze_epochs=%d freezes a randomly initialized backbone: fine-tuning needs pretrained "
                    "weights (--weights FILE or --pretrained)", tc.freeze_epochs)
    module = Classifier(net, tc, mean, std, ds.num_classes)
    xtr, ytr = ds.split("train")
    xva, yva = ds.split("val")
    data_module = datamodule(xtr, ytr, xva, yva, tc.batch_size, tc.seed)
    # processes started by a DDP launcher run this code too: only the global rank 0 writes files
    if rank_zero_only.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / "config.yaml", _config_to_save(cfg, model_options_resolved, net))
    history = _history_callback(out / "history.csv")
    best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_acc", mode="max",
                              save_top_k=1, save_last=True, enable_version_counter=False)
    interrupt = interrupt_callback()
    callbacks: list[Any] = [history, interrupt, best_cb]
    if tc.early_stopping:
        callbacks.append(EarlyStopping(monitor="val_acc", mode="max", patience=tc.early_stopping))
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    accel = tc.accelerator
    on_cpu = accel == "cpu" or (accel == "auto" and not torch.cuda.is_available())
    trainer_kw: dict[str, Any] = dict(
        max_epochs=tc.epochs, accelerator=accel, devices=tc.devices, strategy=tc.strategy,
        num_nodes=tc.num_nodes, precision=tc.precision, callbacks=callbacks, logger=False,
        default_root_dir=str(out), enable_progress_bar=progress, enable_model_summary=False,
        deterministic=True if on_cpu else "warn", gradient_clip_val=tc.grad_clip,
        num_sanity_val_steps=0, log_every_n_steps=1, use_distributed_sampler=False,
        sync_batchnorm=_multi_device(tc) and not on_cpu, plugins=[atomic_checkpoint_io()])
    if max_time_s:
        trainer_kw["max_time"] = {"seconds": max_time_s}
    if resume:
        load_checkpoint(last)  # a damaged or unsafe checkpoint is refused before Lightning starts
    with _lightning_quiet():
        trainer = L.Trainer(**trainer_kw)
        try:
            with sigint_to(lambda: interrupt.handle(trainer)):
                trainer.fit(module, datamodule=data_module, ckpt_path=str(last) if resume else None,
                            weights_only=True if resume else None)
        except (KeyboardInterrupt, SystemExit):
            # Lightning turns a KeyboardInterrupt into sys.exit(1); a second Ctrl-C lands here
            if interrupt.requested:
                _interrupted(out, interrupt.completed)
            raise
        except NonFiniteTraining as e:
            raise NonFiniteTraining(_nonfinite_message(str(e), out, tc), e.epoch, e.step) from None
    if interrupt.requested and trainer.current_epoch < tc.epochs:
        _interrupted(out, interrupt.completed)
    if not trainer.is_global_zero:
        return None  # type: ignore[return-value]
    best_path = Path(best_cb.best_model_path) if best_cb.best_model_path else last
    best_ckpt = load_checkpoint(best_path)
    state = best_ckpt["state_dict"]
    weights = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
    net.load_state_dict(weights)
    best_epoch = int(best_ckpt.get("epoch", -1)) + 1
    meta = _model_meta(cfg, ds, net, model_options_resolved, best_epoch, float(best_cb.best_model_score or 0))
    meta.update(mean=list(mean), std=list(std), normalization=norm_label)
    if cfg.model.options.get("weights") or cfg.model.options.get("pretrained"):
        wf = cfg.model.options.get("weights")
        meta["initial_weights"] = str(Path(wf).resolve()) if wf else "pretrained"
    save_model(out, net, meta)
    if tensorboard:
        from ..models.tensorboard import export_graph

        export_graph(net, (c, h, w), out / "tensorboard")
    net.eval()
    return Run(path=out, model=net, classes=list(ds.classes), config=cfg, meta=meta,
               history=read_history(out / "history.csv"))


def _multi_device(tc: TrainConfig) -> bool:
    """Data-parallel over more than one process (BatchNorm statistics then synced across them)."""
    dev = tc.devices
    many = (isinstance(dev, int) and dev > 1) or (isinstance(dev, str) and dev not in ("1", "auto")) \
        or (isinstance(dev, list | tuple) and len(dev) > 1)
    return bool(many or tc.num_nodes > 1)


def _nonfinite_message(what: str, out: Path, tc: TrainConfig) -> str:
    """The error of a training stopped by a non-finite loss or weights: where, what was kept, what to do."""
    last = out / "checkpoints" / "last.ckpt"
    if last.exists():
        try:
            epoch = int(load_checkpoint(last).get("epoch", -1)) + 1
            kept = f"The last good weights are kept: {last} (epoch {epoch}) and best.ckpt beside it"
        except (ValueError, FileNotFoundError):
            kept = f"{last} holds the last good epoch"
    else:
        kept = "No epoch had completed, so there is no checkpoint"
    tips = [f"lower the learning rate (lr is {tc.lr:g})"]
    if tc.grad_clip is None:
        tips.append("clip gradients (--grad-clip 1.0)")
    if not tc.skip_nonfinite:
        tips.append("or skip such batches (--skip-nonfinite; train.skip_nonfinite in a config)")
    return (f"training stopped: {what}. {kept}; model.safetensors was not written by this training. "
            f"To train again, {', '.join(tips)}")


def _interrupted(out: Path, completed: int) -> None:
    hint = resume_hint(out, completed)
    log.warning("%s", hint)
    raise TrainingInterrupted(hint) from None


def _split_hint(ds: ImageDataset, cfg: RunConfig, split: str) -> str:
    """The fix for a missing train or val split: where its images go, or a val share that works."""
    if split != "val":
        return ": give the data a training split (a train/ folder, or a labeled train.csv)"
    lab = ds.labels[ds.splits["train"]] if "train" in ds.splits else ds.labels
    counts = torch.bincount(lab[lab >= 0], minlength=ds.num_classes)  # train only: errs on the large side
    smallest = int(counts[counts > 0].min()) if bool((counts > 0).any()) else 0
    # the seeded split gives a class of n images round(f * n) val images: f * n > 0.5 gives one
    need = math.ceil((0.5 / max(smallest, 1) + 1e-9) * 20) / 20
    if smallest >= 2 and need < 0.5:
        share = (f"--val-fraction {need:g}, so that the smallest class ({smallest} training images) gets "
                 f"a val image; Python: load_dataset(spec, val_fraction={need:g})")
    else:
        share = ("a larger --val-fraction (Python: load_dataset(spec, val_fraction=...)) once every class "
                 "has a few images")
    return (f": the validation share (val_fraction {cfg.data.val_fraction:g}) is cut per class and left "
            f"no image there; pass {share}, or add a val/ (validation/) folder beside train/")


def _resolve_config(config: RunConfig | str | Path | None, data: Any, model: Any,
                    model_options: dict[str, Any] | None, **overrides: Any) -> RunConfig:
    cfg = config if isinstance(config, RunConfig) else load_config(config) if config else RunConfig()
    data_over: dict[str, Any] = {}
    if isinstance(data, str):
        data_over["spec"] = data
    elif isinstance(data, ImageDataset):
        data_over["spec"] = f"{data.name}:{data.source}" if data.source and data.name != "digits" else data.name
    model_over: dict[str, Any] = {}
    if isinstance(model, str):
        model_over["name"] = model
    elif isinstance(model, nn.Module):
        model_over["name"] = f"custom:{type(model).__module__}.{type(model).__qualname__}"
    if model_options is not None:
        model_over["options"] = dict(model_options)
    train_over = {k: v for k, v in overrides.items() if v is not None}
    return cfg.replace(data=data_over, model=model_over, train=train_over)


def _serializable_options(net: nn.Module, mc: ModelConfig) -> dict[str, Any]:
    opts = dict(mc.options)
    # initial weights (a file, or a download) are not needed to rebuild the run: model.safetensors holds them
    opts.pop("weights", None)
    opts.pop("pretrained", None)
    if "match_params" in opts and hasattr(net, "hidden"):
        # the matched widths, so the model can be rebuilt without the reference model
        opts.pop("match_params")
        opts["hidden"] = list(net.hidden)
    return opts


def _config_to_save(cfg: RunConfig, model_options: dict[str, Any], net: nn.Module) -> dict[str, Any]:
    d = cfg.to_dict()
    d["model"]["options"] = model_options
    return d


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
