"""File listing, bad-entry bookkeeping and dataset assembly shared by the folder-based loaders."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import torch

from .base import ImageDataset, channel_stats, stratified_split
from .decode import IMAGE_EXTENSIONS, decode_folder
from ..errors import CnnlensError

log = logging.getLogger(__name__)

_SKIP_HINT = "remove or fix it, or pass skip_bad_rows=True (CLI: --skip-bad-rows) to skip it and list it"


def natural_key(name: str) -> list[object]:
    """Sort key where digit runs compare as numbers: ``2_9.jpg`` < ``2_10.jpg``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def folder_root(path: str | None, kind: str, takes: str, hint: str = "") -> Path:
    """The root folder of a folder-based dataset SPEC ``kind:DIR``; a missing path, a missing folder
    (``FileNotFoundError``) or a file (``CnnlensError``) is said with what ``kind:DIR`` takes."""
    if not path:
        raise CnnlensError(f"{kind} needs a path: use SPEC '{kind}:DIR'{hint}")
    root = Path(path)
    if not root.is_dir():
        raise (FileNotFoundError if not root.exists() else CnnlensError)(
            f"{root} is not a folder; {kind}:DIR takes {takes}")
    return root


def visible(folder: Path) -> list[Path]:
    """Entries of ``folder`` that are not hidden, in natural order."""
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))


def is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS


class Problems:
    """Collects bad entries; raises on the first unless skipping, in which case it lists them."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.items: list[tuple[Path, str]] = []

    def add(self, path: Path, why: str) -> None:
        if not self.skip:
            raise CnnlensError(f"{path}: {why}; {_SKIP_HINT}")
        self.items.append((path, why))

    def settle(self, root: Path) -> list[str]:
        if self.items:
            log.warning("%s: skipped %d bad file(s)/folder(s): %s", root, len(self.items),
                        ", ".join(str(p.relative_to(root)) for p, _ in self.items[:20])
                        + (", ..." if len(self.items) > 20 else ""))
        return [f"{p.relative_to(root)}: {why}" for p, why in self.items]


def decode_listing(kind: str, root: Path, entries: list[tuple[Path, int, str]], problems: Problems, *,
                   image_size: int | None, channels: int | None, cache: bool,
                   progress: Callable[[int, int], None] | None = None
                   ) -> tuple[torch.Tensor, list[tuple[Path, int, str]]]:
    """Decode ``(file, label, split)`` entries; returns the images and the entries that decoded."""
    files = [e[0] for e in entries]
    size = None if image_size is None else (_side(image_size), _side(image_size))
    dec = decode_folder(kind, root, files, size=size, channels=channels, cache=cache, progress=progress)
    for i, why in dec.bad.items():
        problems.add(files[i], why)
    return dec.images, [entries[i] for i in dec.ok]


def _side(image_size: object) -> int:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 8:
        raise CnnlensError(f"image_size must be an integer >= 8; got {image_size!r}")
    return image_size


def assemble(name: str, root: Path, images: torch.Tensor, entries: list[tuple[Path, int, str]],
             classes: list[str], *, ids: list[str], skipped: list[str],
             split_fractions: dict[str, float], seed: int,
             where: Callable[[str, int], str] | None = None) -> ImageDataset:
    """Build the dataset from ``(file, label, split)`` entries.

    Entries of split ``"all"`` are cut by a seeded stratified split with ``split_fractions``;
    entries of ``train``/``val``/``test`` keep their split. A labeled split that lacks a class is
    logged as a warning (:func:`warn_missing_classes`); ``where(split, label)`` says where the
    class's images of a given (not cut) split belong.
    """
    if not entries:
        raise CnnlensError(f"{root}: no images could be loaded; every file was skipped")
    if any(not 0 <= v <= 1 for v in split_fractions.values()):
        raise CnnlensError(f"split fractions must be in [0, 1] and leave a train part; got {split_fractions}")
    labels = torch.tensor([e[1] for e in entries], dtype=torch.int64)
    names = [e[2] for e in entries]
    parts: dict[str, list[torch.Tensor]] = {}
    cut = torch.tensor([i for i, s in enumerate(names) if s == "all"], dtype=torch.int64)
    cut_splits: set[str] = set()  # splits made (partly) by the seeded split
    if len(cut):
        fr = {k: v for k, v in split_fractions.items() if v > 0}
        got = stratified_split(labels[cut], fr, seed) if len(fr) > 1 else {next(iter(fr)): torch.arange(len(cut))}
        for k, v in got.items():
            parts.setdefault(k, []).append(cut[v])
            cut_splits.add(k)
    for s in ("train", "val", "test"):
        idx = [i for i, n in enumerate(names) if n == s]
        if idx:
            parts.setdefault(s, []).append(torch.tensor(idx, dtype=torch.int64))
    splits = {s: torch.cat(parts[s]).sort().values for s in ("train", "val", "test")
              if s in parts and sum(len(t) for t in parts[s])}
    mean, std = channel_stats(_rows(images, splits.get("train")))
    warn_missing_classes(root, labels, splits, classes, cut=cut_splits, where=where)
    return ImageDataset(name=name, images=images, labels=labels, classes=classes, splits=splits, mean=mean,
                        std=std, ids=ids, source=str(root), skipped=skipped)


def _rows(images: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    """``images[idx]``, as a view (no copy) when ``idx`` is one contiguous run or absent."""
    if idx is None:
        return images
    if len(idx) and int(idx[-1]) - int(idx[0]) == len(idx) - 1 and bool((idx.diff() == 1).all()):
        return images[int(idx[0]):int(idx[-1]) + 1]
    return images[idx]


_ROLE = {"train": "the model cannot learn or predict {what}",
         "val": "the validation accuracy (which picks the best epoch) does not cover {what}",
         "test": "the test evaluation does not cover {what}"}


def warn_missing_classes(root: Path, labels: torch.Tensor, splits: dict[str, torch.Tensor],
                         classes: list[str], *, cut: set[str] | None = None,
                         where: Callable[[str, int], str] | None = None) -> list[str]:
    """Log a warning for each labeled split that has no image of some class; returns the lines.

    Unlabeled splits (every label ``-1``) are prediction-only and not checked. ``cut``: the splits
    made by the seeded split (their fix is more images or another fraction); ``where(split, label)``
    says where the class's images of a given split belong.
    """
    lines = []
    for s, idx in splits.items():
        lab = labels[idx]
        lab = lab[lab >= 0]
        if not len(lab):
            continue
        have = torch.bincount(lab, minlength=len(classes))
        missing = [k for k in range(len(classes)) if have[k] == 0]
        if not missing:
            continue
        what = "these classes" if len(missing) > 1 else "this class"
        names = ", ".join(repr(classes[k]) for k in missing[:8]) + (", ..." if len(missing) > 8 else "")
        if cut and s in cut:
            fix = f"the seeded split left no image of {what} there (too few images): add images"
            if s == "val":
                fix += ", or cut a larger share with val_fraction (CLI: --val-fraction)"
        elif where is not None:
            fix = "add images to " + "; ".join(where(s, k) for k in missing[:3]) + (
                "; ..." if len(missing) > 3 else "")
        else:
            fix = f"add images of {what} to the {s} split"
        role = _ROLE.get(s, "{what} is missing there").format(what=what)
        who = (f"class {names} has" if len(missing) == 1
               else f"{len(missing)} of {len(classes)} classes ({names}) have")
        line = f"{root}: {who} no image in the {s} split, so {role}; {fix}"
        log.warning("%s", line)
        lines.append(line)
    return lines
