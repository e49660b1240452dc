"""What the report's explorer shows: the chosen images of the evaluated split and the cheap maps of
each, for several classes (issue #21). Plain data; the record is :class:`cnnlens.rundir.ExploreMaps`,
written by :func:`cnnlens.stages.explore.explore_run`.

Images (:func:`choose_images`): every misclassified image up to ``wrong_cap`` (the most confident
mistakes first), ``correct_per_class`` correct ones per class (highest confidence first, ties in
split order) and the images the explain stage already explained (so the report's fixed figures can
be explored). Targets per image: the true class, the predicted class and the ``top_k`` most
probable classes, deduplicated. Methods: the cheap ones, the gradient and CAM families
(:data:`DEFAULT_METHODS`); one that cannot explain the model (guided methods on a model that
applies ReLU functionally, a CAM on a model with no conv or token layer) is left out with a note.
All (image, target) pairs of all methods go through one :func:`~cnnlens.explain.many.explain_many`
call (shared passes, batched).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CnnlensError, CnnlensTypeError
from .batch import normalize_images
from .cam import CAMMethod
from .core import METHODS
from .gradient import GradientMethod
from .many import explain_many

log = logging.getLogger(__name__)

DEFAULT_METHODS: tuple[str, ...] = (
    "saliency", "gradient_x_input", "guided_backprop", "gradcam", "gradcam_pp", "layercam", "guided_gradcam",
)
"""The explorer's methods by default: one shared forward+backward pass each (guided: one more;
Guided Grad-CAM: two), so every image and class costs a few passes."""

BLOCK = 512
"""(image, class) pairs given to one :func:`explain_many` call (it chunks further by itself)."""

LEFT_OUT_LISTED = 20
"""How many indices of left-out wrong images ``selection`` lists (all are counted)."""


def family(method: str) -> str | None:
    """``"cam"`` (a layer method: the CAM family, Guided Grad-CAM included), ``"gradient"`` (a
    gradient of the input) or ``None`` (another family: perturbation, attention, Captum)."""
    impl = METHODS.get(method)
    cls = impl if isinstance(impl, type) else type(impl)
    if issubclass(cls, CAMMethod) or (issubclass(cls, GradientMethod) and cls.uses_layer):
        return "cam"
    if issubclass(cls, GradientMethod):
        return "gradient"
    return None


@dataclass(frozen=True)
class ExploreConfig:
    """What the explore stage computes (``cnnlens run/demo --explore-*``, ``cnnlens.run(explore=...)``).

    Attributes:
        wrong_cap: misclassified images shown at most (the most confident mistakes first); the rest
            are counted and listed in the record's ``selection``.
        correct_per_class: correctly classified images per class (highest confidence first).
        top_k: the most probable classes explained per image, besides its true and predicted class.
        methods: gradient/CAM methods (default :data:`DEFAULT_METHODS`).
        enabled: ``False`` leaves the stage out (``--no-explore``).
    """

    wrong_cap: int = 200
    correct_per_class: int = 3
    top_k: int = 3
    methods: tuple[str, ...] = DEFAULT_METHODS
    enabled: bool = True

    def __post_init__(self) -> None:
        for name, flag in (("wrong_cap", "--explore-wrong"), ("correct_per_class", "--explore-correct"),
                           ("top_k", "--explore-top")):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise CnnlensTypeError(f"explore {name} ({flag}) must be an int; got {v!r}")
            if v < 0:
                raise CnnlensError(f"explore {name} ({flag}) must be >= 0; got {v}")
        if isinstance(self.methods, str):
            names = tuple(m.strip() for m in self.methods.split(",") if m.strip())
            object.__setattr__(self, "methods", names)
        else:
            object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods:
            raise CnnlensError("explore methods (--explore-methods) must name at least one method, e.g. "
                               f"{','.join(DEFAULT_METHODS[:3])}")
        if len(set(self.methods)) != len(self.methods):
            raise CnnlensError(f"explore methods (--explore-methods) lists a method twice: "
                               f"{list(self.methods)}")
        for m in self.methods:
            if m not in METHODS:
                raise CnnlensError(f"explore methods (--explore-methods): unknown method {m!r}; the explorer "
                                   f"takes gradient and CAM methods: {', '.join(cheap_methods())}")
            if family(m) is None:
                raise CnnlensError(f"explore methods (--explore-methods): {m!r} is not a gradient or CAM "
                                   f"method (too costly for every image and class); choose from "
                                   f"{', '.join(cheap_methods())}")

    def to_dict(self) -> dict[str, Any]:
        return {"wrong_cap": self.wrong_cap, "correct_per_class": self.correct_per_class, "top_k": self.top_k,
                "methods": list(self.methods), "enabled": self.enabled}

    @classmethod
    def of(cls, value: ExploreConfig | dict[str, Any] | bool | None) -> ExploreConfig:
        """``None``/``True``: the defaults; ``False``: disabled; a dict: those fields."""
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(enabled=False)
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = set(cls.__dataclass_fields__)
            bad = sorted(set(value) - known)
            if bad:
                raise CnnlensError(f"explore: unknown setting(s) {', '.join(bad)}; settings: "
                                   f"{', '.join(sorted(known))}")
            return cls(**value)
        raise CnnlensTypeError(f"explore must be an ExploreConfig, a dict, True/False or None; got "
                               f"{type(value).__name__}")


def cheap_methods() -> list[str]:
    """Registered methods of the gradient and CAM families (what the explorer may compute)."""
    return [m for m in METHODS.names() if family(m) is not None]


@dataclass(frozen=True)
class ExploreData:
    """What :func:`explore_maps` returns (the fields of :class:`cnnlens.rundir.ExploreMaps`).

    ``pixels``: ``uint8 [N, C, H, W]``; ``maps``: method -> ``float32 [E, H, W]`` (entry order);
    ``families``/``signed``: per method; ``notes``: methods left out and why."""

    split: str
    classes: list[str]
    images: list[dict[str, Any]]
    entries: list[list[int]]
    pixels: np.ndarray
    maps: dict[str, np.ndarray]
    families: dict[str, str]
    signed: dict[str, bool]
    selection: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def choose_images(result: Any, cfg: ExploreConfig, explained: Sequence[int] = ()
                  ) -> tuple[list[int], list[str], dict[str, Any]]:
    """Positions in ``result`` (an :class:`~cnnlens.evaluate.EvalResult`) of the chosen images, why each
    was chosen (``"wrong"``, ``"correct"``, ``"explained"``), and the counts for ``selection``.
    ``explained``: dataset indices the explain stage explained (those not in the split are counted)."""
    labels, preds = result.labels.long(), result.preds.long()
    conf = result.probs.gather(1, preds.view(-1, 1)).view(-1).double()
    n = len(labels)
    order = sorted(range(n), key=lambda i: (-float(conf[i]), i))  # most confident first, split order on ties
    wrong = [i for i in order if int(labels[i]) != int(preds[i])]
    shown = wrong[:cfg.wrong_cap]
    left = wrong[cfg.wrong_cap:]
    chosen = list(shown)
    why = ["wrong"] * len(shown)
    per_class: dict[str, int] = {}
    for k, name in enumerate(result.classes):
        ok = [i for i in order if int(labels[i]) == k and int(preds[i]) == k][:cfg.correct_per_class]
        per_class[name] = len(ok)
        chosen += ok
        why += ["correct"] * len(ok)
    pos_of = {int(d): i for i, d in enumerate(result.indices.tolist())}
    have = set(chosen)
    outside = []
    for d in dict.fromkeys(int(v) for v in explained):
        p = pos_of.get(d)
        if p is None:
            outside.append(d)
        elif p not in have:
            chosen.append(p)
            why.append("explained")
            have.add(p)
    sel = {
        "wrong_cap": cfg.wrong_cap, "correct_per_class": cfg.correct_per_class, "top_k": cfg.top_k,
        "n_split": n, "n_wrong": len(wrong), "n_wrong_shown": len(shown), "n_wrong_left_out": len(left),
        "wrong_left_out_first": [int(result.indices[i]) for i in left[:LEFT_OUT_LISTED]],
        "wrong_order": "most confident mistakes first",
        "correct_shown": per_class,
        "n_explained_added": why.count("explained"),
        "explained_not_in_split": outside,
    }
    return chosen, why, sel


def targets_for(probs: torch.Tensor, label: int, pred: int, top_k: int) -> list[int]:
    """The classes explained for one image: true, predicted, then the ``top_k`` most probable
    (descending; ties by class index), without repeats."""
    k = min(top_k, probs.numel())
    top = sorted(range(probs.numel()), key=lambda c: (-float(probs[c]), c))[:k]
    return list(dict.fromkeys([label, pred, *top]))


def applicable(model: nn.Module, x1: torch.Tensor, methods: Sequence[str]) -> tuple[list[str], list[str]]:
    """The methods that can explain ``model`` (checked on one normalized image ``x1`` ``[1, C, H, W]``)
    and a note for each one left out (``Explainer.unsupported``, or the method's own error)."""
    ok, notes = [], []
    for m in methods:
        impl = METHODS.get(m)
        why = (impl() if isinstance(impl, type) else impl).unsupported(model)
        if why is None:
            try:
                explain_many(model, x1, [m])
            except CnnlensError as e:
                why = str(e)
        if why:
            notes.append(f"explore: {m} left out: {why}")
            log.warning("explore: %s left out: %s", m, why)
        else:
            ok.append(m)
    return ok, notes


def plan_bytes(n_images: int, n_entries: int, n_methods: int, shape: Sequence[int]) -> int:
    """Bytes the record will take: ``pixels`` (``C*H*W`` per image) and one ``uint8 H*W`` per map."""
    c, h, w = shape
    return n_images * c * h * w + n_entries * n_methods * h * w


def explore_maps(model: nn.Module, dataset: Any, result: Any, cfg: ExploreConfig | None = None,
                 explained: Sequence[int] = (), *, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, progress: Any = None) -> ExploreData:
    """Choose the images of ``result``'s split (:func:`choose_images`) and compute every applicable
    method of ``cfg`` for each image's targets (:func:`targets_for`), all pairs in one batched
    :func:`explain_many` call. ``dataset``: the :class:`~cnnlens.data.base.ImageDataset` evaluated
    (``mean``/``std``: the model's normalization, default the dataset's). The model comes back untouched."""
    cfg = cfg or ExploreConfig()
    mean = tuple(dataset.mean if mean is None else mean)
    std = tuple(dataset.std if std is None else std)
    pos, why, sel = choose_images(result, cfg, explained)
    classes = list(result.classes)
    idx = [int(result.indices[p]) for p in pos]
    pixels = dataset.images[torch.as_tensor(idx, dtype=torch.long)] if idx else dataset.images[:0]
    ids = dataset.ids
    images, entries = [], []
    for slot, (p, w) in enumerate(zip(pos, why)):
        lab, pr = int(result.labels[p]), int(result.preds[p])
        prob = result.probs[p].double()
        images.append({"index": idx[slot], "id": str(ids[idx[slot]]) if ids else str(idx[slot]), "true": lab,
                       "pred": pr, "confidence": float(prob[pr]),
                       "loss": float(-math.log(max(float(prob[lab]), 1e-300))), "why": w})
        entries += [[slot, t] for t in targets_for(prob, lab, pr, cfg.top_k)]
    sel["n_images"], sel["n_entries"] = len(images), len(entries)
    sel["targets"] = f"true, predicted and top-{cfg.top_k} classes, without repeats"
    h, w_ = pixels.shape[-2:]
    notes: list[str] = []
    methods: list[str] = []
    if entries:
        x1 = normalize_images(pixels[:1], mean, std)
        methods, notes = applicable(model, x1, cfg.methods)
    sel["methods_left_out"] = notes
    mb = plan_bytes(len(images), len(entries), len(methods), pixels.shape[1:]) / 1e6
    log.info("explore: %d images x %.1f targets x %d methods = %d maps, about %.1f MB",
             len(images), len(entries) / max(len(images), 1), len(methods), len(entries) * len(methods), mb)
    maps: dict[str, np.ndarray] = {m: np.zeros((0, h, w_), np.float32) for m in methods}
    fams = {m: family(m) or "" for m in methods}
    signed: dict[str, bool] = {}
    for m in methods:
        impl = METHODS.get(m)
        signed[m] = bool(getattr(impl, "signed", False))
    if entries and methods:
        slots = torch.as_tensor([e[0] for e in entries])
        tg = torch.as_tensor([e[1] for e in entries])
        parts: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        n = len(entries)
        for b0 in range(0, n, BLOCK):  # a block at a time bounds the normalized copies held
            sl = slice(b0, min(b0 + BLOCK, n))
            x = normalize_images(pixels[slots[sl]], mean, std)

            def tick(done: int, _total: int, b0: int = b0) -> None:
                if progress is not None:
                    progress(b0 + done, n)

            got = explain_many(model, x, methods, target=tg[sl], progress=tick)
            for m in methods:
                a = got[m].maps.detach().float().cpu()
                if not torch.isfinite(a).all():  # never a silent zero: say which maps
                    rows = (~torch.isfinite(a)).flatten(1).any(1).nonzero().view(-1)
                    bad = sorted({int(slots[b0 + i]) for i in rows})
                    raise CnnlensError(f"explore: {m} gave non-finite maps for the images in slots "
                                       f"{bad[:10]}")
                parts[m].append(a.numpy())
                signed[m] = bool(got[m].signed)
        maps = {m: np.concatenate(parts[m]) for m in methods}
    return ExploreData(split=result.split, classes=classes, images=images, entries=entries,
                       pixels=pixels.numpy().astype(np.uint8), maps=maps, families=fams, signed=signed,
                       selection=sel, notes=notes)
