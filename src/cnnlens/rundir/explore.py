"""``RUN/explore/``: what the report's explorer shows (issue #21).

    explore/explore.json      ExploreMaps: the images, the (image, class) maps computed, per method
                              the file and per-map scale, how the images were chosen
    explore/pixels.npy        uint8 [N, C, H, W]: the chosen images as stored in the dataset
    explore/<method>.npy      uint8 [E, H, W]: one quantized map per entry (same entry order for
                              every method)

Quantization (one rule, here, used by the writer and by the page): a map ``m`` with
``scale = max |m|`` (``scale = 0`` for an all-zero map) is stored as
``q = round(127.5 * (1 + m / scale))`` clipped to ``0..255`` and read back as
``m' = (q / 127.5 - 1) * scale``, so ``|m - m'| <= scale / 255``. Signed maps keep their sign;
the page shows ``|m'|`` for "absolute".

All arrays load with ``allow_pickle=False``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CnnlensError
from ..io import write_npy
from .base import JsonRecord, file_field
from .explain import _load_npy

QUANT_RULE = "q = round(127.5 * (1 + m / scale)), scale = max|m| per map; m = (q / 127.5 - 1) * scale"


def quantize(maps: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """``float [E, H, W]`` maps -> (``uint8 [E, H, W]``, per-map scales); see the module's rule.
    A non-finite value is an error (the caller's bug), never a silent zero."""
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != 3:
        raise CnnlensError(f"maps to quantize must be [E, H, W]; got shape {tuple(m.shape)}")
    if not np.isfinite(m).all():
        raise CnnlensError(f"{int((~np.isfinite(m)).sum())} non-finite value(s) in the maps to quantize")
    scales = np.abs(m).reshape(len(m), -1).max(axis=1) if len(m) else np.zeros(0)
    safe = np.where(scales > 0, scales, 1.0)[:, None, None]
    q = np.clip(np.rint(127.5 * (1.0 + m / safe)), 0, 255).astype(np.uint8)
    return q, [float(s) for s in scales]


def dequantize(q: np.ndarray, scales: list[float]) -> np.ndarray:
    """The inverse of :func:`quantize`, ``float32 [E, H, W]`` (within ``scale / 255`` of the original)."""
    s = np.asarray(scales, dtype=np.float64)[:, None, None]
    return ((np.asarray(q, dtype=np.float64) / 127.5 - 1.0) * s).astype(np.float32)


@dataclass
class ExploreMaps(JsonRecord):
    """``explore/explore.json`` + ``pixels.npy`` + ``<method>.npy``.

    ``images``: one dict per chosen image, in slot order (the first axis of ``pixels``)::

        {"index": dataset index in ``split``, "id": the row's id (as in eval/predictions.csv),
         "true": class, "pred": class, "confidence": p(pred), "loss": cross-entropy of the true
         class, "why": "wrong" | "correct" | "explained" (chosen by the explain stage)}

    ``entries``: ``[slot, target]`` per map, the first axis of every method's array.
    ``methods``: per method ``{"file": "<method>.npy", "scale": [one float per entry],
    "family": "gradient" | "cam" | ..., "signed": bool}``.
    ``selection``: how the images were chosen and what was left out, with counts:
    ``{"wrong_cap", "correct_per_class", "top_k", "n_wrong", "n_wrong_shown", ...}``.
    ``seconds``: what computing it took (also in ``timings.json``)."""

    PATH = "explore/explore.json"
    MAKER = "cnnlens explore RUN"

    split: str
    classes: list[str]
    images: list[dict[str, Any]]
    entries: list[list[int]]
    methods: dict[str, dict[str, Any]]
    selection: dict[str, Any] = field(default_factory=dict)
    quantization: str = QUANT_RULE
    seconds: float = math.nan
    notes: list[str] = field(default_factory=list)
    pixels: np.ndarray | None = file_field(default=None)
    maps: dict[str, np.ndarray] = file_field(default_factory=dict)

    def check(self) -> None:
        """Shapes agree: one pixel block per image, one map per entry and scale per method."""
        n, e = len(self.images), len(self.entries)
        if self.pixels is not None and (self.pixels.dtype != np.uint8 or len(self.pixels) != n):
            raise CnnlensError(f"explore: pixels must be uint8 with {n} images; got "
                               f"{self.pixels.dtype} {tuple(self.pixels.shape)}")
        for m, info in self.methods.items():
            a = self.maps.get(m)
            if a is not None and (a.dtype != np.uint8 or len(a) != e):
                raise CnnlensError(f"explore: {m} maps must be uint8 with {e} entries; got {a.dtype} "
                                   f"{tuple(a.shape)}")
            if len(info.get("scale", [])) != e:
                raise CnnlensError(f"explore: {m} has {len(info.get('scale', []))} scales for {e} entries")
        for slot, target in self.entries:
            if not (0 <= slot < n and 0 <= target < len(self.classes)):
                raise CnnlensError(f"explore: entry [{slot}, {target}] out of range ({n} images, "
                                   f"{len(self.classes)} classes)")

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        self.check()
        folder = self.path(run_dir).parent
        if self.pixels is not None:
            write_npy(folder / "pixels.npy", self.pixels)
        for m, info in self.methods.items():
            write_npy(folder / info["file"], self.maps[m])
        return super().save(run_dir)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], **where: Any) -> ExploreMaps:
        rec = super().load(run_dir)
        folder, mk = cls.path(run_dir).parent, cls.maker(run_dir)
        rec.pixels = _load_npy(folder / "pixels.npy", mk)
        rec.maps = {m: _load_npy(folder / info["file"], mk) for m, info in rec.methods.items()}
        rec.check()
        return rec

    def map(self, method: str, entry: int) -> np.ndarray:
        """One map, dequantized (``float32 [H, W]``)."""
        return dequantize(self.maps[method][entry:entry + 1], [self.methods[method]["scale"][entry]])[0]
