"""Feature visualization on a run directory: what ``cnnlens filters | featuremaps | dream`` do.

Each function takes a loaded :class:`cnnlens.train.Run`, draws its figures (PNG, GIF) under
``RUN/featureviz/`` and returns a :class:`Viz`: the JSON summary with the numbers and the raw array,
which the caller saves as a record (:func:`cnnlens.rundir.save_viz`: ``<stem>.json`` + ``<stem>.npy``).

Layer: these are stages (they draw a run directory's figures), so this module sits with the pipeline,
above the figures (docs/architecture.md "Layers"); ``cnnlens.featureviz`` does not import it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .dream import deep_dream
from .examples import dataset_examples
from .featuremaps import feature_maps
from .render import visualize_filters
from ..nn import resolve_layer
from ..errors import CnnlensError

if TYPE_CHECKING:
    from ..train import Run

log = logging.getLogger(__name__)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@dataclass(frozen=True)
class Viz:
    """One visualization: ``stem`` (its file name without suffix, under ``RUN/featureviz/``), ``info``
    (the JSON summary; ``info["figure"]`` or ``info["files"]`` name the figures drawn) and ``array``
    (the raw images or maps, or ``None``)."""

    stem: str
    info: dict[str, Any]
    array: np.ndarray | None = None


def _u8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def filters_run(
    run: Run,
    layer: str | int,
    channels: Sequence[int] | None = None,
    *,
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    examples: int = 4,
    split: str = "train",
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Viz:
    """Visualize filters of ``layer`` (all by default, ``batch_size`` at a time) and find their top
    ``examples`` dataset patches in ``split``. Writes ``filters_<layer>.png`` (grid: synthetic image,
    then the real patches); returns the :class:`Viz` for ``filters_<layer>.npy`` (uint8 ``[n, C, H, W]``)
    and ``filters_<layer>.json``."""
    c, h, w = run.input_shape
    v = visualize_filters(
        run.model,
        layer,
        channels,
        input_size=(h, w),
        mean=run.mean,
        std=run.std,
        steps=steps,
        lr=lr,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    ds = run.dataset
    idx = ds.indices(split)
    x = _normalize(ds.images[idx], run)
    real = dataset_examples(run.model, x, v.layer, v.channels.tolist(), k=min(examples, len(idx)))
    patches = real.patches(ds.images[idx])
    from ..report.fig_featureviz import plot_filters

    out = run.path / "featureviz"
    stem = f"filters_{_slug(v.layer)}"
    fig = plot_filters(
        out / f"{stem}.png",
        v.images,
        v.channels,
        v.activations,
        patches,
        title=f"{v.layer}: synthetic image, then the top {real.indices.shape[1]} {split} patches",
    )
    top = real.values[:, 0]
    info = {
        "layer": v.layer,
        "requested": str(layer),
        "channels": v.channels.tolist(),
        "activation": v.activations.tolist(),
        "dataset_max": top.tolist(),
        "reached_dataset_max": float((v.activations >= top).float().mean()),
        "examples": {"split": split, "indices": idx[real.indices].tolist(), "boxes": real.boxes.tolist()},
        "steps": steps,
        "lr": lr,
        "seed": seed,
        "figure": fig.name,
    }
    log.debug(
        "%d filters of %s: %.0f%% reach their %s maximum",
        len(v.channels),
        v.layer,
        100 * info["reached_dataset_max"],
        split,
    )
    return Viz(stem, info, _u8(v.images))


def featuremaps_run(run: Run, layer: str | int, image: int) -> Viz:
    """Every filter's output of ``layer`` for dataset image ``image``: ``featuremaps_<layer>_<i>.png``
    and ``.npy`` (float32 ``[K, h, w]``)."""
    ds = run.dataset
    if not 0 <= image < len(ds):
        raise CnnlensError(
            f"--image {image} is out of range: the dataset has {len(ds)} images (0..{len(ds) - 1})"
        )
    x = _normalize(ds.images[image : image + 1], run)
    fm = feature_maps(run.model, x, layer)
    from ..report.fig_featureviz import plot_feature_maps

    out = run.path / "featureviz"
    stem = f"featuremaps_{_slug(fm.layer)}_{image}"
    lab = int(ds.labels[image])
    cls = ds.classes[lab] if lab >= 0 else "unlabeled"
    fig = plot_feature_maps(
        out / f"{stem}.png",
        fm.maps[0],
        ds.images[image],
        title=f"{fm.layer} on image {image} ({cls}), {fm.maps.shape[1]} filters",
    )
    from ..data.splits import split_of

    info = {
        "layer": fm.layer,
        "image": image,
        "split": split_of(ds, [image])[0],
        "class": cls,
        "shape": list(fm.maps.shape[1:]),
        "mean_activation": fm.maps[0].mean((1, 2)).tolist(),
        "figure": fig.name,
    }
    return Viz(stem, info, fm.maps[0].numpy().astype(np.float32))


def dream_run(
    run: Run,
    image: int | str | Path,
    layer: str | int,
    channel: int | None = None,
    *,
    steps: int = 20,
    every: int = 10,
    octaves: int = 3,
    octave_scale: float = 1.4,
    lr: float = 4.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Viz:
    """Deep Dream on a dataset image (index) or an image file (resized to the model's input).
    Writes ``dream_<layer>_<channel>.png`` (strip of snapshots), ``.gif``, ``_final.png`` and ``.json``."""
    c, h, w = run.input_shape
    if isinstance(image, int) or (isinstance(image, str) and image.isdigit()):
        ds = run.dataset
        i = int(image)
        if not 0 <= i < len(ds):
            raise CnnlensError(
                f"--image {i} is out of range: the dataset has {len(ds)} images (0..{len(ds) - 1})"
            )
        img = ds.images[i]
        if tuple(img.shape[-2:]) != (h, w):
            img = _resize_u8(img, (h, w))
        source = f"dataset image {i}"
    else:
        img = load_image(image, c, (h, w))
        source = str(image)
    name, _ = resolve_layer(run.model, layer)
    d = deep_dream(
        run.model,
        img,
        name,
        channel,
        mean=run.mean,
        std=run.std,
        steps=steps,
        lr=lr,
        weight_decay=weight_decay,
        every=every,
        octaves=octaves,
        octave_scale=octave_scale,
        seed=seed,
        progress=progress,
    )
    from ..report.fig_featureviz import plot_dream_strip, save_gif, save_png

    out = run.path / "featureviz"
    stem = f"dream_{_slug(d.layer)}_{'all' if channel is None else channel}"
    what = "whole layer" if channel is None else f"filter {channel}"
    plot_dream_strip(
        out / f"{stem}.png",
        d.snapshots,
        d.snapshot_steps,
        title=f"Deep Dream: {d.layer} {what}, lr {lr}, {octaves} octaves x {steps} steps",
    )
    save_gif(out / f"{stem}.gif", d.snapshots)
    save_png(out / f"{stem}_final.png", d.image)
    info = {
        "layer": d.layer,
        "requested": str(layer),
        "channel": channel,
        "source": source,
        "snapshot_steps": d.snapshot_steps,
        "octave_sizes": [list(s) for s in d.octave_sizes],
        "initial_objective": d.initial_score,
        "octave_objective": d.octave_scores.tolist(),
        "steps": steps,
        "every": every,
        "octaves": octaves,
        "octave_scale": octave_scale,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
        "files": [f"{stem}.png", f"{stem}.gif", f"{stem}_final.png"],
    }
    return Viz(stem, info)


def parse_channels(s: str | None) -> list[int] | None:
    """``"0,3,7"`` / ``"0-15"`` / ``"0-3,8"`` -> channel list; empty or ``None`` -> ``None`` (all)."""
    if not s:
        return None
    out: list[int] = []
    try:
        for part in s.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-")
                out += list(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
    except ValueError:
        raise CnnlensError(f"--channels must look like 0,3,7 or 0-15; got {s!r}") from None
    return out


def load_image(path: str | Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """An image file -> uint8 ``[channels, H, W]`` at ``size`` (grey or RGB as the model needs)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist (give a dataset index or an image file)")
    try:
        with Image.open(p) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise CnnlensError(f"{p} is not an image PIL can read (PNG, JPEG, ...)") from None
    t = torch.from_numpy(a.copy())
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def _resize_u8(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    f = torch.nn.functional.interpolate(
        img[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return f[0].round().clamp(0, 255).to(torch.uint8)


def _normalize(images: torch.Tensor, run: Run) -> torch.Tensor:
    from ..data.base import normalize

    return normalize(images, run.mean, run.std)
