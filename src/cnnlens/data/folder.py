"""Any class-per-folder image tree (``folder:DIR``), and the file listing shared with Food-11.

Layouts::

    DIR/<class>/*.jpg                      a seeded stratified train/val/test split is made
    DIR/{train,val,test}/<class>/*.jpg     the given splits (also 'valid', 'validation')
    DIR/test/*.jpg                         a test folder of loose images is unlabeled (labels -1)

Classes are the sorted class-folder names. Hidden files (``.DS_Store``, ...) are not samples.
Every other file must be a readable image: a damaged, truncated or non-image file, an empty class
folder, or a stray file outside the class folders is an error naming it, or, with
``skip_bad_rows=True``, is skipped and listed in ``ImageDataset.skipped``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import DATASETS, DETECTORS, ImageDataset
from .listing import Problems, assemble, decode_listing, folder_root, is_image_name, natural_key, visible
from ..errors import CnnlensError

SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}


def _class_files(folder: Path, problems: Problems) -> list[Path]:
    files = []
    for p in visible(folder):
        if p.is_dir():
            problems.add(p, "is a folder inside a class folder; class folders hold image files only")
        elif not is_image_name(p):
            problems.add(p, f"is not an image file (extension {p.suffix or 'none'!r})")
        else:
            files.append(p)
    return files


@DATASETS.register("folder", description="any class-per-folder image tree, optionally with "
                                         "train/ val/ test/ subfolders")
def load_folder(path: str | None, *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.1,
                skip_bad_rows: bool = False, image_size: int | None = None, channels: int | None = None,
                cache: bool = True, progress: Callable[[int, int], None] | None = None) -> ImageDataset:
    """Load a class-per-folder tree.

    Args:
        path: the root folder.
        seed, val_fraction, test_fraction: the seeded stratified split when there are no split
            subfolders (a ``val/`` missing beside ``train/`` is also cut from train).
        skip_bad_rows: skip bad files and empty class folders (listed in ``.skipped``).
        image_size: resize to this side; ``None`` keeps the images' size if they all share one,
            else the size most of them share (else 128), with a warning naming the odd images.
        channels: 1 or 3; ``None``: 1 if every image is grey, else 3.
        cache: reuse the decoded pixels when no file changed (see ``cnnlens.data.cache``).

    Returns:
        ``ImageDataset`` with ``images uint8 [N,C,H,W]``, ids = paths relative to the root.
    """
    root = folder_root(path, "folder", "a folder of class folders")
    problems = Problems(skip_bad_rows)
    subdirs = [p for p in visible(root) if p.is_dir()]
    split_dirs = {p: SPLIT_FOLDERS[p.name.lower()] for p in subdirs if p.name.lower() in SPLIT_FOLDERS}
    if len(set(split_dirs.values())) != len(split_dirs):
        raise CnnlensError(f"{root}: several folders name the same split ({', '.join(p.name for p in split_dirs)}); "
                         "keep one of each of train/, val/, test/")
    # (folder of a class, class name, split): split "all" is cut by the seeded split later
    groups: list[tuple[Path, str | None, str]] = []
    loose: list[tuple[Path, str]] = []  # unlabeled test images
    if split_dirs:
        for p in visible(root):
            if p not in split_dirs:
                problems.add(p, "is outside the train/ val/ test/ folders")
        for d, s in split_dirs.items():
            for q in visible(d):
                if q.is_dir():
                    groups.append((q, q.name, s))
                elif s == "test" and is_image_name(q):
                    loose.append((q, s))
                else:
                    problems.add(q, f"is not a class folder; {d.name}/ holds one folder per class")
    else:
        for p in visible(root):
            if p.is_dir():
                groups.append((p, p.name, "all"))
            else:
                problems.add(p, "is outside the class folders; put each image in its class's folder")
    if not groups:
        raise CnnlensError(f"{root} has no class folders; folder:DIR expects DIR/<class>/<image> "
                         "(optionally under train/ val/ test/)")
    entries_raw: list[tuple[Path, str | None, str]] = []
    for d, cname, s in groups:
        files = _class_files(d, problems)
        if not files:
            problems.add(d, "is an empty class folder; add its images or remove the folder")
        entries_raw += [(f, cname, s) for f in files]
    if loose and any(s == "test" for _, _, s in groups):
        for f, _ in loose:
            problems.add(f, "is a loose image beside the class folders of test/")
        loose = []
    entries_raw += [(f, None, s) for f, s in loose]
    if not entries_raw:
        raise CnnlensError(f"{root}: no image files found")
    classes = sorted({c for _, c, _ in entries_raw if c is not None}, key=natural_key)
    cidx = {c: i for i, c in enumerate(classes)}
    entries = [(f, -1 if c is None else cidx[c], s) for f, c, s in entries_raw]
    images, kept = decode_listing("folder", root, entries, problems, image_size=image_size,
                                  channels=channels, cache=cache, progress=progress)
    skipped = problems.settle(root)
    # classes left without any image after skipping are dropped
    present = sorted({lab for _, lab, _ in kept if lab >= 0})
    if present != list(range(len(classes))):
        remap = {old: new for new, old in enumerate(present)}
        classes = [classes[i] for i in present]
        kept = [(f, remap.get(lab, -1), s) for f, lab, s in kept]
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise CnnlensError(f"val_fraction and test_fraction must be >= 0 and sum to less than 1; "
                         f"got {val_fraction} and {test_fraction}")
    fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    if split_dirs and "train" in split_dirs.values() and "val" not in split_dirs.values() and val_fraction > 0:
        # no val/ folder: cut val from train/, keep the other given splits
        kept = [(f, lab, "all" if s == "train" else s) for f, lab, s in kept]
        fractions = {"train": 1.0 - val_fraction, "val": val_fraction}
    folder_of = {s: d.name for d, s in split_dirs.items()}

    def where(split: str, label: int) -> str:
        return str(root / folder_of.get(split, split) / classes[label]) + "/"

    return assemble("folder", root, images, kept, classes, ids=[str(f.relative_to(root)) for f, _, _ in kept],
                    skipped=skipped, split_fractions=fractions, seed=seed, where=where)


def _detect(p: Path) -> bool:
    if not p.is_dir():
        return False
    try:
        subdirs = [q for q in visible(p) if q.is_dir()]
        for d in subdirs[:50]:
            inner = visible(d)
            if any(q.is_file() and is_image_name(q) for q in inner[:200]):
                return True
            if any(q.is_dir() and any(is_image_name(r) for r in visible(q)[:200]) for q in inner[:50]):
                return True
    except OSError:
        return False
    return False


DETECTORS.append(("folder", _detect))
