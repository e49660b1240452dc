"""The dataset contract: raw uint8 pixels in memory, labels, class names, splits, statistics."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..registry import Registry
from ..errors import CnnlensError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ImageDataset:
    """A whole image-classification dataset held in memory.

    Attributes:
        name: dataset kind (``"digits"``, ``"fer2013"``, ...).
        images: ``uint8 [N, C, H, W]`` raw pixels (C = 1 or 3), the originals every figure shows.
        labels: ``int64 [N]``; ``-1`` marks an unlabeled sample (prediction only).
        classes: class names, ``labels`` index into it.
        splits: split name (``train``, ``val``, ``test``, ...) -> ``int64`` indices into ``images``.
        mean, std: per-channel normalization statistics in ``[0, 1]`` units, computed on ``train``.
        ids: per-sample identifiers in the source's own terms (file name, CSV id or row).
        masks: optional ``bool [N, H, W]`` ground-truth evidence masks (the ``planted`` data).
        source: where it was read from.
        skipped: what was skipped on load (only when skipping was asked for), as readable lines.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    splits: dict[str, torch.Tensor]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ids: list[str] | None = None
    masks: torch.Tensor | None = None
    source: str = ""
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise CnnlensError(f"images must be uint8 [N,C,H,W]; got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise CnnlensError(f"labels must be [N={self.images.shape[0]}]; got {tuple(self.labels.shape)}")
        if len(self.images) == 0:
            raise CnnlensError(f"dataset {self.name!r} from {self.source or '?'} has no images")

    # ---- shape facts -------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    # ---- access ------------------------------------------------------------------------
    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images uint8 [n,C,H,W], labels int64 [n])`` of one split."""
        idx = self.indices(name)
        return self.images[idx], self.labels[idx]

    def indices(self, name: str) -> torch.Tensor:
        if name not in self.splits:
            raise CnnlensError(f"dataset {self.name!r} has no split {name!r}; it has: "
                             f"{', '.join(self.splits) or 'none'}")
        return self.splits[name]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0,255]) ``[N,C,H,W]`` -> normalized float32, on the input's device."""
        return normalize(images, self.mean, self.std)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """normalized float ``[N,C,H,W]`` -> float in ``[0,1]``."""
        return denormalize(x, self.mean, self.std)

    def counts(self) -> dict[str, list[int]]:
        """Samples per class in each split (unlabeled samples are not counted)."""
        out = {}
        for s, idx in self.splits.items():
            lab = self.labels[idx]
            lab = lab[lab >= 0]
            out[s] = torch.bincount(lab, minlength=self.num_classes).tolist()
        return out


