"""Argument helpers shared by the command modules: parser construction, typed option values, and the
flags several commands take (``--trust-code``, ``--break-lock``)."""

from __future__ import annotations

import argparse
import math

from ..errors import CnnlensError


def _example(text: str) -> str:
    return f"example:\n  {text}"


def _parser_for(sub: argparse._SubParsersAction, name: str, help_: str, example: str
                ) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_, description=help_, epilog=_example(example),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_lock_arg(p: argparse.ArgumentParser) -> None:
    """``--break-lock`` for a command that writes into a run directory (docs/robustness.md)."""
    p.add_argument("--break-lock", action="store_true",
                   help="take over the run's write lock when it was left by a process on another host "
                        "(a lock of a process gone on this host is taken over anyway)")


def _add_trust_code(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="allow running the code of a model that is a user file (FILE.py:Class or TorchScript); "
                   "needed each time, since a run directory is data (docs/robustness.md)")


def _data_choices() -> str:
    from ..data import DATASETS

    return ", ".join([f"{n}:PATH" if n != "digits" and n != "planted" else n for n in DATASETS.names()])


def _devices_arg(v: str) -> int | str:
    """``--devices``: a positive number of devices, or ``auto``."""
    if v == "auto":
        return v
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"takes a positive number of devices or 'auto'; got {v!r}")
    return n


def _target_arg(v: str) -> str:
    """``--target``: ``pred``, ``label`` or a whole class index (``2.5`` or ``true`` is refused)."""
    if v in ("pred", "label") or v.lstrip("-").isdigit():
        return v
    raise argparse.ArgumentTypeError(f"takes pred, label or a class index (a whole number); got {v!r}")


def _finite_float(v: str) -> float:
    """A float option: a finite number (``inf`` and ``nan`` are refused, naming the flag)."""
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a number; got {v!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"takes a finite number; got {v!r}")
    return x


def _parse_chw(s: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise CnnlensError(f"--input must look like CxHxW, e.g. 1x48x48; got {s!r}") from None
    return c, h, w


def _model_options(pairs: list[str]) -> dict[str, object]:
    from ..config import parse_model_options

    return parse_model_options(pairs)


def _names(csv: str | None) -> list[str] | None:
    """A comma-separated flag as a list (``None`` when absent)."""
    return None if csv is None else [v.strip() for v in csv.split(",") if v.strip()]


def _device():
    """Where a command runs a loaded run's model: CUDA when present, else the CPU
    ($CNNLENS_DEVICE overrides)."""
    from ..device import default_device

    return default_device()
