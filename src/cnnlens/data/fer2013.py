"""FER2013 in its two real CSV forms, parsed fast and strictly.

* **Kaggle form**: one CSV ``emotion,pixels,Usage``; ``pixels`` holds 2,304 space-separated integers
  (48x48 grey, row-major); ``Usage`` maps ``Training -> train``, ``PublicTest -> val``,
  ``PrivateTest -> test``.
* **Course form**: ``train.csv`` with ``label,feature`` (a seeded stratified ``val_fraction`` of it
  becomes ``val``) and, beside it, ``test.csv`` with ``id,feature``, which becomes an unlabeled
  ``test`` split (labels ``-1``, ids = the CSV's ids in file order).

Classes: Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral (labels 0..6).

The pixel columns are parsed with vectorized numpy on the raw bytes (no Python loop over numbers):
the positions of the separating spaces are found once, and each number is read from the (at most 3)
bytes before its separator. Rows the fast path cannot vouch for are re-read one by one by a plain
Python parser, which is the authority on what is valid and says exactly what is wrong.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import DATASETS, DETECTORS, ImageDataset, channel_stats, stratified_split
from ..errors import CnnlensError

log = logging.getLogger(__name__)

FER_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48
N_PIXELS = SIDE * SIDE
PIXEL_COLUMNS = ("pixels", "feature")
_CHUNK_ROWS = 1024
_FORMS = ("Kaggle form 'emotion,pixels,Usage' or course form 'label,feature' (train.csv) / "
          "'id,feature' (test.csv)")
_SKIP_HINT = "fix the row, or pass skip_bad_rows=True (CLI: --skip-bad-rows) to skip such rows and list them"


@dataclass
class PixelTable:
    """A pixel CSV, parsed.

    Attributes:
        path: the file.
        columns: header names as written (stripped).
        pixels: ``uint8 [n, 2304]`` for the rows whose structure and pixels are valid.
        lines: ``[n]`` 1-based file line number of each of those rows.
        fields: other column name -> ``[n]`` string values of those rows.
        bad: ``(line, reason)`` for every data row that could not be read, in file order.
    """

    path: Path
    columns: list[str]
    pixels: np.ndarray
    lines: np.ndarray
    fields: dict[str, list[str]]
    bad: list[tuple[int, str]] = field(default_factory=list)


def _fail(path: Path, msg: str) -> CnnlensError:
    return CnnlensError(f"{path}: {msg}")


def _read_header(path: Path, data: bytes) -> tuple[list[str], int]:
    """Header names and the offset where the data rows start."""
    if not data or data.isspace():
        raise _fail(path, f"the file is empty; a FER2013 CSV starts with a header line ({_FORMS}) "
                          "followed by one row per image")
    end = data.find(b"\n")
    end = len(data) if end < 0 else end
    raw = data[:end].rstrip(b"\r")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _fail(path, f"line 1 is not UTF-8 text; expected a header: {_FORMS}") from None
    names = [c.strip().strip('"').strip() for c in text.split(",")]
    lower = [c.lower() for c in names]
    if not any(c in PIXEL_COLUMNS for c in lower):
        shown = text if len(text) < 80 else text[:77] + "..."
        raise _fail(path, f"line 1 ({shown!r}) has no 'pixels' or 'feature' column; expected a header: "
                          f"{_FORMS}. If the file has no header line, add one")
    if len(set(lower)) != len(lower):
        raise _fail(path, f"line 1 repeats a column name: {names}; give each column once")
    return names, min(end + 1, len(data))


def _explain_row(field_bytes: bytes) -> tuple[np.ndarray | None, str | None]:
    """The authority on one pixel field: its values, or the reason it is invalid."""
    toks = field_bytes.split()
    if len(toks) != N_PIXELS:
        return None, f"pixels has {len(toks)} values; FER2013 needs {N_PIXELS} (48x48)"
    vals = np.empty(N_PIXELS, np.uint8)
    for i, t in enumerate(toks):
        if not t.isdigit():
            shown = t.decode("utf-8", "replace")
            return None, f"pixel {i + 1} is {shown!r}, not an integer; pixels must be integers 0..255"
        v = int(t)
        if v > 255:
            return None, f"pixel {i + 1} is {v}, outside 0..255"
        vals[i] = v
    return vals, None


def _gather_values(buf: np.ndarray, lo: int, hi: int, stops: np.ndarray) -> tuple[np.ndarray, bool]:
    """Numbers that end just before byte positions ``lo + stops``: values and whether all are valid.

    Valid means: 1 to 3 ASCII digits, preceded by a non-digit, value <= 255. The caller has
    checked that every byte of each field is a digit or a space.
    """
    c0 = buf[lo - 1:hi][stops]
    c1 = buf[lo - 2:hi - 1][stops]
    c2 = buf[lo - 3:hi - 2][stops]
    c3 = buf[lo - 4:hi - 3][stops]
    c0 -= 48
    c1 -= 48
    c2 -= 48
    c3 -= 48
    two = c1 < 10          # the number has >= 2 digits
    three = c2 < 10
    three &= two           # >= 3 digits
    four = c3 < 10
    four &= three          # >= 4 digits: not accepted here (the slow path decides)
    if c0.size and (int(c0.max()) >= 10 or bool(four.any())):
        return c0, False
    c1 *= two
    c2 *= three
    val = c0.astype(np.uint16)
    val += c1 * np.uint16(10)
    val += c2 * np.uint16(100)
    if val.size and int(val.max()) > 255:
        return c0, False
    return val.astype(np.uint8), True


def _fast_rows(data: bytes, buf: np.ndarray, fs: np.ndarray, fe: np.ndarray, out: np.ndarray) -> bool:
    """Parse the pixel fields ``data[fs[i]:fe[i]]`` into ``out[i]``; False if any row is not plain."""
    r = len(fs)
    lo, hi = int(fs[0]), int(fe[-1])
    if lo < 4:
        return False
    # every byte inside the fields must be a digit or a space
    inside = sum(int(b - a) for a, b in zip(fs.tolist(), fe.tolist()))
    between = hi - lo - inside
    kept = len(data[lo:hi].translate(None, b"0123456789 "))
    if kept != between - _digits_spaces_between(data, fs, fe):
        return False
    sp = np.flatnonzero(buf[lo:hi] == 32)
    if len(sp) != r * (N_PIXELS - 1):
        return False
    sp = sp.reshape(r, N_PIXELS - 1)
    # each row's 2303 spaces lie inside its own field
    if not (bool((sp[:, 0] >= fs - lo).all()) and bool((sp[:, -1] < fe - lo).all())):
        return False
    vals, ok = _gather_values(buf, lo, hi, sp)
    if not ok:
        return False
    last, ok = _gather_values(buf, lo, hi, (fe - lo)[:, None])
    if not ok:
        return False
    out[:, :N_PIXELS - 1] = vals
    out[:, N_PIXELS - 1:] = last
    return True


def _digits_spaces_between(data: bytes, fs: np.ndarray, fe: np.ndarray) -> int:
    """Bytes between consecutive fields that are digits or spaces (labels, ids)."""
    n = 0
    ends, starts = fe[:-1].tolist(), fs[1:].tolist()
    for a, b in zip(ends, starts):
        s = data[a:b]
        n += len(s) - len(s.translate(None, b"0123456789 "))
    return n


def read_pixel_csv(path: str | os.PathLike[str], *, workers: int | None = None) -> PixelTable:
    """Read a CSV with one 48x48 grey image per row in a ``pixels`` or ``feature`` column.

    Structure errors (empty file, no header, no data rows) raise ``ValueError`` naming the file;
    row errors (wrong field count, pixel count, non-integer or out-of-range pixel) are collected in
    ``PixelTable.bad`` with their line numbers for the caller to raise or skip.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{p} does not exist; give the path of the FER2013 CSV") from None
    except IsADirectoryError:
        raise CnnlensError(f"{p} is a folder; give the FER2013 CSV file inside it") from None
    columns, start = _read_header(p, data)
    ncols = len(columns)
    lower = [c.lower() for c in columns]
    pcol = next(i for i, c in enumerate(lower) if c in PIXEL_COLUMNS)
    others = [i for i in range(ncols) if i != pcol]

    n = len(data)
    find = data.find
    line = 1
    pos = start
    fs_l: list[int] = []
    fe_l: list[int] = []
    lines: list[int] = []
    vals: list[list[str]] = [[] for _ in others]
    bad: list[tuple[int, str]] = []
    while pos < n:
        line += 1
        e = find(b"\n", pos)
        if e < 0:
            e = n
        le = e - 1 if e > pos and data[e - 1] == 13 else e
        if le == pos or (data[pos] in b" \t" and not data[pos:le].strip()):  # blank: not a row
            pos = e + 1
            continue
        bounds = [pos - 1]
        q = pos
        while len(bounds) <= ncols:
            c = find(b",", q, le)
            if c < 0:
                break
            bounds.append(c)
            q = c + 1
        bounds.append(le)
        if len(bounds) != ncols + 1:
            bad.append((line, f"has {len(bounds) - 1} fields; the header has {ncols} "
                              f"({','.join(columns)})"))
            pos = e + 1
            continue
        a, b = bounds[pcol] + 1, bounds[pcol + 1]
        if b - a >= 2 and data[a] == 34 and data[b - 1] == 34:  # quoted field
            a, b = a + 1, b - 1
        try:
            texts = [data[bounds[i] + 1:bounds[i + 1]].decode("utf-8").strip().strip('"').strip()
                     for i in others]
        except UnicodeDecodeError:
            bad.append((line, "is not UTF-8 text"))
            pos = e + 1
            continue
        fs_l.append(a)
        fe_l.append(b)
        lines.append(line)
        for v, t in zip(vals, texts):
            v.append(t)
        pos = e + 1
    if not lines and not bad:
        raise _fail(p, f"has a header ({','.join(columns)}) but no data rows; add one row per image")

    fs = np.asarray(fs_l, dtype=np.int64)
    fe = np.asarray(fe_l, dtype=np.int64)
    buf = np.frombuffer(data, np.uint8)
    out = np.empty((len(fs), N_PIXELS), np.uint8)
    row_bad: dict[int, str] = {}

    def parse(a: int, b: int) -> dict[int, str]:
        if b - a > 0 and _fast_rows(data, buf, fs[a:b], fe[a:b], out[a:b]):
            return {}
        if b - a > 8:
            mid = (a + b) // 2
            return {**parse(a, mid), **parse(mid, b)}
        errs = {}
        for i in range(a, b):
            v, why = _explain_row(data[fs[i]:fe[i]])
            if v is None:
                errs[i] = why
            else:
                out[i] = v
        return errs

    ranges = [(a, min(a + _CHUNK_ROWS, len(fs))) for a in range(0, len(fs), _CHUNK_ROWS)]
    nw = workers or min(2, os.cpu_count() or 1)
    if nw > 1 and len(ranges) > 1:
        with ThreadPoolExecutor(nw) as ex:
            for errs in ex.map(lambda r: parse(*r), ranges):
                row_bad.update(errs)
    else:
        for r in ranges:
            row_bad.update(parse(*r))

    if row_bad:
        keep = np.ones(len(fs), bool)
        for i, why in row_bad.items():
            keep[i] = False
            bad.append((lines[i], why))
        bad.sort()
        idx = np.flatnonzero(keep)
        out = out[idx]
        lines = [lines[i] for i in idx.tolist()]
        vals = [[v[i] for i in idx.tolist()] for v in vals]
    return PixelTable(path=p, columns=columns, pixels=out, lines=np.asarray(lines, dtype=np.int64),
                      fields={columns[i]: v for i, v in zip(others, vals)}, bad=bad)


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
