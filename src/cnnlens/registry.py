"""One registry per extension point: datasets, models, explanation methods, trust metrics.

A name is written once, where the thing is registered; the CLI's choices and the error for an
unknown name both come from here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from .errors import CnnlensError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """A named collection of factories.

    >>> models = Registry("model")
    >>> @models.register("tiny", description="a tiny net")
    ... def tiny(): ...
    >>> models.get("tiny") is tiny
    True
    """

    def __init__(self, kind: str, prefixes: dict[str, Callable[[str], T]] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        # "prefix:" names resolved by a function (e.g. "torchvision:resnet18", "captum:DeepLift")
        self._prefixes: dict[str, Callable[[str], T]] = dict(prefixes or {})
        # names no prefix can catch (e.g. "path/to/net.py:Net", "model.pt"): each resolver returns
        # the object, or None when the name is not its kind; tried in registration order
        self._resolvers: list[tuple[str, Callable[[str], T | None]]] = []

    def register(self, name: str, *, description: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                raise CnnlensError(f"{self.kind} {name!r} is registered twice")
            doc = description or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[name] = Entry(name, obj, doc)
            return obj

        return deco

    def register_prefix(self, prefix: str, resolver: Callable[[str], T]) -> None:
        self._prefixes[prefix] = resolver

    def register_resolver(self, form: str, resolver: Callable[[str], T | None]) -> None:
        """Resolve names of a free ``form`` (shown in errors, e.g. ``"FILE.py:Class"``).

        ``resolver(name)`` returns the object, or ``None`` when ``name`` is not of its form.
        """
        self._resolvers.append((form, resolver))

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name].obj
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._prefixes:
            return self._prefixes[prefix](rest)
        for _, resolver in self._resolvers:
            obj = resolver(name)
            if obj is not None:
                return obj
        raise CnnlensError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        valid = ", ".join(self.names())
        extra = "".join(f", {p}:<name>" for p in self._prefixes)
        extra += "".join(f", {form}" for form, _ in self._resolvers)
        return (f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; "
                f"valid {self.kind} names: {valid}{extra}")

    def names(self) -> list[str]:
        return list(self._entries)

    def prefixes(self) -> list[str]:
        return list(self._prefixes)

    def resolver_forms(self) -> list[str]:
        return [form for form, _ in self._resolvers]

    def entries(self) -> list[Entry[T]]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def describe(self, name: str) -> str:
        return self._entries[name].description


def did_you_mean(name: object, candidates: Iterable[object]) -> str:
    """``" (did you mean 'x' or 'y'?)"``: the closest of ``candidates`` to a mistyped ``name``
    (``difflib``, case-insensitive), or ``""`` when none is close.

    >>> did_you_mean("gradcm", ["saliency", "gradcam", "gradcam_pp"])
    " (did you mean 'gradcam' or 'gradcam_pp'?)"
    """
    if not isinstance(name, str) or not name:
        return ""
    names = [str(c) for c in candidates]
    lower: dict[str, str] = {}
    for c in names:
        lower.setdefault(c.lower(), c)
    close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)]
    if not close:
        return ""
    quoted = [repr(c) for c in close]
    words = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" (did you mean {words}?)"


def check_choice(kind: str, value: Any, valid: list[str] | tuple[str, ...]) -> None:
    """Raise a ValueError naming `kind`, the bad value and the valid choices."""
    if value not in valid:
        raise CnnlensError(f"{kind} must be one of {', '.join(map(str, valid))}; got {value!r}"
                           f"{did_you_mean(value, valid)}")
