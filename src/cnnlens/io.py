"""Atomic, safe file writes. Every file cnnlens writes goes through here.

A file is written to a temporary name in the same folder, flushed, fsynced and renamed over the
target, so a kill mid-write leaves the previous version intact. Errors name the path.

Every CSV cell goes through :func:`csv_cell`: a text cell that a spreadsheet would run as a formula
(it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading ``'``
(OWASP's advice on CSV injection); numbers, and text that is exactly a number, are left alone.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from .errors import CnnlensError, CnnlensTypeError

_UMASK = os.umask(0)
os.umask(_UMASK)


class WriteError(OSError):
    """A file could not be written; the message names the path and the cause."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise WriteError(f"cannot write {target}: {e.strerror or e}. Check that the folder "
                         "exists, is writable and has free space.") from e
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; files follow the umask like open()
        os.replace(tmp_path, target)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise WriteError(f"cannot write {target}: {e.strerror or e}. Nothing was replaced; "
                         "check free space and permissions.") from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_yaml(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, yaml.safe_dump(obj, sort_keys=False))


#: a text cell starting with one of these is a formula to a spreadsheet (OWASP: CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)", re.IGNORECASE)


def csv_cell(v: Any) -> Any:
    """``v`` made safe for a spreadsheet: text starting with ``= + - @``, a tab or a carriage
    return gets a leading ``'``, unless the text is exactly a number (``-0.5``, ``+3``, ``-1e-3``)."""
    if isinstance(v, str) and v[:1] in FORMULA_STARTS and not _NUMBER.fullmatch(v):
        return "'" + v
    return v


class CsvWriter:
    """``csv.writer`` whose cells go through :func:`csv_cell` (the one CSV writer of cnnlens)."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._w = csv.writer(fh, lineterminator="\n")

    def writerow(self, row: Sequence[Any]) -> None:
        cells = [csv_cell(v) for v in row]
        if any(isinstance(v, str) and "\r" in v for v in cells):
            # csv quotes a field holding a character of its line terminator ("\n"), not a bare "\r",
            # which readers take for a line end: write this row with "\r\n" so that such fields are
            # quoted, and end it with "\n" like the others
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\r\n").writerow(cells)
            self._fh.write(buf.getvalue()[:-2] + "\n")
            return
        self._w.writerow(cells)

    def writerows(self, rows: Any) -> None:
        for row in rows:
            self.writerow(row)


def write_csv(path: str | os.PathLike[str], header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """A CSV file, atomically; text cells are made safe for spreadsheets (:func:`csv_cell`)."""
    buf = io.StringIO()
    w = CsvWriter(buf)
    w.writerow(header)
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def write_npy(path: str | os.PathLike[str], array: Any) -> Path:
    """A NumPy array (or a tensor: detached, moved to the CPU) as a ``.npy`` file, atomically."""
    import numpy as np
    import torch

    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{p} does not exist") from None
    except json.JSONDecodeError as e:
        raise CnnlensError(f"{p} is not valid JSON (line {e.lineno}: {e.msg}); the file is "
                         "damaged: re-create it with the command that wrote it") from None
    except UnicodeDecodeError as e:
        raise CnnlensError(f"{p} is not UTF-8 text (byte {e.start}); the file is damaged: re-create "
                           "it with the command that wrote it") from None


def _json_default(o: Any) -> Any:
    import numpy as np
    import torch

    if isinstance(o, torch.Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise CnnlensTypeError(f"cannot serialize {type(o).__name__} to JSON")
