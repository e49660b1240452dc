"""The pixel CSV of FER2013 (both its forms), parsed fast and strictly: :func:`read_pixel_csv` ->
:class:`PixelTable`.

The pixel columns are parsed with vectorized numpy on the raw bytes (no Python loop over numbers):
the positions of the separating spaces are found once, and each number is read from the (at most 3)
bytes before its separator. Rows the fast path cannot vouch for are re-read one by one by a plain
Python parser, which is the authority on what is valid and says exactly what is wrong.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CnnlensError

SIDE = 48


N_PIXELS = SIDE * SIDE


PIXEL_COLUMNS = ("pixels", "feature")


_CHUNK_ROWS = 1024


_FORMS = ("Kaggle form 'emotion,pixels,Usage' or course form 'label,feature' (train.csv) / "
          "'id,feature' (test.csv)")


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
