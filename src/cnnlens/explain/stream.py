"""Explain many images (10,000 and more) with bounded memory, streaming results to disk, resumable.

Images are explained ``chunk_size`` at a time; each chunk's results are written as shards and the
progress manifest is updated after them, every file atomically (:mod:`cnnlens.io`)::

    OUT/manifest.json              settings, their fingerprint, chunks_done / chunks
    OUT/<method>/00000.npy         float32 [c, H, W] raw maps of chunk 0 (c = chunk_size, last may be smaller)
    OUT/<method>/00000.json        the chunk's per-image scalar extras (only when the method has any)
    OUT/targets/00000.npy          int64 [c]     class explained
    OUT/probs/00000.npy            float32 [c, K] softmax of the clean logits
    OUT/indices/00000.npy          int64 [c]     the images' indices (into ``images``)

Memory holds one chunk (its images, maps, probabilities) and never all N results, so peak memory does
not grow with N (measured in ``benchmarks/stream_explain.py``). A run that stops (Ctrl-C, kill, full
disk) is resumed by calling again with the same arguments: chunks listed as done in the manifest are
kept, the rest is computed. A chunk whose shards were written but not yet recorded is recomputed and
its shards replaced. Arguments that would change the results (model weights, images, methods,
targets, options, chunk size) are fingerprinted; resuming with different ones is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..io import read_json, write_json, write_npy
from .batch import _file_name, _scalars, normalize_images
from .checks import check_target
from .core import METHODS, TargetSpec
from .many import explain_many
from ..errors import CnnlensError, CnnlensTypeError

log = logging.getLogger(__name__)

FORMAT = "cnnlens-explain-stream"
VERSION = 1


@dataclass(frozen=True)
class StreamResult:
    """A finished (or partly finished) streamed explanation in ``path``; read shards lazily."""

    path: Path
    manifest: dict[str, Any]

    @property
    def methods(self) -> list[str]:
        return list(self.manifest["methods"])

    @property
    def complete(self) -> bool:
        return self.manifest["chunks_done"] == self.manifest["chunks"]

    def chunk_files(self, what: str) -> list[Path]:
        """Shard files of ``what`` (a method name, ``targets``, ``probs`` or ``indices``) in order."""
        folder = self.path / (_file_name(what) if what in self.manifest["methods"] else what)
        return [folder / f"{k:05d}.npy" for k in range(self.manifest["chunks_done"])]

    def iter_chunks(self, what: str) -> Iterator[np.ndarray]:
        """One array per completed chunk (bounded memory)."""
        for f in self.chunk_files(what):
            yield np.load(f, allow_pickle=False)

    def load(self, what: str) -> np.ndarray:
        """All completed chunks of ``what`` concatenated (this one holds everything in memory)."""
        parts = list(self.iter_chunks(what))
        if not parts:
            raise CnnlensError(f"{self.path} holds no completed chunk yet")
        return np.concatenate(parts)


def read_stream(path: str | os.PathLike[str]) -> StreamResult:
    """Open a folder written by :func:`explain_stream`."""
    p = Path(path)
    m = _read_manifest(p)
    if m is None:
        raise FileNotFoundError(f"{p} holds no streamed explanation ({p / 'manifest.json'} is missing)")
    return StreamResult(p, m)


def _read_manifest(p: Path) -> dict[str, Any] | None:
    mf = p / "manifest.json"
    if not mf.exists():
        return None
    m = read_json(mf)
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CnnlensError(f"{mf} is not a cnnlens streamed-explanation manifest; choose another output folder")
    if m.get("version") != VERSION:
        raise CnnlensError(f"{mf} has version {m.get('version')!r}; this cnnlens writes version {VERSION}. "
                         "Delete the folder or choose another output folder")
    return m


def _hash_model(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _hash_images(images: torch.Tensor | np.ndarray, idx: np.ndarray) -> str:
    """SHA-256 over the selected images, read about 1 MB at a time (no copy of the whole selection)."""
    h = hashlib.sha256(str(tuple(images.shape[1:])).encode())
    h.update(idx.tobytes())
    step = max(1, (1 << 20) // max(1, int(np.prod(images.shape[1:]))))
    for i in range(0, len(idx), step):
        part = images[torch.as_tensor(idx[i:i + step])].numpy() if isinstance(images, torch.Tensor) \
            else np.asarray(images[idx[i:i + step]])
        h.update(np.ascontiguousarray(part))
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return {"tensor_sha256": hashlib.sha256(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
                "shape": list(v.shape)}
    if isinstance(v, np.ndarray):
        return _jsonable(torch.from_numpy(v))
    if isinstance(v, nn.Module):
        return f"module:{type(v).__name__}"
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v if isinstance(v, str | int | float | bool) or v is None else repr(v)


def explain_stream(model: nn.Module, images: torch.Tensor | np.ndarray, mean: Sequence[float],
                   std: Sequence[float], methods: Sequence[str], out_dir: str | os.PathLike[str], *,
                   target: TargetSpec = None, labels: torch.Tensor | Sequence[int] | None = None,
                   indices: Sequence[int] | torch.Tensor | np.ndarray | None = None,
                   layer: str | None = None, chunk_size: int = 256, device: str | torch.device | None = None,
                   resume: bool = True, overwrite: bool = False,
                   progress: Callable[[int, int], None] | None = None,
                   method_options: dict[str, dict[str, Any]] | None = None, **options: Any) -> StreamResult:
    """Explain ``images[indices]`` chunk by chunk, writing shards to ``out_dir``; resumable.

    Args:
        model: the classifier (returned untouched).
        images: ``uint8 [N, C, H, W]`` raw pixels (a tensor, an array or a ``np.memmap``), normalized
            per chunk with ``mean``/``std`` (``[0, 1]`` units, one per channel).
        methods: method names (shared passes as in :func:`explain_many`).
        out_dir: the output folder (layout in the module docstring).
        target: ``None``/``"pred"``, ``"label"`` (needs ``labels``), an int, or one class per
            explained image.
        labels: ``int64 [N]`` labels of ``images`` (indexed like ``images``).
        indices: which images to explain (default all), e.g. a split's indices.
        layer: layer for CAM methods (dotted name; default the last Conv2d, or the residual block
            around it).
        chunk_size: images per chunk (bounds memory; one shard per chunk and method).
        resume: keep chunks already done by an earlier call with the same arguments.
        overwrite: discard whatever ``out_dir`` holds and start again.
        progress: ``(images done, total)`` after each chunk; an exception raised there stops the
            run with every finished chunk kept.
        method_options, **options: as in :func:`explain_many`.

    Returns:
        :class:`StreamResult` (``.load(method)`` gives ``float32 [n, H, W]``).
    """
    if not isinstance(images, torch.Tensor | np.ndarray):
        raise CnnlensTypeError(f"images must be a uint8 tensor or array [N,C,H,W]; got {type(images).__name__}")
    if images.ndim != 4 or images.dtype not in (torch.uint8, np.uint8):
        raise CnnlensError(f"images must be uint8 [N,C,H,W]; got {images.dtype} {tuple(images.shape)}")
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(methods)
    if not methods:
        raise CnnlensError("methods must name at least one method; see cnnlens.methods()")
    for m in methods:
        METHODS.get(m)  # an unknown name fails now, listing the valid ones
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise CnnlensError(f"chunk_size must be a positive int; got {chunk_size!r}")
    n_all = int(images.shape[0])
    idx = np.arange(n_all, dtype=np.int64) if indices is None else \
        np.asarray(torch.as_tensor(indices).long().view(-1).cpu().numpy(), dtype=np.int64)
    if idx.size == 0:
        raise CnnlensError("nothing to explain: no images (indices is empty)")
    bad = idx[(idx < 0) | (idx >= n_all)]
    if bad.size:
        raise CnnlensError(f"index {int(bad[0])} is out of range: images has {n_all} entries (0..{n_all - 1})")
    lab = None if labels is None else torch.as_tensor(labels).long().view(-1)
    if lab is not None and lab.numel() != n_all:
        raise CnnlensError(f"labels must have one entry per image ({n_all}); got {lab.numel()}")
    if isinstance(target, str) and target == "label" and lab is None:
        raise CnnlensError("target='label' needs labels=...; pass the images' labels")
    n = int(idx.size)
    tgt: TargetSpec = check_target(target, n)
    per_image_target = False
    if isinstance(tgt, torch.Tensor):
        tt = tgt.cpu()
        tgt = int(tt[0]) if tt.numel() == 1 else tt
        per_image_target = tt.numel() == n and n > 1

    out = Path(out_dir)
    settings = {
        "methods": methods, "n": n, "chunk_size": chunk_size, "image_shape": list(images.shape[1:]),
        "mean": [float(v) for v in mean], "std": [float(v) for v in std], "target": _jsonable(tgt),
        "labels": _jsonable(lab), "layer": layer, "method_options": _jsonable(method_options or {}),
        "options": _jsonable(options), "model": _hash_model(model), "images": _hash_images(images, idx),
    }
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    chunks = -(-n // chunk_size)
    done = 0
    old = _read_manifest(out) if out.exists() else None
    if old is not None and (overwrite or not resume):
        if not overwrite:
            raise FileExistsError(f"{out} already holds a streamed explanation; resume it (resume=True / "
                                  "leave out --restart), pass overwrite=True, or choose another folder")
        _clear(out, old)
        old = None
    elif old is None and out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty, and holds no streamed explanation; "
                              "choose an empty or new folder")
    if old is not None and not old.get("chunks_done"):
        _clear(out, old)  # nothing was finished: start again with these settings
        old = None
    if old is not None:
        if old.get("fingerprint") != fingerprint:
            diff = [k for k in settings if old.get("settings", {}).get(k) != settings[k]]
            raise CnnlensError(f"{out} holds a streamed explanation made with different settings "
                             f"({', '.join(diff) or 'fingerprint'} differ); it cannot be resumed with these. "
                             "Choose another folder, or start again with overwrite=True (--restart)")
        done = int(old["chunks_done"])
        if done:
            log.info("resuming %s at chunk %d of %d", out, done + 1, chunks)
    manifest: dict[str, Any] = {"format": FORMAT, "version": VERSION, "fingerprint": fingerprint,
                                "settings": settings, "chunks": chunks, "chunks_done": done,
                                "methods": methods, "signed": {}, "layer": None,
                                "classes_count": None}
    if old is not None:
        manifest.update({k: old[k] for k in ("signed", "layer", "classes_count") if k in old})
    else:
        write_json(out / "manifest.json", manifest)
    if progress is not None and done:
        progress(min(done * chunk_size, n), n)
    for k in range(done, chunks):
        sel = idx[k * chunk_size:(k + 1) * chunk_size]
        part = images[torch.as_tensor(sel)] if isinstance(images, torch.Tensor) \
            else torch.from_numpy(np.ascontiguousarray(images[sel]))
        x = normalize_images(part, mean, std)
        if device is not None:
            x = x.to(device)
        tc: TargetSpec = tgt[k * chunk_size:(k + 1) * chunk_size] if per_image_target else tgt  # type: ignore[index]
        labc = None if lab is None else lab[torch.as_tensor(sel)]
        res = explain_many(model, x, methods, target=tc, layer=layer, labels=labc,
                           method_options=method_options, **options)
        first = next(iter(res.values()))
        for m, e in res.items():
            folder = out / _file_name(m)
            write_npy(folder / f"{k:05d}.npy", e.maps.float())
            sc = _scalars(e.extras)
            if sc:
                write_json(folder / f"{k:05d}.json", sc)
            manifest["signed"][m] = e.signed
            if e.layer:
                manifest["layer"] = e.layer
                manifest["layer_transform"] = e.layer_transform
        write_npy(out / "targets" / f"{k:05d}.npy", first.targets.long())
        write_npy(out / "probs" / f"{k:05d}.npy", first.probs.float())
        write_npy(out / "indices" / f"{k:05d}.npy", torch.from_numpy(sel).long())
        manifest["classes_count"] = int(first.probs.shape[1])
        manifest["chunks_done"] = k + 1
        write_json(out / "manifest.json", manifest)  # the chunk counts only once this is on disk
        del res, first, x, part
        if progress is not None:
            progress(min((k + 1) * chunk_size, n), n)
    log.info("explained %d image(s) with %s in %d chunk(s) -> %s", n, ", ".join(methods), chunks, out)
    return StreamResult(out, manifest)




def _clear(out: Path, manifest: dict[str, Any]) -> None:
    """Remove what an earlier stream wrote (only its own folders and manifest)."""
    for name in [*(_file_name(m) for m in manifest.get("methods", [])), "targets", "probs", "indices"]:
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    (out / "manifest.json").unlink(missing_ok=True)
