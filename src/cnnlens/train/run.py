"""``train(...) -> Run``: fit a classifier with Lightning into a run directory. :class:`Run`,
:func:`load_run` and the files of a run (``model.json``, ``history.csv``) are in :mod:`.runfiles` and
importable from here as before."""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, RunConfig, TrainConfig, load_config
from ..data.base import ImageDataset, load_dataset
from ..errors import CnnlensError
from ..io import write_yaml
from ..models import create_model
from ..models.user import instance_name
from ..runlock import writes_run
from .normalization import resolve_normalization
from .runfiles import (FORMAT_VERSION, HISTORY_COLUMNS, Run, _history_callback, _model_meta, check_format,
                       load_run, load_run_dataset, read_history, run_view, save_model, write_history)
from .safety import (TrainingInterrupted, atomic_checkpoint_io, interrupt_callback, load_checkpoint, resume_hint,
                     sigint_to)

log = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "HISTORY_COLUMNS", "Run", "check_format", "load_run", "read_history", "run_view",
           "save_model", "train", "write_history"]


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


