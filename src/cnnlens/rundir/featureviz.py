"""``RUN/featureviz/``: feature visualization records.

    featureviz/featureviz.json                 FeaturevizIndex (what `cnnlens run` visualized)
    featureviz/filters_<layer>.json + .npy     FilterViz       (uint8 [n, C, H, W] synthetic images)
    featureviz/featuremaps_<layer>_<i>.json + .npy  FeatureMapsViz (float32 [K, h, w] maps)
    featureviz/dream_<layer>_<channel>.json    DreamViz        (its images are the PNG/GIF figures)

The figures (``.png``, ``.gif``) beside them are drawn by :mod:`cnnlens.featureviz.runs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_npy
from .base import JsonRecord, file_field


@dataclass
class FeaturevizIndex(JsonRecord):
    """``featureviz/featureviz.json``: the layers and image `cnnlens run` visualized, with the
    summary of each filter grid, feature-map grid and the Deep Dream (the item records' JSON)."""

    PATH = "featureviz/featureviz.json"
    MAKER = "cnnlens run"

    layers: list[str]
    image: int
    filters: list[dict[str, Any]]
    featuremaps: list[dict[str, Any]]
    dream: dict[str, Any] | None = None


@dataclass
class _Item(JsonRecord):
    """One visualization: ``featureviz/<stem>.json`` (+ ``<stem>.npy`` when it has an array)."""

    PATH = "featureviz/{stem}.json"
    info: dict[str, Any]
    array: np.ndarray | None = file_field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.info)

    @classmethod
    def from_dict(cls, d: Any, source: str | os.PathLike[str] = "") -> _Item:
        rec = super().from_dict({"info": d}, source)
        return rec

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        p = super().save(run_dir, **where)
        if self.array is not None:
            write_npy(p.with_suffix(".npy"), self.array)
        return p


@dataclass
class FilterViz(_Item):
    """``filters_<layer>.json`` (layer, channels, activations, dataset maxima, top patches, settings)
    and ``filters_<layer>.npy`` (the synthetic images, ``uint8 [n, C, H, W]``)."""

    MAKER = "cnnlens filters RUN --layer LAYER"


@dataclass
class FeatureMapsViz(_Item):
    """``featuremaps_<layer>_<image>.json`` (shape, mean activation per map) and ``.npy`` (the maps)."""

    MAKER = "cnnlens featuremaps RUN --layer LAYER --image I"


@dataclass
class DreamViz(_Item):
    """``dream_<layer>_<channel>.json``: objective per octave, snapshot steps, settings, figure files."""

    MAKER = "cnnlens dream RUN --layer LAYER --image I"


def save_viz(run_dir: str | os.PathLike[str], viz: Any) -> dict[str, Any]:
    """Save a :class:`cnnlens.featureviz.runs.Viz` as its record; returns its JSON summary."""
    kind = FilterViz if viz.stem.startswith("filters_") else (
        FeatureMapsViz if viz.stem.startswith("featuremaps_") else DreamViz)
    kind(info=viz.info, array=viz.array).save(run_dir, stem=viz.stem)
    return viz.info
