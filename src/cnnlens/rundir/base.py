"""The base of every run-directory record: one dataclass per file, ``save(run_dir)`` / ``load(run_dir)``.

A record knows its path inside ``RUN/`` (:attr:`JsonRecord.PATH`) and the command that makes it
(:attr:`JsonRecord.MAKER`), so a missing file fails with a :class:`MissingRecord` naming both. Keys
this version does not know (written by a newer cnnlens, or added by another stage) are kept in
``extra`` and written back unchanged, after the known keys; a known key that an older run lacks
takes the field's default when the field has one, else the load fails naming the key.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..errors import CnnlensError
from ..io import read_json, write_json

R = TypeVar("R", bound="JsonRecord")


class MissingRecord(CnnlensError, FileNotFoundError):
    """A run-directory file is missing; the message names the file and the command that makes it."""


def missing(path: Path, maker: str) -> MissingRecord:
    return MissingRecord(f"{path} is missing; `{maker}` makes it")


class FileRecord:
    """Where a record's file lies: ``PATH`` under the run directory (``{name}`` placeholders filled
    from keyword arguments, defaults in ``WHERE``) and ``MAKER``, the command that writes it (``RUN``
    standing for the run directory)."""

    PATH: ClassVar[str] = ""
    MAKER: ClassVar[str] = "cnnlens run"
    WHERE: ClassVar[dict[str, Any]] = {}  # defaults of PATH's placeholders

    @classmethod
    def path(cls, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        return Path(run_dir) / cls.PATH.format(**{**cls.WHERE, **where})

    @classmethod
    def exists(cls, run_dir: str | os.PathLike[str], **where: Any) -> bool:
        return cls.path(run_dir, **where).is_file()

    @classmethod
    def maker(cls, run_dir: str | os.PathLike[str]) -> str:
        return cls.MAKER.replace("RUN", str(run_dir))

    @classmethod
    def existing(cls, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        """The file's path; a :class:`MissingRecord` naming the command that makes it when it is missing."""
        p = cls.path(run_dir, **where)
        if not p.is_file():
            raise missing(p, cls.maker(run_dir))
        return p


@dataclass
class JsonRecord(FileRecord):
    """A JSON file under ``RUN/``: its top-level keys are the dataclass fields, in order (subclasses
    set ``PATH`` and ``MAKER``, :class:`FileRecord`)."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    # ---- dict <-> record --------------------------------------------------------------------------

    @classmethod
    def _json_fields(cls) -> list[Any]:
        return [f for f in fields(cls) if f.name != "extra" and not f.metadata.get("file")]

    @classmethod
    def from_dict(cls: type[R], d: Any, source: str | os.PathLike[str] = "") -> R:
        """The record of a JSON object; ``source`` (the file) names it in errors."""
        where = source or cls.PATH
        if not isinstance(d, dict):
            raise CnnlensError(f"{where} must hold a JSON object; got {type(d).__name__}. The file is "
                               f"damaged: re-create it with `{cls.MAKER}`")
        known = cls._json_fields()
        kw: dict[str, Any] = {}
        for f in known:
            if f.name in d:
                kw[f.name] = d[f.name]
            elif f.default is MISSING and f.default_factory is MISSING:  # type: ignore[misc]
                raise CnnlensError(f"{where} has no {f.name!r} entry (written by an older cnnlens?); "
                                   f"re-create it with `{cls.MAKER}`")
        names = {f.name for f in known}
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the known keys in field order, then ``extra``."""
        out = {f.name: getattr(self, f.name) for f in self._json_fields()}
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    # ---- files ------------------------------------------------------------------------------------

    def save(self, run_dir: str | os.PathLike[str], **where: Any) -> Path:
        """Write the record (atomically) under ``run_dir``; returns the JSON file's path."""
        return write_json(self.path(run_dir, **where), self.to_dict())

    @classmethod
    def load(cls: type[R], run_dir: str | os.PathLike[str], **where: Any) -> R:
        """Read the record; a missing file is a :class:`MissingRecord` naming the command that makes it."""
        p = cls.existing(run_dir, **where)
        return cls.from_dict(read_json(p), p)

    @classmethod
    def load_or_none(cls: type[R], run_dir: str | os.PathLike[str], **where: Any) -> R | None:
        """The record, or ``None`` when its file does not exist (a damaged file still raises)."""
        return cls.load(run_dir, **where) if cls.exists(run_dir, **where) else None


def file_field(**kw: Any) -> Any:
    """A field held in its own file beside the JSON (e.g. an array), not in the JSON object."""
    return field(metadata={"file": True}, **kw)
