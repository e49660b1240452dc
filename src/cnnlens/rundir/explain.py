"""``RUN/explain/``: attribution maps and their indices.

    explain/explanations.json + <method>.npy          ExplainMaps        (per-class images, every method)
    explain/attribution_regions.json + .csv           AttributionRegions (share of |map| per region)
    explain/confused/confused.json + <m>_true/_pred.npy  ConfusedMaps    (most-confused pairs)
    explain/lime/lime.json + lime.npy + segments.npy  LimeMaps           (LIME on superpixels)

Maps are ``float32 [N, H, W]`` ``.npy`` files named in the JSON; they load with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import CnnlensError
from ..explain.batch import _file_name as file_name, _scalars
from ..explain.core import Explanation
from ..explain.regions import REGIONS, region_bounds
from ..io import write_csv, write_npy
from .base import JsonRecord, file_field, missing


def _load_npy(path: Path, maker: str) -> np.ndarray:
    if not path.is_file():
        raise missing(path, maker)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CnnlensError(f"{path} is not a readable .npy file ({e}); re-create it with `{maker}`") from None


@dataclass
class _MethodMaps(JsonRecord):
    """A JSON index whose ``methods[m]`` names ``.npy`` files beside it: ``ARRAYS`` maps each
    array-holding field (``{method: array}``) to the key of ``methods[m]`` that names its file."""

    ARRAYS: ClassVar[dict[str, str]] = {}

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        folder = self.path(run_dir).parent
        for m, info in self.methods.items():  # type: ignore[attr-defined]
            for attr, key in self.ARRAYS.items():
                write_npy(folder / info[key], getattr(self, attr)[m])
        return super().save(run_dir)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], **where: Any) -> Any:
        rec = super().load(run_dir)
        folder, mk = cls.path(run_dir).parent, cls.maker(run_dir)
        for attr, key in cls.ARRAYS.items():
            setattr(rec, attr, {m: _load_npy(folder / v[key], mk) for m, v in rec.methods.items()})
        return rec


@dataclass
class ExplainMaps(_MethodMaps):
    """``explain/explanations.json`` and one ``<method>.npy`` per method (``float32 [N, H, W]``)."""

    PATH = "explain/explanations.json"
    MAKER = "cnnlens explain RUN"
    ARRAYS = {"maps": "file"}

    indices: list[int]
    labels: list[int] | None
    targets: list[int]
    predicted: list[int]
    target_prob: list[float]
    probs: list[list[float]]
    classes: list[str] | None
    methods: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    selection: str | None = None
    splits: list[str] | None = None
    target: str | None = None
    maps: dict[str, np.ndarray] = file_field(default_factory=dict)

    @classmethod
    def from_explanations(cls, results: Mapping[str, Explanation], indices: Sequence[int],
                          labels: Sequence[int] | torch.Tensor | None, classes: Sequence[str] | None,
                          **keys: Any) -> ExplainMaps:
        """``keys``: ``notes`` (:func:`cnnlens.explain.notes.map_notes`), ``selection`` (``"correct"``
        or ``"given"``), ``splits`` (each image's split) and ``target``."""
        first = next((e for e in results.values() if e.probs is not None), None)
        if first is None:
            raise CnnlensError("ExplainMaps records each image's class probabilities, and these "
                               "explanations were computed with probs=False; explain without "
                               "probs=False (the default) to save them")
        methods, maps = {}, {}
        for m, e in results.items():
            name = file_name(m)
            maps[m] = e.maps.detach().cpu().float().numpy()
            methods[m] = {"file": f"{name}.npy", "shape": list(e.maps.shape), "signed": e.signed,
                          "layer": e.layer, "layer_transform": e.layer_transform,
                          "extras": _scalars(e.extras)}
        return cls(
            indices=[int(i) for i in indices],
            labels=None if labels is None else torch.as_tensor(labels).long().view(-1).tolist(),
            targets=first.targets.tolist(),
            predicted=first.probs.argmax(1).tolist(),
            target_prob=first.probs.gather(1, first.targets.view(-1, 1)).squeeze(1).tolist(),
            probs=first.probs.tolist(),
            classes=list(classes) if classes is not None else None,
            methods=methods,
            maps=maps,
            **keys,
        )

    def explanations(self) -> dict[str, Explanation]:
        """The maps as :class:`Explanation` objects (targets and probabilities from the index)."""
        targets, probs = torch.as_tensor(self.targets), torch.as_tensor(self.probs)
        return {m: Explanation(maps=torch.from_numpy(self.maps[m]), method=m, targets=targets, probs=probs,
                               layer=info.get("layer"), signed=info["signed"],
                               layer_transform=info.get("layer_transform"))
                for m, info in self.methods.items()}


@dataclass
class AttributionRegions(JsonRecord):
    """``explain/attribution_regions.json`` (and the table ``attribution_regions.csv``): the share of
    each map's ``|m|`` in the row thirds, column thirds and central box, per image and method; and,
    for the ``primary`` method, the mean per class (images whose map is all zero left out)."""

    PATH = "explain/attribution_regions.json"
    MAKER = "cnnlens explain RUN"

    regions: dict[str, list[int]]
    methods: dict[str, list[dict[str, Any]]]
    primary: str = ""
    centre_box_area: float = float("nan")
    per_class: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_maps(cls, rec: ExplainMaps) -> AttributionRegions:
        """Region shares of every map of ``rec``, each image under its true class (its explained class
        when unlabeled); ``primary`` is Grad-CAM when present, else the first method."""
        from ..explain.regions import region_mass

        classes = rec.classes or [str(k) for k in range(len(rec.probs[0]))]
        labels = rec.labels or [None] * len(rec.indices)
        lab = [lb if lb is not None else t for lb, t in zip(labels, rec.targets)]
        by_method = {m: region_mass(maps) for m, maps in rec.maps.items()}
        h, w = next(iter(rec.maps.values())).shape[1:]
        primary = "gradcam" if "gradcam" in by_method else next(iter(by_method))
        per_class = []
        for k in sorted(set(lab)):
            ok = [s for kk, s in zip(lab, by_method[primary]) if kk == k and not np.isnan(s["top"])]
            per_class.append({"class_index": k, "class": classes[k], "n": len(ok),
                              **{x: float(np.mean([s[x] for s in ok])) if ok else float("nan")
                                 for x in (*REGIONS, "centre_box_area")}})
        return cls(
            regions={k: list(v) for k, v in region_bounds(h, w).items()},
            methods={m: [{"index": i, "class": classes[k], **s} for i, k, s in zip(rec.indices, lab, v)]
                     for m, v in by_method.items()},
            primary=primary,
            centre_box_area=by_method[primary][0]["centre_box_area"],
            per_class=per_class,
        )

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        p = super().save(run_dir)
        write_csv(p.with_suffix(".csv"), ["method", "index", "class", *REGIONS],
                  [[m, r["index"], r["class"], *[f"{r[x]:.4f}" for x in REGIONS]]
                   for m, rows in self.methods.items() for r in rows])
        return p


@dataclass
class ConfusedMaps(_MethodMaps):
    """``explain/confused/confused.json`` and ``<method>_true.npy`` / ``<method>_pred.npy``: misclassified
    images of the most-confused pairs, each explained for its true and for its predicted class.
    ``pred_share``: per method and image, the predicted-class map's share of both maps' ``|m|``."""

    PATH = "explain/confused/confused.json"
    MAKER = "cnnlens run"
    ARRAYS = {"maps_true": "true", "maps_pred": "pred"}

    pairs: list[dict[str, Any]]
    per_pair: int
    indices: list[int]
    labels: list[int]
    predicted: list[int]
    p_true: list[float]
    p_pred: list[float]
    classes: list[str]
    methods: dict[str, dict[str, Any]]
    probs: list[list[float]] | None = None
    pred_share: dict[str, list[float]] | None = None
    split: str | None = None  # the evaluated split the images come from
    maps_true: dict[str, np.ndarray] = file_field(default_factory=dict)
    maps_pred: dict[str, np.ndarray] = file_field(default_factory=dict)

    def add(self, method: str, true: Explanation, pred: Explanation) -> None:
        """Add one method's maps for the true (``true``) and the predicted class (``pred``)."""
        from ..explain.regions import pred_share

        name = file_name(method)
        self.maps_true[method] = true.maps.detach().cpu().float().numpy()
        self.maps_pred[method] = pred.maps.detach().cpu().float().numpy()
        self.methods[method] = {"true": f"{name}_true.npy", "pred": f"{name}_pred.npy", "signed": true.signed,
                                "layer": true.layer, "layer_transform": true.layer_transform}
        self.pred_share = {**(self.pred_share or {}),
                           method: pred_share(self.maps_true[method], self.maps_pred[method])}

    def probabilities(self) -> torch.Tensor:
        """``float32 [N, K]``; older files hold only the two probabilities the figure shows."""
        if self.probs is not None:
            return torch.tensor(self.probs)
        probs = torch.zeros(len(self.indices), len(self.classes))
        for i, (a, b, pa, pb) in enumerate(zip(self.labels, self.predicted, self.p_true, self.p_pred)):
            probs[i, a], probs[i, b] = pa, pb
        return probs



@dataclass
class LimeMaps(JsonRecord):
    """``explain/lime/lime.json``, ``lime.npy`` (``float32 [N, H, W]`` pixel maps) and ``segments.npy``
    (``int32 [N, H, W]`` superpixel labels). ``settings`` holds every option the explainer ran with
    (segmentation, kernel width, ridge alpha, what a hidden superpixel becomes, ...)."""

    PATH = "explain/lime/lime.json"
    MAKER = "cnnlens run"

    indices: list[int]
    labels: list[int]
    targets: list[int]
    probs: list[float]
    classes: list[str]
    n_samples: int
    seed: int
    weights: list[list[float]]
    n_segments: list[int]
    intercept: list[float] | None = None
    score: list[float] | None = None
    segmentation: str | None = None
    grid_fallback: list[float] | None = None
    output: str = "prob"
    settings: dict[str, Any] = field(default_factory=dict)
    split: str | None = None  # the evaluated split the images come from
    maps: np.ndarray | None = file_field(default=None)
    segments: np.ndarray | None = file_field(default=None)

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        folder = self.path(run_dir).parent
        if self.maps is None or self.segments is None:
            raise CnnlensError("LimeMaps.save needs maps and segments")
        write_npy(folder / "lime.npy", np.asarray(self.maps, dtype=np.float32))
        write_npy(folder / "segments.npy", np.asarray(self.segments, dtype=np.int32))
        return super().save(run_dir)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str], **where: Any) -> LimeMaps:
        rec = super().load(run_dir)
        folder = cls.path(run_dir).parent
        rec.maps = _load_npy(folder / "lime.npy", cls.maker(run_dir))
        rec.segments = _load_npy(folder / "segments.npy", cls.maker(run_dir))
        return rec
