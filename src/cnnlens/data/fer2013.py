"""FER2013 in its two real CSV forms, parsed fast and strictly.

* **Kaggle form**: one CSV ``emotion,pixels,Usage``; ``pixels`` holds 2,304 space-separated integers
  (48x48 grey, row-major); ``Usage`` maps ``Training -> train``, ``PublicTest -> val``,
  ``PrivateTest -> test``.
* **Course form**: ``train.csv`` with ``label,feature`` (a seeded stratified ``val_fraction`` of it
  becomes ``val``) and, beside it, ``test.csv`` with ``id,feature``, which becomes an unlabeled
  ``test`` split (labels ``-1``, ids = the CSV's ids in file order).

Classes: Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral (labels 0..6).

The pixel columns are parsed in :mod:`.pixelcsv` (:func:`read_pixel_csv`, importable from here too).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CnnlensError
from .base import DATASETS, DETECTORS, ImageDataset, channel_stats, stratified_split
from .pixelcsv import _FORMS, N_PIXELS, PIXEL_COLUMNS, SIDE, PixelTable, _fail, read_pixel_csv

log = logging.getLogger(__name__)

__all__ = ["FER_CLASSES", "N_PIXELS", "PIXEL_COLUMNS", "SIDE", "USAGE_SPLITS", "PixelTable", "load_fer2013",
           "read_pixel_csv"]

FER_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
_SKIP_HINT = "fix the row, or pass skip_bad_rows=True (CLI: --skip-bad-rows) to skip such rows and list them"


# ------------------------------------------------------------------------------------------------
# the two forms
# ------------------------------------------------------------------------------------------------

def _column(table: PixelTable, *names: str) -> str | None:
    for c in table.columns:
        if c.lower() in names:
            return c
    return None


def _require(table: PixelTable, name: str, form: str) -> str:
    col = _column(table, name.lower())
    if col is None:
        raise _fail(table.path, f"line 1: missing column {name!r} for the {form}; the header is "
                                f"{','.join(table.columns)!r}; expected {_FORMS}")
    return col


def _check_labels(table: PixelTable, col: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Labels as ints, with ``-2`` (and a reason) where a value is not a class index."""
    raw = table.fields[col]
    labels = np.full(len(raw), -2, np.int64)
    bad = []
    valid = {str(i): i for i in range(len(FER_CLASSES))}
    for i, s in enumerate(raw):
        k = valid.get(s)
        if k is None and s.isdigit() and str(int(s)) in valid:
            k = int(s)  # "03"
        if k is None:
            bad.append((int(table.lines[i]), f"{col} is {s!r}; it must be a class index 0..6 "
                                             f"({', '.join(f'{j}={c}' for j, c in enumerate(FER_CLASSES))})"))
        else:
            labels[i] = k
    return labels, bad


def _settle(path: Path, bad: list[tuple[int, str]], skip_bad_rows: bool, skipped: list[str]) -> None:
    """Raise on bad rows, or record them as skipped."""
    if not bad:
        return
    bad = sorted(bad)
    if not skip_bad_rows:
        line, why = bad[0]
        more = ""
        if len(bad) > 1:
            shown = ", ".join(str(b[0]) for b in bad[:10]) + (", ..." if len(bad) > 10 else "")
            more = f" ({len(bad)} bad rows in all, on lines {shown})"
        raise CnnlensError(f"{path} line {line}: {why}{more}; {_SKIP_HINT}")
    skipped.extend(f"{path.name} line {line}: {why}" for line, why in bad)
    log.warning("%s: skipped %d bad row(s) (lines %s)", path, len(bad),
                ", ".join(str(b[0]) for b in bad[:20]) + (", ..." if len(bad) > 20 else ""))


def _resize(pixels: torch.Tensor, image_size: int | None) -> torch.Tensor:
    """``uint8 [N,1,48,48]`` -> ``uint8 [N,1,S,S]`` (bilinear, antialiased), chunked."""
    if image_size in (None, SIDE):
        return pixels
    if not isinstance(image_size, int) or image_size < 8:
        raise CnnlensError(f"image_size must be an integer >= 8 (or None for 48); got {image_size!r}")
    out = torch.empty((pixels.shape[0], 1, image_size, image_size), dtype=torch.uint8)
    for i in range(0, len(pixels), 4096):
        x = pixels[i:i + 4096].float()
        y = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=image_size < SIDE)
        out[i:i + 4096] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _as_images(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).view(-1, 1, SIDE, SIDE)


