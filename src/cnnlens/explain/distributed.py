"""Explaining a whole dataset, split across processes/devices through Lightning.

Each rank takes a shard of the images (Lightning's distributed sampler), explains its batches with
:func:`~cnnlens.explain.many.explain_many` inside ``trainer.predict``, and writes each batch to a shard
file (Lightning's ``BasePredictionWriter``); after a barrier, rank 0 gathers the shards into one set of
files, ordered like the input: ``<method>.npy`` (``float32 [N, H, W]``), ``targets.npy``, ``probs.npy``
and ``explanations.json``. With one process the same code runs without a launcher, so the outputs of a
single-process and a multi-process run are the same files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..io import write_bytes, write_json, write_npy
from .core import METHODS
from ..errors import CnnlensError

log = logging.getLogger(__name__)


class _Indexed(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, int]:
        return i, self.images[i], -1 if self.labels is None else int(self.labels[i])


def map_images(fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Mapping[str, Any]],
               images_uint8: torch.Tensor, labels: torch.Tensor | None, shard_dir: str | os.PathLike[str], *,
               model: nn.Module | None = None, batch_size: int = 64, accelerator: str = "auto",
               devices: int | str = 1, strategy: str = "auto", num_nodes: int = 1, progress: bool = False
               ) -> dict[str, Any] | None:
    """Run ``fn(indices, images uint8 [b,C,H,W], labels [b]) -> tree`` over every image, sharded across
    processes by Lightning's ``trainer.predict``; returns on rank 0 the outputs gathered in input order
    (``None`` on other ranks). A tree is ``{name: tensor [b, ...] | str | tree}`` (a ``str`` holds for the
    whole batch; gathered, it is a list of one string per image, ``""`` where a batch had none; see
    :func:`flatten_tree`). ``model`` (if given) is moved to each rank's device and its training flags and
    ``requires_grad`` are restored afterwards.
    """
    import lightning as L
    from lightning.pytorch.callbacks import BasePredictionWriter

    from ..train.run import _lightning_quiet

    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise CnnlensError(f"images_uint8 must be uint8 [N,C,H,W]; got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    shards = Path(shard_dir)

    class MapModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
            idx, imgs, y = batch
            return {"idx": idx.cpu(), **flatten_tree(fn(idx, imgs, y), len(idx))}

    class ShardWriter(BasePredictionWriter):
        def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: dict[str, torch.Tensor],
                               batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            from safetensors.torch import save

            name = f"rank{trainer.global_rank:04d}-batch{batch_idx:06d}.safetensors"
            write_bytes(shards / name, save({k: v.contiguous() for k, v in prediction.items()}))

    loader = DataLoader(_Indexed(images_uint8, labels), batch_size=batch_size, shuffle=False, num_workers=0)
    was = [m.training for m in model.modules()] if model is not None else []
    req = [p.requires_grad for p in model.parameters()] if model is not None else []
    with _lightning_quiet():
        trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                            logger=False, enable_progress_bar=progress, enable_model_summary=False,
                            inference_mode=False, callbacks=[ShardWriter(write_interval="batch")])
        if trainer.is_global_zero and shards.exists():
            shutil.rmtree(shards)
        trainer.strategy.barrier()
        trainer.predict(MapModule(), loader, return_predictions=False)
        trainer.strategy.barrier()
    if model is not None:
        for m, t in zip(model.modules(), was):
            m.training = t
        for p, r in zip(model.parameters(), req):
            p.requires_grad_(r)
    if not trainer.is_global_zero:
        return None
    return _gather(shards, len(images_uint8))


def explain_dataset(model: nn.Module, images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                    methods: Sequence[str], out_dir: str | os.PathLike[str], *, target: Any = None,
                    labels: torch.Tensor | Sequence[int] | None = None, batch_size: int = 64,
                    accelerator: str = "auto", devices: int | str = 1, strategy: str = "auto",
                    num_nodes: int = 1, progress: bool = False, **options: Any) -> Path | None:
    """Explain every image of ``images_uint8`` (``uint8 [N,C,H,W]``) with each method, sharded over
    ``devices`` x ``num_nodes`` processes (e.g. ``accelerator="cpu", devices=2, strategy="ddp"``).

    ``target``: ``None``/``"pred"``, ``"label"`` (with ``labels``) or a class index. Writes
    ``<method>.npy`` (``float32 [N,H,W]``), ``targets.npy``, ``probs.npy`` and ``explanations.json``
    into ``out_dir``; returns it on rank 0 (``None`` on the other ranks). The model is returned untouched.
    """
    from ..data.base import normalize
    from .many import explain_many

    for m in methods:
        METHODS.get(m)
    lab = None if labels is None else torch.as_tensor(labels).long().view(-1)
    if target == "label" and lab is None:
        raise CnnlensError("target='label' needs labels=...")
    out = Path(out_dir)
    mean_t, std_t = tuple(mean), tuple(std)

    def fn(idx: torch.Tensor, imgs: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        x = normalize(imgs.to(_device_of(model)), mean_t, std_t)
        res = explain_many(model, x, list(methods), target=y if target == "label" else target, **options)
        first = next(iter(res.values()))
        return {"targets": first.targets, "probs": first.probs, **{f"map:{m}": e.maps for m, e in res.items()}}

    got = map_images(fn, images_uint8, lab, out / ".shards", model=model, batch_size=batch_size,
                     accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                     progress=progress)
    if got is None:
        return None
    info: dict[str, Any] = {"n": int(images_uint8.shape[0]), "methods": {}}
    for m in methods:
        name = m.replace(":", "_").replace("/", "_")
        write_npy(out / f"{name}.npy", got[f"map:{m}"])
        info["methods"][m] = {"file": f"{name}.npy"}
    write_npy(out / "targets.npy", got["targets"])
    write_npy(out / "probs.npy", got["probs"])
    write_json(out / "explanations.json", info)
    return out


def _device_of(model: nn.Module) -> torch.device:
    from ..nn import model_device

    return model_device(model)


def _gather(shards: Path, n: int) -> dict[str, Any]:
    """Merge the shard files into a tree in input order (:func:`merge_parts`), then remove the shards."""
    from safetensors.torch import load_file

    parts = [load_file(str(f)) for f in sorted(shards.glob("*.safetensors"))]
    if not parts:
        raise RuntimeError(f"no shards were written to {shards}")
    out = unflatten_tree(merge_parts(parts, n))
    shutil.rmtree(shards)
    return out


# ---- trees of tensors and strings <-> flat tensors (what a shard file and merge_parts hold) --------

TEXT_BYTES = 1024  # bytes kept of a string leaf (UTF-8; longer ones are cut)


def flatten_tree(tree: Mapping[str, Any], n: int) -> dict[str, torch.Tensor]:
    """A nested ``{name: tensor [n, ...] | str | tree}`` -> flat ``{key: tensor [n, ...]}`` (on the CPU).

    Each key is ``"t"`` (tensor) or ``"s"`` (string) + the JSON list of names on the path, so any name
    survives. A string is stored once per image as ``uint8 [n, TEXT_BYTES]`` (UTF-8, zero padded), the
    form :func:`merge_parts` can gather; :func:`unflatten_tree` reverses it.
    """
    out: dict[str, torch.Tensor] = {}

    def walk(node: Mapping[str, Any], path: list[str]) -> None:
        for k, v in node.items():
            p = [*path, str(k)]
            if isinstance(v, Mapping):
                walk(v, p)
            elif isinstance(v, str):
                raw = v.encode()[:TEXT_BYTES]
                row = torch.zeros(TEXT_BYTES, dtype=torch.uint8)
                row[: len(raw)] = torch.tensor(list(raw), dtype=torch.uint8)
                out["s" + json.dumps(p)] = row.expand(n, TEXT_BYTES).clone()
            elif isinstance(v, torch.Tensor):
                if v.ndim == 0 or v.shape[0] != n:
                    raise CnnlensError(
                        f"{'/'.join(p)}: a tree leaf must be a tensor [{n}, ...]; got {tuple(v.shape)}")
                out["t" + json.dumps(p)] = v.detach().cpu()
            else:
                raise CnnlensError(
                    f"{'/'.join(p)}: a tree leaf must be a tensor or a str; got {type(v).__name__}")

    walk(tree, [])
    return out


def unflatten_tree(flat: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The nested tree of :func:`flatten_tree`; a string leaf becomes a list of one string per image
    (``""`` for images whose batch had none). Keys not made by :func:`flatten_tree` (e.g. ``"idx"``)
    are kept as they are."""
    out: dict[str, Any] = {}
    for key, v in flat.items():
        if key[:1] not in ("t", "s") or not key[1:].startswith("["):
            out[key] = v
            continue
        path = json.loads(key[1:])
        node = out
        for name in path[:-1]:
            node = node.setdefault(name, {})
        if key[0] == "s":
            node[path[-1]] = [bytes(r.tolist()).rstrip(b"\0").decode("utf-8", "replace") for r in v]
        else:
            node[path[-1]] = v
    return out


