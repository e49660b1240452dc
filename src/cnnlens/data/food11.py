"""Food-11: ``training/``, ``validation/`` and ``evaluation/`` (or ``testing/``) folders of JPEGs.

Files are named ``<label>_<index>.jpg`` with ``label`` in 0..10; a split folder whose names have
no ``<label>_`` prefix (e.g. ``testing/0001.jpg``) is unlabeled, for prediction only (labels -1).
Splits: ``training -> train``, ``validation -> val``, ``evaluation``/``testing -> test``; without
``validation/``, a seeded stratified ``val_fraction`` of training becomes ``val``. Images are decoded
in parallel, resized to ``image_size`` squared (default 128) in RGB, and cached (see
``cnnlens.data.cache``). ids are the file names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from .base import DATASETS, DETECTORS, ImageDataset
from .listing import Problems, assemble, decode_listing, folder_root, is_image_name, visible
from ..errors import CnnlensError

FOOD11_CLASSES = ["Bread", "Dairy product", "Dessert", "Egg", "Fried food", "Meat", "Noodles/Pasta", "Rice",
                  "Seafood", "Soup", "Vegetable/Fruit"]
FOOD11_SPLITS = {"training": "train", "validation": "val", "evaluation": "test", "testing": "test"}
_LABELED = re.compile(r"^(\d+)_(.+)$")


@DATASETS.register("food11", description="Food-11 photos, 11 classes: training/ validation/ "
                                         "evaluation/ (or testing/) of <label>_<index>.jpg")
def load_food11(path: str | None, *, seed: int = 0, val_fraction: float = 0.1, skip_bad_rows: bool = False,
                image_size: int | None = 128, cache: bool = True,
                progress: Callable[[int, int], None] | None = None) -> ImageDataset:
    """Load Food-11 from its folder.

    Args:
        path: the folder holding ``training/`` etc.
        seed, val_fraction: the stratified val split, used only when there is no ``validation/``.
        skip_bad_rows: skip bad files (listed in ``.skipped``) instead of raising.
        image_size: side of the square the photos are resized to (``None``: their own size if they
            all share one, else the size most share, else 128, with a warning naming the odd ones).
        cache: reuse decoded pixels when no file changed.

    Returns:
        ``ImageDataset`` with ``images uint8 [N,3,S,S]`` and the 11 Food-11 classes.
    """
    root = folder_root(path, "food11", "the folder holding training/ validation/ evaluation/",
                       " with the folder holding training/")
    dirs = {n: root / n for n in FOOD11_SPLITS if (root / n).is_dir()}
    if not dirs:
        raise CnnlensError(f"{root} has none of training/, validation/, evaluation/, testing/; give the "
                         "Food-11 folder that holds them")
    if "evaluation" in dirs and "testing" in dirs:
        raise CnnlensError(f"{root} has both evaluation/ and testing/, which are both the test split; "
                         "keep one, or load the other as its own dataset")
    problems = Problems(skip_bad_rows)
    entries: list[tuple[Path, int, str]] = []
    for name, d in dirs.items():
        split = FOOD11_SPLITS[name]
        files = []
        for p in visible(d):
            if p.is_dir():
                problems.add(p, f"is a folder; Food-11's {name}/ holds <label>_<index>.jpg files only")
            elif not is_image_name(p):
                problems.add(p, f"is not an image file (extension {p.suffix or 'none'!r})")
            else:
                files.append(p)
        if not files:
            problems.add(d, "holds no images; add them or remove the folder")
            continue
        matches = [_LABELED.match(f.stem) for f in files]
        labeled = any(m is not None for m in matches)
        for f, m in zip(files, matches):
            if not labeled:
                entries.append((f, -1, split))
            elif m is None:
                problems.add(f, f"file name has no '<label>_' prefix (like 3_120.jpg), but other files "
                                f"in {name}/ have one; rename it with its class 0..10")
            elif int(m.group(1)) >= len(FOOD11_CLASSES):
                problems.add(f, f"label {int(m.group(1))} in the file name is outside 0..10 "
                                f"({', '.join(f'{i}={c}' for i, c in enumerate(FOOD11_CLASSES))})")
            else:
                entries.append((f, int(m.group(1)), split))
    images, kept = decode_listing("food11", root, entries, problems, image_size=image_size, channels=3,
                                  cache=cache, progress=progress)
    skipped = problems.settle(root)
    if not 0 <= val_fraction < 1:
        raise CnnlensError(f"val_fraction must be in [0, 1); got {val_fraction!r}")
    fractions = {"train": 1.0}
    if "validation" not in dirs and val_fraction > 0 and any(s == "train" and lab >= 0 for _, lab, s in kept):
        kept = [(f, lab, "all" if s == "train" else s) for f, lab, s in kept]
        fractions = {"train": 1.0 - val_fraction, "val": val_fraction}
    folder_of = {FOOD11_SPLITS[n]: n for n in dirs}

    def where(split: str, label: int) -> str:
        return f"{folder_of.get(split, split)}/ as {label}_<index>.jpg ({FOOD11_CLASSES[label]})"

    return assemble("food11", root, images, kept, list(FOOD11_CLASSES), ids=[f.name for f, _, _ in kept],
                    skipped=skipped, split_fractions=fractions, seed=seed, where=where)


def _detect(p: Path) -> bool:
    return p.is_dir() and any((p / n).is_dir() for n in FOOD11_SPLITS)


DETECTORS.append(("food11", _detect))