def _load_kaggle(table: PixelTable, skip_bad_rows: bool, image_size: int | None) -> ImageDataset:
    form = "Kaggle form (emotion,pixels,Usage)"
    lab_col = _require(table, "emotion", form)
    use_col = _require(table, "Usage", form)
    labels, bad = _check_labels(table, lab_col)
    usage = table.fields[use_col]
    split_of = np.full(len(usage), -1, np.int64)
    names = list(USAGE_SPLITS)
    for i, u in enumerate(usage):
        if u in USAGE_SPLITS:
            split_of[i] = names.index(u)
        else:
            bad.append((int(table.lines[i]), f"{use_col} is {u!r}; it must be Training, PublicTest "
                                             "or PrivateTest"))
    skipped: list[str] = []
    _settle(table.path, table.bad + bad, skip_bad_rows, skipped)
    keep = (labels >= 0) & (split_of >= 0)
    if not keep.any():
        raise _fail(table.path, "no valid rows to load (every row was skipped)")
    pixels = table.pixels if keep.all() else table.pixels[keep]
    lab = torch.from_numpy(labels[keep])
    sp = torch.from_numpy(split_of[keep])
    splits = {USAGE_SPLITS[u]: torch.nonzero(sp == k).flatten() for k, u in enumerate(names)
              if bool((sp == k).any())}
    images = _resize(_as_images(pixels), image_size)
    stats_idx = splits.get("train", torch.arange(len(lab)))
    mean, std = channel_stats(images[stats_idx])
    return ImageDataset(name="fer2013", images=images, labels=lab, classes=list(FER_CLASSES),
                        splits=splits, mean=mean, std=std,
                        ids=[str(x) for x in table.lines[keep].tolist()], source=str(table.path),
                        skipped=skipped)