def gather_trees(parts: Sequence[Mapping[str, Any]], n: int) -> dict[str, Any]:
    """Per-batch trees ``{"idx": int64 [b], ...}`` of one process -> one tree over ``n`` images in index
    order: the in-process form of what :func:`map_images` gathers across processes."""
    flat = [{"idx": p["idx"], **flatten_tree({k: v for k, v in p.items() if k != "idx"}, len(p["idx"]))}
            for p in parts]
    return unflatten_tree(merge_parts(flat, n))


def merge_parts(parts: Sequence[dict[str, torch.Tensor]], n: int) -> dict[str, torch.Tensor]:
    """Merge per-batch outputs ``{"idx": int64 [b], name: [b, ...]}`` into ``{name: [n, ...]}``, in
    index order.

    The distributed sampler may repeat a few images to even out the shards; each index is kept once
    (duplicates carry identical results). A name missing from some batches (e.g. a method that failed
    there) is filled for their images with NaN (floating point) or 0 (integers); names keep the order of
    their first appearance.
    """
    idx = torch.cat([p["idx"].long() for p in parts])
    pos = torch.full((n,), -1, dtype=torch.long)
    pos[idx] = torch.arange(len(idx))
    if (pos < 0).any():
        missing = torch.nonzero(pos < 0).flatten()[:5].tolist()
        raise RuntimeError(f"results are missing for images {missing} (of {n})")
    names = list(dict.fromkeys(k for p in parts for k in p if k != "idx"))
    out = {}
    for k in names:
        like = next(p[k] for p in parts if k in p)
        fill = float("nan") if like.is_floating_point() else 0
        cols = [p[k] if k in p else torch.full((len(p["idx"]), *like.shape[1:]), fill, dtype=like.dtype)
                for p in parts]
        out[k] = torch.cat(cols)[pos]
    return out