def align_classes(ds: ImageDataset, classes: list[str]) -> ImageDataset:
    """``ds`` relabeled so that its labels index ``classes`` (a model's outputs, in order).

    The same names in another order permute the labels; as many names, none of them the dataset's,
    rename the classes by position (output k is dataset class k). Anything else is an error naming
    the names that do not fit. Unlabeled samples (-1) stay unlabeled.
    """
    classes = [str(c) for c in classes]
    if list(ds.classes) == classes:
        return ds
    if len(classes) != ds.num_classes or len(set(classes)) != len(classes):
        raise CnnlensError(f"classes {classes} must name each of the model's {ds.num_classes} outputs once "
                           f"(dataset {ds.name!r} has {ds.num_classes} classes: {', '.join(ds.classes)})")
    if set(classes) == set(ds.classes):
        new_index = torch.tensor([classes.index(c) for c in ds.classes], dtype=torch.long)
        labels = torch.where(ds.labels >= 0, new_index[ds.labels.clamp(min=0)], ds.labels)
        return replace(ds, labels=labels, classes=classes)
    shared = sorted(set(classes) & set(ds.classes))
    if shared:
        raise CnnlensError(f"classes {classes} share {shared} with dataset {ds.name!r}'s classes "
                           f"{ds.classes} but not all of them: give the dataset's class names in the model's "
                           "output order, or as many new names (output k = dataset class k)")
    return replace(ds, classes=classes)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    x = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float() / 255.0
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def denormalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return x * s + m


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``[N,C,H,W]`` in ``[0,1]`` units.

    Exact, from each channel's 256-bin histogram (one pass, no float copy of the pixels).
    """
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1), minlength=256).double()
        n = hist.sum()
        mean = (hist * values).sum() / n
        var = (hist * (values - mean) ** 2).sum() / n
        means.append(float(mean) / 255)
        stds.append(max(float(var.sqrt()) / 255, 1e-3))
    return tuple(means), tuple(stds)


def stratified_split(labels: np.ndarray | torch.Tensor, fractions: dict[str, float], seed: int
                     ) -> dict[str, torch.Tensor]:
    """Split indices per class with a seeded permutation; each class keeps its proportions.

    ``fractions`` maps split names to fractions summing to 1; the last split takes the remainder.
    """
    lab = torch.as_tensor(labels).long()
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise CnnlensError(f"split fractions must sum to 1; got {fractions}")
    g = torch.Generator().manual_seed(seed)
    names = list(fractions)
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for c in torch.unique(lab).tolist():
        idx = torch.nonzero(lab == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        start = 0
        for i, n in enumerate(names):
            if i == len(names) - 1:
                k = len(idx) - start
            else:
                k = int(round(fractions[n] * len(idx)))
            parts[n].append(idx[start:start + k])
            start += k
    return {n: torch.sort(torch.cat(p)).values for n, p in parts.items()}


# name -> loader(path: str | None, **options) -> ImageDataset
DATASETS: Registry = Registry("dataset")

#: options that any caller may pass to any loader (a run's config and the CLI pass them all), with the
#: value that means "nothing asked". A loader without a use for one does not receive it; a value other
#: than this one is then logged as ignored. ``channels`` and ``progress`` are hints: dropped quietly.
GENERAL_OPTIONS: dict[str, object] = {"seed": 0, "val_fraction": 0.1, "skip_bad_rows": False,
                                      "image_size": None}
HINT_OPTIONS = ("channels", "progress")


def loader_options(name: str) -> list[str]:
    """The keyword options of dataset ``name``'s loader, in signature order."""
    import inspect

    params = inspect.signature(DATASETS.get(name)).parameters.values()
    return [p.name for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "path"]


def _call_loader(name: str, path: str | None, options: dict[str, object]) -> ImageDataset:
    """Call ``name``'s loader with the options it takes; an option no loader knows is an error that
    lists the valid ones, and a general option it cannot honour is logged."""
    import inspect
    import logging

    loader = DATASETS.get(name)
    params = inspect.signature(loader).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):  # a user loader that takes anything
        return loader(path, **options)
    valid = loader_options(name)
    unknown = [k for k in options if k not in valid and k not in GENERAL_OPTIONS and k not in HINT_OPTIONS]
    if unknown:
        raise CnnlensError(f"dataset {name!r} has no option {unknown[0]!r}; its options: {', '.join(valid)}")
    for k, v in options.items():
        if k not in valid and k in GENERAL_OPTIONS and v != GENERAL_OPTIONS[k]:
            logging.getLogger(__name__).warning("dataset %r does not use %s (ignored: %r); its options: %s",
                                                name, k, v, ", ".join(valid))
    return loader(path, **{k: v for k, v in options.items() if k in valid})
# detectors tried in order for a bare path: (name, predicate(path) -> bool)
DETECTORS: list[tuple[str, object]] = []


def load_dataset(spec: str, **options: object) -> ImageDataset:
    """Load a dataset from a SPEC: ``name`` (bundled), ``name:PATH``, or a bare PATH.

    ``options`` go to the loader; an option it does not know is a :class:`CnnlensError` listing its
    options (:data:`GENERAL_OPTIONS` and :data:`HINT_OPTIONS` are accepted by every loader).

    >>> ds = load_dataset("digits")
    >>> ds.images.shape[1:]
    torch.Size([1, 32, 32])
    """
    from pathlib import Path

    name, sep, path = spec.partition(":")
    if sep and name in DATASETS:
        return _call_loader(name, path, options)
    if not sep and name in DATASETS:
        return _call_loader(name, None, options)
    p = Path(spec)
    if p.exists():
        for dname, detect in DETECTORS:
            if detect(p):  # type: ignore[operator]
                return _call_loader(dname, str(p), options)
        raise CnnlensError(f"cannot tell what dataset {spec!r} is; name it explicitly as one of: "
                         + ", ".join(f"{n}:PATH" for n in DATASETS.names()))
    raise CnnlensError(f"dataset spec {spec!r}: {DATASETS.unknown_message(name)} "
                     "(or give an existing path)")