def _load_course(train: PixelTable | None, test: PixelTable | None, *, seed: int, val_fraction: float,
                 skip_bad_rows: bool, image_size: int | None) -> ImageDataset:
    if not 0.0 <= val_fraction < 1.0:
        raise CnnlensError(f"val_fraction must be in [0, 1); got {val_fraction!r}")
    skipped: list[str] = []
    parts: list[np.ndarray] = []
    labels_parts: list[np.ndarray] = []
    ids: list[str] = []
    splits: dict[str, torch.Tensor] = {}
    n_train = 0
    if train is not None:
        lab_col = _require(train, "label", "course form train.csv (label,feature)")
        labels, bad = _check_labels(train, lab_col)
        _settle(train.path, train.bad + bad, skip_bad_rows, skipped)
        keep = labels >= 0
        if not keep.any():
            raise _fail(train.path, "no valid rows to load (every row was skipped)")
        parts.append(train.pixels[keep])
        labels_parts.append(labels[keep])
        ids += [str(x) for x in train.lines[keep].tolist()]
        n_train = int(keep.sum())
        if val_fraction > 0:
            tv = stratified_split(labels[keep], {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
            splits.update(tv)
        else:
            splits["train"] = torch.arange(n_train)
    if test is not None:
        id_col = _require(test, "id", "course form test.csv (id,feature)")
        if _column(test, "label", "emotion") is not None:
            raise _fail(test.path, "line 1: the test file has a label column; give it as the train "
                                   "file, or drop the column")
        bad = []
        seen: dict[str, int] = {}
        tid = test.fields[id_col]
        keep = np.ones(len(tid), bool)
        for i, s in enumerate(tid):
            ln = int(test.lines[i])
            if not s:
                bad.append((ln, f"{id_col} is empty; every test row needs an id"))
                keep[i] = False
            elif s in seen:
                bad.append((ln, f"{id_col} {s!r} repeats the id on line {seen[s]}; ids must be unique"))
                keep[i] = False
            else:
                seen[s] = ln
        _settle(test.path, test.bad + bad, skip_bad_rows, skipped)
        if not keep.any():
            raise _fail(test.path, "no valid rows to load (every row was skipped)")
        parts.append(test.pixels[keep])
        labels_parts.append(np.full(int(keep.sum()), -1, np.int64))
        ids += [s for s, k in zip(tid, keep.tolist()) if k]
        splits["test"] = torch.arange(n_train, n_train + int(keep.sum()))
    pixels = parts[0] if len(parts) == 1 else np.concatenate(parts)
    images = _resize(_as_images(pixels), image_size)
    labels_t = torch.from_numpy(np.concatenate(labels_parts))
    stats_idx = splits.get("train", torch.arange(len(labels_t)))
    mean, std = channel_stats(images[stats_idx])
    src = train.path if train is not None else test.path  # type: ignore[union-attr]
    return ImageDataset(name="fer2013", images=images, labels=labels_t, classes=list(FER_CLASSES),
                        splits=splits, mean=mean, std=std, ids=ids, source=str(src), skipped=skipped)


def _header_of(path: Path) -> list[str] | None:
    try:
        with open(path, "rb") as fh:
            head = fh.readline(4096)
        return [c.strip().strip('"').strip().lower() for c in head.decode("utf-8-sig").split(",")]
    except (OSError, UnicodeDecodeError):
        return None


def _course_pair(path: Path) -> tuple[Path | None, Path | None]:
    """(train.csv, test.csv) for a course-form file or folder."""
    folder = path if path.is_dir() else path.parent
    train = folder / "train.csv"
    test = folder / "test.csv"
    if path.is_file():
        cols = _header_of(path) or []
        if "id" in cols:  # a test file given directly: use the train.csv beside it, if any
            return (train if train.is_file() else None), path
        return path, (test if test.is_file() and path.name == "train.csv" else None)
    return (train if train.is_file() else None), (test if test.is_file() else None)


@DATASETS.register("fer2013", description="FER2013 48x48 faces, 7 emotions: Kaggle CSV "
                                          "(emotion,pixels,Usage) or course train.csv/test.csv")
def load_fer2013(path: str | None, *, seed: int = 0, val_fraction: float = 0.1,
                 skip_bad_rows: bool = False, image_size: int | None = None) -> ImageDataset:
    """Load FER2013 from a Kaggle-form CSV, a course-form ``train.csv``/``test.csv``, or a folder.

    Args:
        path: the CSV, or a folder holding ``fer2013.csv`` (Kaggle form) or ``train.csv`` and/or
            ``test.csv`` (course form).
        seed, val_fraction: the seeded stratified validation split of the course form's train.csv.
        skip_bad_rows: skip invalid rows (listed in ``.skipped`` with their line numbers) instead
            of raising.
        image_size: resize the 48x48 faces to this side (bilinear); ``None`` keeps 48.

    Returns:
        ``ImageDataset`` with ``images uint8 [N,1,S,S]``, splits ``train``/``val``/``test``.
    """
    if not path:
        raise CnnlensError("fer2013 needs a path: use SPEC 'fer2013:PATH' with the CSV file or its folder")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist; give the FER2013 CSV (or its folder)")
    if p.is_dir():
        csvs = sorted(q for q in p.glob("*.csv") if q.is_file())
        kaggle = [q for q in csvs if "pixels" in (_header_of(q) or [])]
        if (p / "train.csv").is_file() or (p / "test.csv").is_file():
            train, test = _course_pair(p)
        elif len(kaggle) == 1:
            return load_fer2013(str(kaggle[0]), seed=seed, val_fraction=val_fraction,
                                skip_bad_rows=skip_bad_rows, image_size=image_size)
        else:
            found = ", ".join(q.name for q in csvs) or "no CSV files"
            raise CnnlensError(f"{p}: expected one Kaggle-form CSV (emotion,pixels,Usage) or "
                             f"train.csv/test.csv (course form); found {found}. Give the CSV path")
    else:
        if "feature" not in (_header_of(p) or []):
            return _load_kaggle(read_pixel_csv(p), skip_bad_rows, image_size)
        train, test = _course_pair(p)
    tr = read_pixel_csv(train) if train is not None else None
    te = read_pixel_csv(test) if test is not None else None
    if tr is None and te is None:  # pragma: no cover - _course_pair always finds one for a file
        raise CnnlensError(f"{p}: no train.csv or test.csv found")
    return _load_course(tr, te, seed=seed, val_fraction=val_fraction, skip_bad_rows=skip_bad_rows,
                        image_size=image_size)


def _detect(p: Path) -> bool:
    if p.is_file():
        if p.suffix.lower() != ".csv":
            return False
        cols = _header_of(p) or []
        return any(c in PIXEL_COLUMNS for c in cols)
    if p.is_dir():
        return any(_detect(q) for q in p.glob("*.csv"))
    return False


DETECTORS.append(("fer2013", _detect))
