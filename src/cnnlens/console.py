"""The CLI's console layer: every byte ``cnnlens`` writes to the terminal goes through here.

The library never prints (it logs); the CLI (``cli/``) prints only through this module, so the
rules below hold on every console path: errors, warnings, log lines, tables, progress bars.

- A string that comes from the user or their files (a path, a class name, a layer name, an
  exception message) is printed verbatim. In a rich markup string it goes through :func:`safe`
  (markup escaped, so ``[bold]`` in a path stays ``[bold]``); in plain text through :func:`shown`.
  Both show control characters escaped (``\\x1b``, ``\\x07``, ``\\r``, ``\\n``, bidi overrides as
  ``\\u202e``): a path can neither clear the screen, set the window title nor forge a second
  ``error:`` line.
- Nothing is hard-wrapped: both consoles have ``soft_wrap=True``, so a long path stays on one line
  at any terminal width, whether the output is a terminal, a pipe or a file.
- Tables (:func:`print_table`) never cut a name or a header to an ellipsis: at their full width when
  it fits or the output is not a terminal (a pipe, a log file); one record per line in a terminal
  too narrow for them.
- :func:`print_error` writes ``error: <message>`` on one line; :func:`print_bug` says that an
  unexpected exception is a bug in cnnlens and how to see its traceback.

``tests/test_console_safety.py`` scans the sources (AST) for rich calls that format a non-literal
string without :func:`safe`, so this cannot come back.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

console = Console(stderr=False, highlight=False, emoji=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)

# C0 and C1 control characters, DEL, and the Unicode bidirectional overrides/isolates that reorder
# what a terminal shows ("Trojan Source"); everything else (accents, CJK, emoji) is shown as is.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

DEBUG_ENV = "CNNLENS_DEBUG"


def _escape_control(m: re.Match[str]) -> str:
    c = m.group()
    if c in _NAMED:
        return _NAMED[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def shown(value: object) -> str:
    """``str(value)`` with control characters shown escaped (``\\x1b``, ``\\n``): plain text that
    prints as itself, on one line."""
    return _CONTROL.sub(_escape_control, str(value))


def safe(value: object) -> str:
    """``str(value)`` ready to go inside a rich markup string: control characters shown escaped
    (:func:`shown`) and markup escaped, so it prints verbatim."""
    return escape(shown(value))


# ---- errors ----------------------------------------------------------------------------------------

def print_error(message: object) -> None:
    """``error: <message>`` on stderr, on one line (the message's control characters escaped)."""
    err_console.print(Text.assemble(("error:", "red"), " ", shown(message)))


def debug_requested(verbose: int) -> bool:
    """Tracebacks are shown with ``-vv`` (``verbose > 1``) or ``CNNLENS_DEBUG`` set to anything but 0."""
    import os

    return verbose > 1 or os.environ.get(DEBUG_ENV, "0") not in ("", "0")


def print_bug(exc: BaseException, show_traceback: bool) -> None:
    """An exception that is not the user's mistake: say it is a bug, and how to get its traceback."""
    if show_traceback:
        for line in "".join(traceback.format_exception(exc)).splitlines():
            err_console.print(Text(shown(line)))
    err_console.print(Text.assemble(
        ("error:", "red"), " this is a bug in cnnlens, not a problem with your input: "
        f"{shown(type(exc).__name__)}: {shown(exc)}",
        "" if show_traceback else
        "; run again with -vv (or CNNLENS_DEBUG=1) to see the traceback, and report it"))


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with the user's text in its error messages shown escaped (exit 2 as usual)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {shown(message)}\n")


# ---- log lines and warnings ---------------------------------------------------------------------

_LEVEL_STYLE = {logging.DEBUG: "dim", logging.WARNING: "yellow", logging.ERROR: "red",
                logging.CRITICAL: "red"}


class LogHandler(logging.Handler):
    """One plain line per record on stderr: ``warning: ...`` / ``debug: ...``, info lines bare;
    control characters escaped, never wrapped, never read as markup."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = shown(record.getMessage())
            level = record.levelno
            if level == logging.INFO:
                line = Text(msg)
            else:
                name = record.levelname.lower()
                style = _LEVEL_STYLE.get(level, "")
                line = Text.assemble((f"{name}:", style), " ", msg)
            err_console.print(line)  # console: markup checked (Text of shown())
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


def _showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: object = None, line: str | None = None) -> None:
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


def setup_logging(level: int) -> None:
    """Log records of ``cnnlens`` at ``level`` (others at WARNING) and Python warnings, through
    :class:`LogHandler`."""
    logging.basicConfig(level=logging.WARNING, handlers=[LogHandler()], force=True)
    logging.getLogger("cnnlens").setLevel(level)
    warnings.showwarning = _showwarning


# ---- tables ---------------------------------------------------------------------------------------

def _natural_width(c: Console, table: Table) -> int:
    return Measurement.get(c, c.options.update(width=1 << 20), table).maximum


def print_table(table: Table, c: Console | None = None) -> None:
    """Print ``table`` without ever cutting a cell or a header to an ellipsis.

    The title goes on a line of its own. The table is drawn at its full width when that fits the
    console or the output is not a terminal (a pipe or a log file keeps one row per line, however
    long); in a terminal too narrow for it, each row is one line of ``header value`` pairs.
    Cells and headers are markup: the caller has passed user strings through :func:`safe`.
    """
    c = c or console
    title, table.title = table.title, None
    if title is not None:
        c.print(title, style="bold" if c.is_terminal else None)  # console: markup checked (by the caller)
    width = _natural_width(c, table)
    if width <= c.width:
        c.print(table)  # console: markup checked (cells and headers, by the caller)
    elif not c.is_terminal:
        wide = Console(file=c.file, width=width, highlight=False, emoji=False, soft_wrap=True,
                       force_terminal=False, no_color=True)
        wide.print(table)  # console: markup checked (cells and headers, by the caller)
    else:
        for line in table_records(table):
            c.print(line)  # console: markup checked (cells and headers, by the caller)


def table_records(table: Table) -> Iterator[str]:
    """Each row as one markup line: ``first: header value, header value``; empty cells left out."""
    headers = [str(col.header) for col in table.columns]
    cells = [list(col.cells) for col in table.columns]
    for r in range(table.row_count):
        row = [str(cells[k][r]) if r < len(cells[k]) else "" for k in range(len(headers))]
        rest = ", ".join(f"{h} {v}" for h, v in zip(headers[1:], row[1:]) if v != "")
        yield f"{row[0]}: {rest}" if rest else row[0]


# ---- progress -------------------------------------------------------------------------------------

class Progress:
    """A rich progress bar on stderr the library reports into through a ``(done, total)`` callback.

    ``label`` is plain text (escaped here). Transient: it disappears when done. When stderr is not a
    terminal it writes nothing at all (rich would leave an empty line in the log).
    """

    def __init__(self, label: str) -> None:
        self._label = safe(label)
        self._p = None
        self._task = None

    def __enter__(self) -> Callable[[int, int], None]:
        if not err_console.is_terminal:
            return lambda done, total: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TimeElapsedColumn

        self._p = RP("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                     TimeElapsedColumn(), console=err_console, transient=True)
        self._p.__enter__()

        def update(done: int, total: int) -> None:
            if self._task is None:
                self._task = self._p.add_task(self._label, total=total)  # console: markup checked
            self._p.update(self._task, completed=done, total=total)

        return update

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
