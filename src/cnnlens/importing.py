"""``import_model(...) -> Run``: a model trained elsewhere becomes a run directory, without training.

The run holds what every later stage reads (``config.yaml``, ``model.safetensors``, ``model.json``)
and no ``history.csv``: ``evaluate``, ``explain``, ``trust``, ``report`` and ``predict`` work on it
as on a trained run, and the report says the model was imported. The normalization the model
expects is part of the run (``model.json`` ``normalization``, ``mean``, ``std``):

- ``"dataset"``: the dataset's train-split statistics (what ``cnnlens train`` uses);
- ``"pretrained"``: what a timm/torchvision model's pretrained weights expect;
- ``"none"``: raw pixels in ``[0, 1]`` (mean 0, std 1 per channel);
- ``(mean, std)`` / ``"MEAN,STD"``: given values, one pair for every channel or one per channel.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .config import RunConfig
from .data.base import ImageDataset, align_classes, load_dataset
from .errors import CnnlensError, CnnlensTypeError
from .io import write_yaml
from .models import count_params, create_model
from .models.user import check_output, instance_name, user_code_file
from .models.weights import load_weights
from .runlock import writes_run
from .train.normalization import NORMALIZATIONS, parse_normalize
from .train.run import FORMAT_VERSION, Run, save_model

log = logging.getLogger(__name__)

@writes_run("out")
def import_model(model: str | nn.Module, data: str | ImageDataset, *, out: str | Path,
                 weights: str | Path | None = None, model_options: dict[str, Any] | None = None,
                 normalize: str | Sequence[Any] = "dataset", classes: Sequence[str] | None = None,
                 trust_code: bool = False, force: bool = False, **data_options: Any) -> Run:
    """Write the run directory ``out`` for a model trained elsewhere, without training.

    Args:
        model: a model name (``cnnlens models list``, ``torchvision:NAME``, ``FILE.py:Class``, a
            TorchScript file) or an ``nn.Module`` (recorded as ``FILE.py:Class`` when that rebuilds
            it; the caller's module is not changed).
        data: the dataset SPEC it is evaluated and explained on, or an :class:`ImageDataset`.
        weights: a ``.safetensors`` file or a ``torch.save``d state dict (read with
            ``weights_only=True``), loaded strictly; ``None`` keeps the model's own (TorchScript).
        model_options: keyword arguments for the model's ``__init__``.
        normalize: ``"dataset"``, ``"none"`` (raw ``[0,1]`` input) or ``(mean, std)``.
        classes: names of the model's outputs in order: the dataset's names in another order
            (labels are permuted to match) or as many new names (output k is dataset class k).
        trust_code: allow a model that is user code (needed for ``FILE.py:Class`` and TorchScript).
        force: replace a run already in ``out`` (its training history and checkpoints are removed).
        **data_options: the loader's options (``val_fraction``, ``image_size``, ``seed``,
            ``skip_bad_rows``), recorded in ``config.yaml`` like a trained run's.

    Returns:
        :class:`Run` with the model in eval mode and an empty history.
    """
    out = Path(out)
    if ((out / "model.json").exists() or (out / "checkpoints").exists()) and not force:
        raise FileExistsError(f"{out} already holds a run; pass --force (force=True) to replace it, or "
                              "choose another --out")
    spec = data if isinstance(data, str) else (
        f"{data.name}:{data.source}" if data.source and data.name != "digits" else data.name)
    if not isinstance(model, (str, nn.Module)):
        raise CnnlensTypeError(f"model must be a model name or an nn.Module; got {type(model).__name__}")
    opts = dict(model_options or {})
    cfg = RunConfig().replace(data={"spec": spec, **data_options},
                              model={"name": model if isinstance(model, str) else "custom", "options": opts})
    ds = data if isinstance(data, ImageDataset) else load_dataset(spec, **cfg.data.loader_options())
    if isinstance(classes, str):
        raise CnnlensTypeError(f"classes must be a list of names; got the string {classes!r}")
    names = [str(c) for c in (classes if classes is not None else ds.classes)]
    align_classes(ds, names)  # checks the names against the dataset's
    c, h, w = ds.channels, *ds.size
    k = len(names)
    if isinstance(model, nn.Module):
        if opts:
            raise CnnlensError(f"model options {', '.join(opts)} apply to a model name, not to a built "
                               f"{type(model).__name__} instance")
        net = copy.deepcopy(model)
        if weights is not None:
            load_weights(net, weights)
        check_output(net, type(model).__name__, c, k, (h, w))
        name = instance_name(net, c, k, (h, w))
    else:
        kw = {"weights": str(weights)} if weights is not None else {}
        net = create_model(model, in_channels=c, num_classes=k, input_size=(h, w), trust_code=trust_code,
                           **opts, **kw)
        check_output(net, model, c, k, (h, w))
        name = _absolute(model)
        if weights is None and not isinstance(net, torch.jit.ScriptModule):
            log.warning("no weights given: %s keeps its freshly initialized (untrained) weights; pass "
                        "--weights FILE (weights=...) for a trained model", model)
    label, mean, std = parse_normalize(normalize, ds, model if isinstance(model, str) else name, net)
    cfg = cfg.replace(model={"name": name})
    meta = {
        "format_version": FORMAT_VERSION,
        "cnnlens_version": __version__,
        "model": {"name": name, "options": opts, "class": type(net).__qualname__},
        "input_shape": [c, h, w],
        "classes": names,
        "mean": list(mean),
        "std": list(std),
        "normalization": label,
        "params": count_params(net),
        "trainable_params": count_params(net, trainable_only=True),
        "dataset": {"name": ds.name, "spec": spec},
        "best_epoch": None,
        "best_val_acc": None,
        "imported": {"weights": None if weights is None else str(Path(weights).resolve()),
                     "weights_sha256": None if weights is None else _sha256(Path(weights))},
    }
    if names != list(ds.classes):
        meta["dataset_classes"] = list(ds.classes)
    write_imported_run(out, cfg, net, meta)
    log.info("imported %s (%s parameters, normalization %s) -> %s", name, f"{meta['params']:,}", label, out)
    return Run(path=out, model=net.eval(), classes=names, config=cfg, meta=meta, history=[])


def write_imported_run(out: Path, cfg: RunConfig, net: nn.Module, meta: dict[str, Any]) -> None:
    """Everything an import writes, in one place: stale outputs of an earlier run in ``out`` are
    removed (history, checkpoints, and what the stages after training wrote), then ``config.yaml``,
    ``model.safetensors`` and ``model.json``."""
    from .pipeline import reset_outputs

    if out.exists():
        reset_outputs(out)
        for stale in ("history.csv", "checkpoints", "tensorboard"):
            p = out / stale
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    d = cfg.to_dict()
    d.pop("train")  # nothing was trained: no training settings to record
    write_yaml(out / "config.yaml", d)
    save_model(out, net, meta)


def _absolute(name: str) -> str:
    """A user file's model name with an absolute path, so the run opens from any folder."""
    f = user_code_file(name)
    if f is None:
        return name
    path, sep, cls = name.rpartition(":")
    if sep and path.endswith(".py"):
        return f"{Path(path).resolve()}:{cls}"
    return str(Path(name).resolve())


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["NORMALIZATIONS", "import_model", "parse_normalize", "write_imported_run"]
